"""Which split of the cores between decoding and the model indexes camera photos fastest on this machine?

    .venv/bin/python bench/core_layout.py [--photos 32] [--rounds 2] [--size "12 MP"]

Decoding (a thread pool: PIL releases the GIL while it decodes) and the model (ONNX Runtime's intra-op threads)
share the machine's cores. This runs the indexing pipeline (`embed_paths`) over camera-sized JPEGs (made as
bench/camera_photos.py makes them) with every combination of decoding threads (1, half the cores, all of them,
twice as many) and model threads (1, half, all), interleaved, the best of `--rounds` each, beside the default
(trainer.embedding_pipeline.Embedder.decode_workers and trainer.onnx_runtime's threads) and the 2-stage bound
1 / (1/decode + 1/model) with both stages measured alone on all cores. Run it on each kind of machine the app is
meant for (2 and 8 cores, say): the default should be the best, or within noise of it, on both.

Writes bench/results/core_layout_<N>cores.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import camera_photos  # bench/, beside this script

from trainer.card import load_card, model_fingerprint
from trainer.embedding_pipeline import Embedder
from trainer.onnx_export import export_runtime
from trainer.onnx_runtime import OnnxEmbedder, onnx_paths_cached
from trainer.paths import BUNDLED_MODEL

ROOT = Path(__file__).resolve().parents[1]


def end_to_end(embedder: OnnxEmbedder, files: list[Path]) -> float:
    started = time.perf_counter()
    for _batch in embedder.embed_paths(files):
        pass
    return len(files) / (time.perf_counter() - started)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--photos", type=int, default=32)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--size", default="12 MP", help="12 MP or 24 MP")
    args = p.parse_args()
    if not camera_photos.SOURCE.is_dir():
        print(f"skipped: {camera_photos.SOURCE} is absent", file=sys.stderr)
        return 0
    cores = os.cpu_count() or 1
    work = Path(tempfile.mkdtemp(prefix="core-layout-"))
    graph, record = onnx_paths_cached(work, model_fingerprint(BUNDLED_MODEL))
    export_runtime(BUNDLED_MODEL, graph, record)
    card = load_card(BUNDLED_MODEL)
    (work / "photos").mkdir()
    files = camera_photos.make_photos(work / "photos", args.photos, camera_photos.SIZES[args.size])
    default_decode = Embedder.decode_workers
    decode_counts = sorted({1, max(1, cores // 2), cores, 2 * cores, default_decode})
    model_counts = sorted({1, max(1, cores // 2), cores})
    runners = {m: OnnxEmbedder(graph, card, threads=m) for m in model_counts}
    best: dict[tuple[int, int], float] = {}
    alone: dict[str, float] = {}
    for _round in range(args.rounds):
        rate, decoded = camera_photos.decode_rate(files, cores, card.resize_size, card.input_size)
        alone["decode"] = max(alone.get("decode", 0.0), rate)
        started = time.perf_counter()
        for i in range(0, len(decoded), 32):
            runners[cores].embed_arrays(decoded[i : i + 32])
        alone["model"] = max(alone.get("model", 0.0), len(files) / (time.perf_counter() - started))
        for d in decode_counts:
            for m in model_counts:
                runner = runners[m]
                runner.decode_workers = d
                best[d, m] = max(best.get((d, m), 0.0), end_to_end(runner, files))
                print(f"round {_round + 1}: {d} decoding, {m} model threads: {best[d, m]:.1f} images/s", flush=True)
    bound = 1 / (1 / alone["decode"] + 1 / alone["model"])
    top = max(best, key=lambda k: best[k])
    default = best[(default_decode, cores)]
    lines = [
        f"## Decoding and model threads on {cores} cores (bench/core_layout.py)",
        "",
        f"{args.photos} photos of {args.size} (JPEG quality 90), bundled model with ONNX Runtime; images/s end to end, "
        f"best of {args.rounds} interleaved rounds. Alone on all cores: decode {alone['decode']:.1f}, model "
        f"{alone['model']:.1f}; bound 1 / (1/decode + 1/model) = {bound:.1f}.",
        "",
        "| decoding threads | " + " | ".join(f"model {m}" for m in model_counts) + " |",
        "|---:|" + "---:|" * len(model_counts),
    ]
    for d in decode_counts:
        cells = [f"**{best[d, m]:.1f}**" if (d, m) == top else f"{best[d, m]:.1f}" for m in model_counts]
        lines.append(f"| {d}{' (default)' if d == default_decode else ''} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Default ({default_decode} decoding, {cores} model threads): {default:.1f} images/s, "
        f"{100 * default / best[top]:.0f} % of the best ({top[0]} decoding, {top[1]} model: {best[top]:.1f}) and "
        f"{100 * default / bound:.0f} % of the bound.",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    (ROOT / "bench" / "results" / f"core_layout_{cores}cores.md").write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
