"""Thumbnails made in the indexing pass: what they cost the indexing, and what they save the results grid.

    .venv/bin/python bench/thumbnails_in_index.py [--photos 32] [--rounds 2]

12 MP camera photos (bench/camera_photos.py makes them from ../shared/datasets: upscaled with grain, JPEG quality
90) in a temporary folder; the bundled model with ONNX Runtime on 2 cores. Interleaved rounds, the best of
`--rounds`:

  index                the indexer's embedding pass over the photos (decode, model), without and with thumbnails
                       made from each decode and written to the store;
  grid of thumbnails   the 128 px thumbnails a results page of the same photos shows, decoded from the files
                       (what the grid did before) against read from the store (what it does now), on the thumbnail
                       cache's 2 threads.

Writes bench/results/thumbnails_in_index.md.
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import camera_photos  # bench/, beside this script
from PIL import Image

from explorer.engine.thumbnail_store import ThumbnailStore, thumbnail_jpeg
from trainer.card import load_card, model_fingerprint
from trainer.images import load_rgb
from trainer.onnx_export import export_runtime
from trainer.onnx_runtime import OnnxEmbedder, onnx_paths_cached
from trainer.paths import BUNDLED_MODEL

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "thumbnails_in_index.md"
GRID = 128


def index_rate(embedder: OnnxEmbedder, files: list[Path], store: ThumbnailStore | None) -> float:
    thumbnailer = (lambda picture: thumbnail_jpeg(picture, store.size)) if store is not None else None
    started = time.perf_counter()
    for batch in embedder.embed_paths(files, thumbnailer=thumbnailer):
        if store is not None:
            stats = [(p.name, p.stat()) for p in batch.paths]
            rows = zip(stats, batch.thumbnails, strict=True)
            store.put_many((name, st.st_size, st.st_mtime_ns, jpeg) for (name, st), jpeg in rows)
    return len(files) / (time.perf_counter() - started)


def grid_from_files(files: list[Path]) -> float:
    def one(path: Path) -> Image.Image:
        picture = load_rgb(path, min_side=GRID)
        picture.thumbnail((GRID, GRID), Image.Resampling.BILINEAR, reducing_gap=2.0)
        return picture

    with ThreadPoolExecutor(2) as pool:
        started = time.perf_counter()
        list(pool.map(one, files))
        return time.perf_counter() - started


def grid_from_store(files: list[Path], store: ThumbnailStore) -> float:
    def one(path: Path) -> Image.Image:
        data = store.lookup(path)
        assert data is not None, path
        picture = Image.open(io.BytesIO(data))
        picture.thumbnail((GRID, GRID), Image.Resampling.BILINEAR)
        return picture

    with ThreadPoolExecutor(2) as pool:
        started = time.perf_counter()
        list(pool.map(one, files))
        return time.perf_counter() - started


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--photos", type=int, default=32)
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args()
    if not camera_photos.SOURCE.is_dir():
        print(f"skipped: {camera_photos.SOURCE} is absent", file=sys.stderr)
        return 0
    work = Path(tempfile.mkdtemp(prefix="thumbnails-in-index-"))
    graph, record = onnx_paths_cached(work, model_fingerprint(BUNDLED_MODEL))
    export_runtime(BUNDLED_MODEL, graph, record)
    embedder = OnnxEmbedder(graph, load_card(BUNDLED_MODEL), batch_size=32)
    folder = work / "photos"
    folder.mkdir()
    files = camera_photos.make_photos(folder, args.photos, camera_photos.SIZES["12 MP"])
    best: dict[str, float] = {}
    for _round in range(args.rounds):
        store = ThumbnailStore(folder, work / f"thumbs-{_round}.sqlite")
        for name, value in (
            ("index, no thumbnails", index_rate(embedder, files, None)),
            ("index, with thumbnails", index_rate(embedder, files, store)),
        ):
            best[name] = max(best.get(name, 0.0), value)
        for name, seconds in (
            ("grid from files", grid_from_files(files)),
            ("grid from store", grid_from_store(files, store)),
        ):
            best[name] = min(best.get(name, float("inf")), seconds)
        print({k: round(v, 3) for k, v in best.items()}, flush=True)
    size_kb = sum(len(store.lookup(f) or b"") for f in files) / len(files) / 1024
    text = (
        "## Thumbnails made in the indexing pass (bench/thumbnails_in_index.py)\n\n"
        f"{args.photos} photos of 12 MP (4000 x 3000, JPEG quality 90), bundled model with ONNX Runtime, CPU "
        f"(2 cores); best of {args.rounds} interleaved rounds.\n\n"
        "| what | without | with thumbnails in the pass | ratio |\n|---|---:|---:|---:|\n"
        f"| indexing (images/s) | {best['index, no thumbnails']:.1f} | {best['index, with thumbnails']:.1f} | "
        f"{best['index, with thumbnails'] / best['index, no thumbnails']:.2f}x |\n"
        f"| a grid of {args.photos} thumbnails of {GRID} px (ms, 2 threads) | {1000 * best['grid from files']:.0f} "
        f"(decoded from the files) | {1000 * best['grid from store']:.0f} (from the store) | "
        f"{best['grid from files'] / best['grid from store']:.0f}x faster |\n\n"
        f"A stored thumbnail ({THUMB_NOTE}) takes {size_kb:.1f} KB: {size_kb * 20_000 / 1024:.0f} MB for a library of "
        "20,000 photos, in the cache folder.\n"
    )
    print(text)
    RESULTS.write_text(text, encoding="utf-8")
    return 0


THUMB_NOTE = "160 px on its longer side, JPEG quality 85"

if __name__ == "__main__":
    sys.exit(main())
