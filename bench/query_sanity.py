"""Sanity figure for the engine: `explorer query` on an indexed labelled folder finds same-class neighbours.

Indexes the folder with the explorer engine (incremental: a second run costs nothing), then queries a seeded
sample of its images through the same path as `explorer query` (decode + embed the file, search the
collection) and reports the share whose nearest *other* image has the same class (the sub-folder): Recall@1,
float and binary, at the full dimension.

    python bench/query_sanity.py [../shared/datasets/cub100] [--queries 300] [--model PATH]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

from explorer.engine.session import RetrievalSession
from trainer.progress import Progress, format_progress

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "cub100"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder", type=Path, nargs="?", default=DEFAULT)
    p.add_argument("--queries", type=int, default=300)
    p.add_argument("--model", type=Path, default=None)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    if not args.folder.is_dir():
        print(f"no folder {args.folder}", file=sys.stderr)
        return 2
    session = RetrievalSession(args.model)
    last = [0.0]

    def progress(pr: Progress) -> None:
        if time.time() - last[0] > 20 or pr.done == pr.total:
            last[0] = time.time()
            print(format_progress(pr), file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    report = session.index(args.folder, progress=progress)
    print(f"indexed {report.indexed} images ({report.embedded} embedded now) in {time.perf_counter() - t0:.0f} s")
    collection = session.collection(args.folder)
    paths = collection.paths
    picks = random.Random(args.seed).sample(paths, min(args.queries, len(paths)))
    hits = {"float": 0, "binary": 0}
    t0 = time.perf_counter()
    for path in picks:
        result = session.query(path, args.folder, k=2)
        for name, ranking in (("float", result.float_ranking), ("binary", result.binary_ranking)):
            others = [r for r in ranking.results if r.path != path]
            if others and others[0].path.parent.name == path.parent.name:
                hits[name] += 1
    per_query = (time.perf_counter() - t0) / max(1, len(picks)) * 1000
    n = len(picks)
    model = f"{session.card.name} ({session.card.dim}-d)"
    print(f"model {model}, {args.folder.name}, {n} queries, {per_query:.0f} ms/query")
    print(f"Recall@1 float  {100 * hits['float'] / n:.1f}")
    print(f"Recall@1 binary {100 * hits['binary'] / n:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
