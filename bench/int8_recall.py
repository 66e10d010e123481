"""Does the int8 variant of the bundled model search as well as fp32? Every test half of ../shared/datasets.

    .venv/bin/python bench/int8_recall.py [--calibration 256]

The bundled model's ONNX Runtime file (fp32, checked against torch) is quantized to int8 (trainer.onnx_quantize),
calibrated on pictures of the training halves; then every test half (the second half of each data set's sorted
classes, the README's convention) is embedded by both, decoded once. Printed and written to
bench/results/int8_recall.md: Recall@1 at 1280-d, float and binary, for both precisions; agreement (max difference,
mean cosine between the two embeddings of an image, share of binary-code bits that differ); model-only speed.
The rule of issue 14: int8 may be the default only where it loses no more than 0.3 points anywhere.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import numpy.typing as npt

from trainer.card import load_card, model_fingerprint
from trainer.images import ImageLoadError, load_for_model
from trainer.metrics import evaluate
from trainer.onnx_export import export_runtime
from trainer.onnx_quantize import quantize_int8
from trainer.onnx_runtime import OnnxEmbedder, onnx_paths_cached
from trainer.paths import BUNDLED_MODEL

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ROOT.parent / "shared" / "datasets"
RESULTS = ROOT / "bench" / "results" / "int8_recall.md"
SETS = ["cub100", "cars98", "flowers51", "caltech101", "clothing10"]
ALLOWED_LOSS = 0.3


def halves(name: str) -> tuple[list[Path], list[tuple[Path, int]]]:
    """(training-half pictures, test-half (picture, label)) of one data set."""
    classes = sorted(p for p in (DATASETS / name).iterdir() if p.is_dir())
    half = len(classes) // 2
    train = [f for c in classes[:half] for f in sorted(c.iterdir())]
    test = [(f, i) for i, c in enumerate(classes[half:]) for f in sorted(c.iterdir())]
    return train, test


def decode(paths: list[Path], resize: int, crop: int) -> tuple[npt.NDArray[np.uint8], list[int]]:
    def one(path: Path) -> npt.NDArray[np.uint8] | None:
        try:
            return load_for_model(path, resize, crop)
        except ImageLoadError:
            return None

    with ThreadPoolExecutor(max(2, os.cpu_count() or 2)) as pool:
        arrays = list(pool.map(one, paths))
    kept = [i for i, a in enumerate(arrays) if a is not None]
    return np.stack([arrays[i] for i in kept]), kept  # type: ignore[misc]


def embed(runner: OnnxEmbedder, arrays: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    return np.concatenate([runner.embed_arrays(arrays[i : i + 32]) for i in range(0, len(arrays), 32)])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--calibration", type=int, default=256, help="pictures from the training halves")
    args = p.parse_args()
    if not DATASETS.is_dir():
        print(f"skipped: {DATASETS} is absent", file=sys.stderr)
        return 0
    card = load_card(BUNDLED_MODEL)
    work = Path(tempfile.mkdtemp(prefix="int8-"))
    graph, record = onnx_paths_cached(work, model_fingerprint(BUNDLED_MODEL))
    export_runtime(BUNDLED_MODEL, graph, record)
    rng = np.random.default_rng(0)
    pool = [f for name in SETS for f in halves(name)[0]]
    chosen = [pool[i] for i in np.sort(rng.choice(len(pool), args.calibration, replace=False))]
    calibration, _ = decode(chosen, card.resize_size, card.input_size)
    int8_graph = work / "int8.onnx"
    t = time.perf_counter()
    quantize_int8(graph, int8_graph, calibration, card)
    print(f"quantized in {time.perf_counter() - t:.0f} s, calibrated on {len(calibration)} pictures", flush=True)
    runners = {"fp32": OnnxEmbedder(graph, card), "int8": OnnxEmbedder(int8_graph, card)}
    speed = {}
    for name, runner in runners.items():
        embed(runner, calibration[:32])
        t = time.perf_counter()
        embed(runner, calibration[:128])
        speed[name] = 128 / (time.perf_counter() - t)
    rows, worst = [], 0.0
    d = card.dim
    for name in SETS:
        _train, test = halves(name)
        arrays, kept = decode([f for f, _ in test], card.resize_size, card.input_size)
        labels = np.array([test[i][1] for i in kept])
        emb = {k: embed(r, arrays) for k, r in runners.items()}
        scores = {k: evaluate(e, labels, [d], ks=(1,), with_clustering=False) for k, e in emb.items()}
        a, b = emb["fp32"], emb["int8"]
        cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
        cells = {(k, rep): 100 * scores[k][rep][d]["R@1"] for k in ("fp32", "int8") for rep in ("float", "binary")}
        loss = max(cells[("fp32", rep)] - cells[("int8", rep)] for rep in ("float", "binary"))
        worst = max(worst, loss)
        rows.append(
            f"| {name} | {len(labels):,} | {cells[('fp32', 'float')]:.2f} | {cells[('int8', 'float')]:.2f} | "
            f"{cells[('fp32', 'binary')]:.2f} | {cells[('int8', 'binary')]:.2f} | {np.abs(a - b).max():.3f} | "
            f"{cos.mean():.4f} | {100 * (np.sign(a) != np.sign(b)).mean():.2f} % |"
        )
        print(rows[-1], flush=True)
    verdict = "may be the default" if worst <= ALLOWED_LOSS else "must not be the default"
    text = "\n".join([
        "## int8 against fp32 for the bundled model (bench/int8_recall.py)",
        "",
        f"ONNX Runtime, CPU ({os.cpu_count()} cores); int8: static QDQ, weights per channel, activations symmetric, "
        "the stem convolution and "
        f"the embedding layer kept in float, calibrated on {len(calibration)} pictures of the training halves. Test "
        "halves: the second half of each data set's sorted classes (cars98 and flowers51 were seen whole by the "
        "bundled model). Recall@1 at 1280-d.",
        "",
        "| test half | images | fp32 R@1 | int8 R@1 | fp32 binary R@1 | int8 binary R@1 | max diff | mean cosine | "
        "bits differing |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        *rows,
        "",
        f"Model alone: fp32 {speed['fp32']:.0f} images/s, int8 {speed['int8']:.0f} images/s "
        f"({speed['int8'] / speed['fp32']:.1f}x). Largest loss of Recall@1 on any test half: {worst:.2f} points: "
        f"int8 {verdict} (allowed: {ALLOWED_LOSS}).",
    ])  # fmt: skip
    print(text)
    RESULTS.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
