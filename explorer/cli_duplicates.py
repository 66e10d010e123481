"""`explorer duplicates FOLDER [--similar] [--json]`: the folder's copies of one photo (and, asked for, its bursts),
each group with the keeper it suggests (explorer.engine.duplicates). Nothing is moved or deleted."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from explorer.cli_output import EXIT_NO_FOLDER, EXIT_OK, print_notes, progress_printer
from explorer.engine.catalog import readable


def add_duplicates_parser(sub: Any) -> None:
    d = sub.add_parser("duplicates", help="copies of one photo in an indexed folder (and bursts, with --similar)")
    d.add_argument("folder", type=Path)
    d.add_argument("--similar", action="store_true", help="also the groups of similar photos (bursts, same scene)")
    d.add_argument("--json", action="store_true")
    d.add_argument("--quiet", action="store_true", help="no progress")


def _member(m: Any) -> dict[str, Any]:
    return {"path": str(m.path), "width": m.width, "height": m.height, "bytes": m.bytes, "mtime": m.mtime}


def cmd_duplicates(session: Any, args: argparse.Namespace) -> int:
    from explorer.engine.duplicates import KEEPER_RULE, find_duplicates
    from trainer.progress import Progress

    shown = readable(str(args.folder))
    if not args.folder.is_dir():
        print(f"explorer: not a folder: {shown}", file=sys.stderr)
        return EXIT_NO_FOLDER
    if not session.is_indexed(args.folder):
        print(f"explorer: {shown} is not indexed yet; run: explorer index {shown}", file=sys.stderr)
        return EXIT_NO_FOLDER
    collection = session.collection(args.folder)
    codes = collection.codes
    if codes is None:
        print("explorer: this model's width has no binary codes (not a multiple of 8)", file=sys.stderr)
        return EXIT_NO_FOLDER
    paths = collection.paths
    printer = progress_printer(args.quiet or args.json)
    started = time.monotonic()

    def progress(done: int, total: int) -> None:
        rate = done / max(time.monotonic() - started, 1e-6)
        printer(Progress(done, total, rate, "comparing pictures"))

    report = find_duplicates(paths, codes, progress=progress)
    groups = [g for g in report.groups if g.kind == "duplicates" or args.similar]
    print_notes(session)
    if args.json:
        print(json.dumps({
            "folder": str(Path(args.folder).resolve()), "images": report.images, "keeper_rule": KEEPER_RULE,
            "groups": [{"kind": g.kind, "keeper": str(g.members[0].path), "members": [_member(m) for m in g.members]}
                       for g in groups],
            "unreadable": {str(p): why for p, why in report.unreadable},
        }, indent=2))  # fmt: skip
        return EXIT_OK
    copies = sum(len(g.members) - 1 for g in report.of_kind("duplicates"))
    print(
        f"{len(report.of_kind('duplicates'))} groups of copies ({copies} copies) among {report.images} images"
        + (f", {len(report.of_kind('similar'))} groups of similar photos" if args.similar else "")
        + f"; the keeper (first, *) has {KEEPER_RULE}. Nothing was moved or deleted."
    )
    for g in groups:
        print(f"\n{g.kind}:")
        for i, m in enumerate(g.members):
            day = time.strftime("%Y-%m-%d", time.localtime(m.mtime)) if m.mtime else "?"
            size = f"{m.width}x{m.height}, {m.bytes / 1e6:.1f} MB, {day}"
            print(f"  {'*' if i == 0 else ' '} {readable(str(m.path))}  ({size})")
    for path, why in report.unreadable:
        print(f"explorer: {readable(str(path))} could not be compared: {why}", file=sys.stderr)
    return EXIT_OK
