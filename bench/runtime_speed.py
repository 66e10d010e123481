"""torch against ONNX Runtime for the explorer's model: the model alone, the indexing pipeline, a one-shot query.

    .venv/bin/python bench/runtime_speed.py [--data ../shared/datasets/caltech101] [--limit 320] [--rounds 3]

Interleaved rounds in one process (the machine is shared: ratios hold, absolute numbers wander), the best of
`--rounds` per method:

  model alone   `embed_arrays` on batches of 32 decoded beforehand (torch fp32 channels_last, as the app ran it)
  pipeline      `embed_paths` over the JPEGs: decoding in threads, a few batches ahead of the model
  one-shot      `explorer query OUTSIDE --in FOLDER` as a new process, start to answer (the folder indexed first)

Writes bench/results/runtime_speed.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from explorer.engine.runtime import runtime_cache
from trainer.card import model_fingerprint
from trainer.images import load_for_model
from trainer.inference import BatchEmbedder, embed_all
from trainer.model import load_model
from trainer.onnx_export import export_runtime
from trainer.onnx_runtime import OnnxEmbedder, onnx_paths_cached
from trainer.paths import BUNDLED_MODEL

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "datasets" / "caltech101"
RESULTS = ROOT / "bench" / "results" / "runtime_speed.md"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--limit", type=int, default=320)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    if not args.data.is_dir():
        print(f"skipped: {args.data} is absent (see ../shared/datasets/README.md)", file=sys.stderr)
        return 0
    files = sorted(args.data.rglob("*.jpg"))
    files = [files[i] for i in np.linspace(0, len(files) - 1, min(args.limit, len(files))).round().astype(int)]
    cache = Path(tempfile.mkdtemp(prefix="runtime-speed-"))
    os.environ["RETRIEVAL_EXPLORER_CACHE"] = str(cache)
    graph, record = onnx_paths_cached(runtime_cache(), model_fingerprint(BUNDLED_MODEL))
    exported = export_runtime(BUNDLED_MODEL, graph, record)
    model = load_model(BUNDLED_MODEL)
    runners = {"torch": BatchEmbedder(model, "cpu", batch_size=32), "ONNX Runtime": OnnxEmbedder(graph, model.card)}
    card = model.card
    decoded = np.stack([load_for_model(f, card.resize_size, card.input_size) for f in files[:96]])
    best: dict[tuple[str, str], float] = {}
    for _ in range(args.rounds):
        for name, runner in runners.items():
            runner.embed_arrays(decoded[:32])  # warm-up
            t = time.perf_counter()
            for i in range(0, len(decoded), 32):
                runner.embed_arrays(decoded[i : i + 32])
            rate = len(decoded) / (time.perf_counter() - t)
            best[(name, "model alone")] = max(best.get((name, "model alone"), 0.0), rate)
            t = time.perf_counter()
            embed_all(runner, files)
            rate = len(files) / (time.perf_counter() - t)
            best[(name, "pipeline")] = max(best.get((name, "pipeline"), 0.0), rate)
    folder = Path(tempfile.mkdtemp(prefix="runtime-speed-folder-"))
    for f in files[:200]:
        (folder / f"{f.parent.name}-{f.name}").symlink_to(f)
    cli = [sys.executable, "-m", "explorer.cli"]
    subprocess.run([*cli, "index", str(folder)], check=True, capture_output=True)
    query = files[-1]
    shots: dict[str, float] = {}
    for _ in range(args.rounds):
        for name, variable in (("torch", "torch"), ("ONNX Runtime", "auto")):
            env = {**os.environ, "RETRIEVAL_EXPLORER_RUNTIME": variable}
            t = time.perf_counter()
            subprocess.run([*cli, "query", str(query), "--in", str(folder), "-k", "5"], check=True, env=env,
                           capture_output=True)  # fmt: skip
            shots[name] = min(shots.get(name, float("inf")), time.perf_counter() - t)
    lines = [
        "## torch against ONNX Runtime (bench/runtime_speed.py)",
        "",
        f"Bundled model, 224 px, CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
        f"{len(files)} JPEGs of {args.data.name}; best of {args.rounds} interleaved rounds. The runtime file: "
        f"max difference to torch {exported.max_abs_diff:.1g} on the probe batch, "
        f"{100 * exported.sign_agreement:.2f} % of the binary code's bits equal.",
        "",
        "| what | torch | ONNX Runtime | ratio |",
        "|---|---:|---:|---:|",
    ]
    for what in ("model alone", "pipeline"):
        t, o = best[("torch", what)], best[("ONNX Runtime", what)]
        lines.append(f"| {what} (images/s) | {t:.0f} | {o:.0f} | {o / t:.1f}x |")
    t, o = shots["torch"], shots["ONNX Runtime"]
    lines.append(f"| one-shot `explorer query` from outside the folder (s) | {t:.2f} | {o:.2f} | {t / o:.1f}x |")
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
