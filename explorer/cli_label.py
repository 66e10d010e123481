"""`explorer label CLASS IMAGE... --to LABELLED_FOLDER [--copy]`: pictures (a search's results) into a class of a
labelled folder, which `trainer fit` and the fine-tune wizard take (explorer.engine.labelled_set)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from explorer.cli_output import EXIT_BAD_IMAGE, EXIT_ERROR, EXIT_OK, EXIT_USAGE
from explorer.engine.catalog import readable
from explorer.engine.labelled_set import add_to_class, classes


def add_label_parser(sub: Any) -> None:
    lab = sub.add_parser("label", help="put pictures into a class of a labelled folder (for trainer fit)")
    lab.add_argument("class_name", metavar="CLASS", help="the class (a sub-folder of the labelled folder)")
    lab.add_argument("images", type=Path, nargs="+", metavar="IMAGE")
    lab.add_argument("--to", dest="root", type=Path, required=True, help="the labelled folder (made if absent)")
    lab.add_argument("--copy", action="store_true", help="copy the pictures (default: link to them)")
    lab.add_argument("--json", action="store_true")


def cmd_label(_session: Any, args: argparse.Namespace) -> int:
    missing = [p for p in args.images if not p.is_file()]
    if missing:
        print(f"explorer: no such file: {readable(str(missing[0]))}", file=sys.stderr)
        return EXIT_BAD_IMAGE
    try:
        done = add_to_class(args.root, args.class_name, args.images, copy=args.copy)
    except ValueError as exc:
        print(f"explorer: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"explorer: cannot write to {readable(str(args.root))}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_ERROR
    counts = classes(args.root)
    if args.json:
        print(json.dumps({
            "class": done.folder.name, "added": [str(p) for p in done.added], "already": [str(p) for p in done.already],
            "copied_instead_of_linked": done.copied_instead, "failed": {str(p): why for p, why in done.failed},
            "classes": counts,
        }, indent=2))  # fmt: skip
    else:
        how = "copied" if args.copy or done.copied_instead else "linked"
        print(f"{len(done.added)} {how} into {readable(str(done.folder))}, {len(done.already)} already there")
        print("classes: " + ", ".join(f"{name} {n}" for name, n in counts.items()))
        if done.copied_instead and not args.copy:
            print("note: links are not allowed here, so the pictures were copied", file=sys.stderr)
    for picture, why in done.failed:
        print(f"explorer: {readable(str(picture))} not added: {why}", file=sys.stderr)
    return EXIT_OK if not done.failed else EXIT_ERROR
