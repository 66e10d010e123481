"""What `explorer` commands share: exit codes, the progress bar, notes, and how a query's ranking is printed.

Its own module so that explorer.cli and explorer.cli_export both import it, and neither imports the other.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from explorer.engine.catalog import readable

if TYPE_CHECKING:
    from trainer.progress import Progress

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_BAD_IMAGE, EXIT_NO_FOLDER, EXIT_BAD_MODEL, EXIT_INTERRUPTED = (
    0,
    1,
    2,
    3,
    4,
    5,
    130,
)
EXIT_CACHE = 6  # the cache cannot be written (read-only or full): what is indexed is still searched
EXIT_MISSING = 7  # an optional package (the export's: pymilvus, milvus-lite, pyarrow) is not installed


def progress_printer(quiet: bool) -> Callable[[Progress], None]:
    from trainer.progress import format_progress

    if quiet or not sys.stderr.isatty():
        last = [-1]

        def plain(p: Progress) -> None:
            if quiet:
                return
            step = max(1, p.total // 10)
            if p.done // step != last[0] or p.done == p.total:
                last[0] = p.done // step
                print(format_progress(p), file=sys.stderr, flush=True)

        return plain

    def bar(p: Progress) -> None:
        end = "\n" if p.done >= p.total else ""
        print("\r" + format_progress(p), end=end, file=sys.stderr, flush=True)

    return bar


def print_notes(session: Any) -> None:
    for note in session.notes:
        print(f"explorer: {readable(note)}", file=sys.stderr)
    session.notes.clear()


def print_ranking(session: Any, args: argparse.Namespace, ranking: Any, where: str, full_paths: bool = False) -> None:
    """A query's results as `explorer query` prints them (text, or JSON with --json), from a folder or an export
    (`full_paths`: an export of several folders, where a relative path alone does not say which)."""
    if args.json:
        out = {
            "query": str(args.image),
            "folder": where,
            "model": session.card.name,
            "dim": ranking.dim,
            "ranking": "binary" if args.binary else "float",
            "rerank": getattr(args, "rerank", "none"),
            "results": [result_json(r, ranking.dim) for r in ranking.results],
        }
        print(json.dumps(out, indent=2))
    else:
        kind = f"binary {ranking.dim} bits" if args.binary else f"float {ranking.dim}-d"
        kind += ", query expansion" if getattr(args, "rerank", "none") == "qe" else ""
        print(f"{len(ranking.results)} nearest to {readable(str(args.image))} ({kind}, model {session.card.name}):")
        print_table(ranking, [readable(str(r.path) if full_paths else r.relpath) for r in ranking.results])


def result_json(r: Any, dim: int, **extra: object) -> dict[str, Any]:
    """One result as `--json` prints it; `extra` (where it was found) goes after its path."""
    return {
        "rank": r.rank,
        "path": str(r.path),
        **extra,
        "cosine_distance": round(r.cosine_distance, 6),
        "hamming_distance": r.hamming_distance if dim % 8 == 0 else None,
    }


def print_table(ranking: Any, shown: list[str]) -> None:
    """The ranking's rows as text: rank, cosine and Hamming distance, and `shown` (each result's path as printed)."""
    print(f"{'rank':>4}  {'cosine':>7}  {'hamming':>7}  path")
    for r, path in zip(ranking.results, shown, strict=True):
        hamming = f"{r.hamming_distance:7d}" if ranking.dim % 8 == 0 else "      -"  # no codes at this width
        print(f"{r.rank:>4}  {r.cosine_distance:7.4f}  {hamming}  {path}")
