"""Does re-ranking help the bundled model? Query expansion and k-reciprocal re-ranking on the test halves.

    .venv/bin/python bench/rerank.py [--dims 1280,128]

Every test half of cub100, cars98 and caltech101 (the second half of each data set's sorted classes, the README's
convention; cars98's test half was among the bundled model's training classes, so its numbers flatter the model)
is embedded once with the bundled model (ONNX Runtime; the embeddings are kept in runs/bench/rerank/ for a rerun),
then every picture searches all the others (trainer.metrics' protocol) without re-ranking, with average query
expansion of its 2 nearest (`qe`), and with k-reciprocal re-ranking (`kreciprocal`: k1 = 20, k2 = 6, lambda = 0.3,
the paper's values), float (cosine) and binary (Hamming). Printed and written to bench/results/rerank.md with the
rule a default must pass: no loss in any cell (R@1 and MAP@R, float and binary, every set and dimension) and a
MAP@R gain in every one.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from trainer.card import load_card, model_fingerprint
from trainer.onnx_export import export_runtime
from trainer.onnx_runtime import OnnxEmbedder, onnx_paths_cached
from trainer.paths import BUNDLED_MODEL
from trainer.rerank import reranked_metrics

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ROOT.parent / "shared" / "datasets"
CACHE = ROOT / "runs" / "bench" / "rerank"
RESULTS = ROOT / "bench" / "results" / "rerank.md"
SETS = ["cub100", "cars98", "caltech101"]
METHODS = ["none", "qe", "kreciprocal"]


def _int8_bench() -> object:
    """bench/int8_recall.py's halves, decode and embed (loaded by path: bench is not a package)."""
    spec = importlib.util.spec_from_file_location("int8_recall", ROOT / "bench" / "int8_recall.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def embeddings(name: str, runner: OnnxEmbedder | None, fingerprint: str) -> tuple[np.ndarray, np.ndarray]:
    cached = CACHE / f"{name}-{fingerprint[:16]}.npz"
    if cached.exists():
        with np.load(cached) as f:
            return f["emb"], f["labels"]
    assert runner is not None
    helpers = _int8_bench()
    _train, test = helpers.halves(name)  # type: ignore[attr-defined]
    card = load_card(BUNDLED_MODEL)
    arrays, kept = helpers.decode([f for f, _ in test], card.resize_size, card.input_size)  # type: ignore[attr-defined]
    labels = np.array([test[i][1] for i in kept])
    emb = helpers.embed(runner, arrays)  # type: ignore[attr-defined]
    CACHE.mkdir(parents=True, exist_ok=True)
    np.savez(cached, emb=emb, labels=labels)
    return emb, labels


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dims", default="1280,128")
    args = p.parse_args()
    if not DATASETS.is_dir():
        print(f"skipped: {DATASETS} is absent", file=sys.stderr)
        return 0
    dims = [int(d) for d in args.dims.split(",")]
    card = load_card(BUNDLED_MODEL)
    fingerprint = model_fingerprint(BUNDLED_MODEL)
    runner = None
    if not all((CACHE / f"{n}-{fingerprint[:16]}.npz").exists() for n in SETS):
        graph, record = onnx_paths_cached(Path(tempfile.mkdtemp(prefix="rerank-")), fingerprint)
        export_runtime(BUNDLED_MODEL, graph, record)
        runner = OnnxEmbedder(graph, card)
    lines = [
        "## Re-ranking the bundled model's rankings (bench/rerank.py)",
        "",
        "Every picture of a test half searches all the others; R@1 and MAP@R in %, float (cosine) and binary "
        "(Hamming); `qe`: average query expansion of the 2 nearest; `kreciprocal`: k-reciprocal re-ranking "
        "(k1 20, k2 6, lambda 0.3). Gain against no re-ranking in brackets.",
        "",
        "| set | images | dim | method | float R@1 | float MAP@R | binary R@1 | binary MAP@R | seconds |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    verdict: dict[str, bool] = {m: True for m in METHODS[1:]}  # may be a default: loses nothing, gains MAP@R
    for name in SETS:
        emb, labels = embeddings(name, runner, fingerprint)
        base = None
        for method in METHODS:
            t = time.perf_counter()
            scores = reranked_metrics(emb, labels, dims, method, ks=(1,))
            seconds = time.perf_counter() - t
            if method == "none":
                base = scores
            assert base is not None
            for d in dims:
                cells = []
                for kind in ("float", "binary"):
                    for metric in ("R@1", "MAP@R"):
                        value, start = 100 * scores[kind][d][metric], 100 * base[kind][d][metric]
                        cells.append(f"{value:.2f}" if method == "none" else f"{value:.2f} ({value - start:+.2f})")
                        if method != "none" and (value < start or (metric == "MAP@R" and value <= start)):
                            verdict[method] = False
                lines.append(f"| {name} | {len(labels):,} | {d} | {method} | {' | '.join(cells)} | {seconds:.1f} |")
                print(lines[-1], flush=True)
    lines += [
        "",
        "May be on by default (no loss in any cell, R@1 or MAP@R, float or binary, any set or dimension, and a MAP@R "
        "gain in every one): " + "; ".join(f"{m}: {'yes' if ok else 'no'}" for m, ok in verdict.items()) + ".",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
