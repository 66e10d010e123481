"""Watch latency: from a photo written into a watched folder to that photo being searchable.

    .venv/bin/python bench/watch_latency.py [--photos 200] [--writes 10] [--settle 1.0]

A folder of generated photos is indexed with the bundled model and watched the way `explorer library watch` and the
window watch (explorer.cli_library.watch_and_index: explorer.engine.watcher, then an incremental index); then photos
are written into it one at a time, and each is timed until a query with it returns it as its own nearest neighbour.
The wait for the folder to be quiet (`--settle`) is part of the latency by design: a card copied in is one re-index.
Caches go to a temporary folder. Writes bench/results/watch_latency.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "watch_latency.md"


def photo(path: Path, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (6, 8, 3), dtype=np.uint8)
    picture = Image.fromarray(base).resize((640, 480), Image.Resampling.BICUBIC)
    picture.save(path, quality=90)
    return path


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--photos", type=int, default=200)
    p.add_argument("--writes", type=int, default=10)
    p.add_argument("--settle", type=float, default=1.0)
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="watch-latency-"))
    os.environ["RETRIEVAL_EXPLORER_CACHE"] = str(work / "cache")
    os.environ["RETRIEVAL_EXPLORER_DATA"] = str(work / "data")
    from explorer.cli_library import watch_and_index
    from explorer.engine.session import RetrievalSession

    folder = work / "photos"
    folder.mkdir()
    for i in range(args.photos):
        photo(folder / f"IMG_{i:05d}.jpg", i)
    session = RetrievalSession()
    reports: list[tuple[float, int]] = []
    stop = threading.Event()
    thread = threading.Thread(
        target=watch_and_index,
        args=(session, [folder], lambda _f, r: reports.append((time.perf_counter(), r.embedded)), stop, args.settle),
        kwargs={"told": lambda _text: None},
        daemon=True,
    )
    thread.start()
    while not reports:  # the first, full index
        time.sleep(0.05)
    first_index = reports[0]
    latencies, searchable = [], []
    for i in range(args.writes):
        time.sleep(0.5)
        before = len(reports)
        t0 = time.perf_counter()
        new = photo(folder / f"NEW_{i:03d}.jpg", 10_000 + i)
        while len(reports) == before or sum(e for _t, e in reports[before:]) == 0:
            time.sleep(0.01)
        latencies.append(reports[-1][0] - t0)
        # `exclude` names no picture of the folder: the new photo must come back as its own nearest neighbour
        result = session.query(new, folder, k=1, exclude=work / "none")
        assert result.float_ranking.results[0].path == new, "the new photo is not its own nearest neighbour"
        searchable.append(time.perf_counter() - t0)
    stop.set()
    thread.join()
    lat = np.array(searchable)
    lines = [
        "## Watch latency: a photo written into a watched folder, until it is searchable (bench/watch_latency.py)",
        "",
        f"Bundled model ({session.runtime}), CPU ({os.cpu_count()} cores), a folder of {args.photos} photos "
        f"(640 x 480 JPEG), {args.writes} photos written one at a time; settle {args.settle:.1f} s (the quiet wait "
        f"before a change is indexed, part of the latency by design). First full index: {first_index[1]} embedded.",
        "",
        "| what | median | max |",
        "|---|---:|---:|",
        f"| written → indexed (watch event, settle, scan, embed) | {np.median(latencies):.2f} s | "
        f"{max(latencies):.2f} s |",
        f"| written → returned by a query as its own nearest neighbour | {np.median(lat):.2f} s | {lat.max():.2f} s |",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
