"""`explorer ...`: everything the window does, from a terminal (and what the tests drive).

Exit codes: 0 success, 1 unexpected error, 2 bad usage, 3 the query image cannot be read, 4 the folder is
missing or not indexed, 5 the model cannot be loaded (or a Milvus export holds another model's embeddings), 6 the
cache cannot be written, 7 a package the command needs is not installed, 130 interrupted (work done so far is kept).

`explorer export` and `explorer query --in milvus://...` live in explorer.cli_export, `explorer library ...` and
queries of several folders in explorer.cli_library.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from explorer.cli_duplicates import add_duplicates_parser, cmd_duplicates
from explorer.cli_export import add_export_parser, cmd_export, cmd_query_store, is_store
from explorer.cli_label import add_label_parser, cmd_label
from explorer.cli_library import add_library_parser, cmd_library, cmd_query_library, is_library_name
from explorer.cli_output import (  # noqa: F401 (the exit codes are the command's interface, imported from here)
    EXIT_BAD_IMAGE,
    EXIT_BAD_MODEL,
    EXIT_CACHE,
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_MISSING,
    EXIT_NO_FOLDER,
    EXIT_OK,
    EXIT_USAGE,
    print_ranking,
)
from explorer.cli_output import print_notes as _print_notes
from explorer.cli_output import progress_printer as _progress_printer
from explorer.engine.catalog import CatalogError, readable
from explorer.engine.multi_query import within

EXPAND = {"none": 0, "qe": 2}  # --rerank: neighbours averaged into the query (trainer.rerank.query_expansion's n)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="explorer", description="Image retrieval with deep metric learning.")
    p.add_argument("--model", type=Path, default=None, help="model file (.safetensors/.json); default: bundled")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, mps (default: auto)")
    sub = p.add_subparsers(dest="command", required=True)

    idx = sub.add_parser("index", help="embed the images of a folder (incremental)")
    idx.add_argument("folder", type=Path)
    idx.add_argument("--quiet", action="store_true", help="no progress bar")
    idx.add_argument("--json", action="store_true", help="print the report as JSON")
    idx.add_argument(
        "--batch-size", type=int, default=None, help="images per batch (default 256 on a GPU, 32 on a CPU)"
    )
    idx.add_argument(
        "--follow-links", action="store_true",
        help="follow symbolic links that lead out of the folder (by default only links inside it are followed)",
    )  # fmt: skip

    q = sub.add_parser("query", help="rank a folder's images by similarity to an image")
    q.add_argument("image", type=Path)
    q.add_argument(
        "--in", dest="places", type=lambda text: text if is_store(text) else Path(text), action="append",
        required=True, help="an indexed folder, a library's name (`library`), or an export: milvus://PATH.db"
        "[#collection] or milvus://http://HOST:19530[#...]; several folders or libraries are searched as one",
    )  # fmt: skip
    q.add_argument("-k", type=int, default=20, help="number of neighbours (default 20)")
    q.add_argument("--dim", type=int, default=None, help="nested embedding dimension (default: full)")
    q.add_argument("--binary", action="store_true", help="rank by Hamming distance of the binary codes")
    q.add_argument(
        "--rerank", choices=["none", "qe"], default="none",
        help="qe: rank by the mean of the query and its 2 nearest (query expansion: Recall@1 as without it, MAP@R "
        "+6 to +10 points on the test halves, bench/results/rerank.md); distances shown stay the query's own",
    )  # fmt: skip
    q.add_argument(
        "--also",
        dest="positives",
        type=Path,
        action="append",
        default=[],
        metavar="IMAGE",
        help="another picture of what is wanted (repeatable): the query is their mean",
    )
    q.add_argument(
        "--not",
        dest="negatives",
        type=Path,
        action="append",
        default=[],
        metavar="IMAGE",
        help="a picture of what is not wanted (repeatable): subtracted from the query at half weight",
    )
    q.add_argument(
        "--max-distance",
        type=float,
        default=None,
        help="leave out results farther than this (cosine distance; Hamming bits with --binary)",
    )
    q.add_argument("--json", action="store_true", help="machine-readable output")

    info = sub.add_parser("info", help="what is indexed in a folder, with which model, and what was skipped")
    info.add_argument("folder", type=Path)
    info.add_argument("--json", action="store_true")

    add_library_parser(sub)
    add_export_parser(sub)
    add_label_parser(sub)
    add_duplicates_parser(sub)

    ev = sub.add_parser("eval", help="retrieval metrics of the model on a labelled folder (trainer eval)")
    ev.add_argument("folder", type=Path)
    ev.add_argument("--split", choices=["test", "all"], default="all")
    ev.add_argument("--json", action="store_true")
    return p


def _report_json(report: Any) -> dict[str, Any]:
    return {
        "folder": str(report.folder),
        "scanned": report.scanned,
        "embedded": report.embedded,
        "unchanged": report.unchanged,
        "removed": report.removed,
        "kept_offline": report.kept_offline,
        "indexed": report.indexed,
        "cancelled": report.cancelled,
        "skipped": [{"path": s.relpath, "reason": s.reason} for s in report.skipped],
    }


def cmd_index(session: Any, args: argparse.Namespace) -> int:
    if args.batch_size is not None and args.batch_size < 1:
        print("explorer: --batch-size must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    if not args.folder.is_dir():
        print(f"explorer: not a folder: {readable(str(args.folder))}", file=sys.stderr)
        return EXIT_NO_FOLDER
    try:
        report = session.index(
            args.folder,
            progress=_progress_printer(args.quiet or args.json),
            follow_outside=args.follow_links,
            on_wait=lambda text: print(f"explorer: {text}", file=sys.stderr, flush=True),
        )
    except CatalogError as exc:
        _print_notes(session)
        print(f"explorer: {readable(str(exc))}", file=sys.stderr)
        return EXIT_CACHE
    except PermissionError as exc:
        print(f"explorer: {readable(str(exc))}; check the folder's permissions", file=sys.stderr)
        return EXIT_NO_FOLDER
    _print_notes(session)
    if args.json:
        print(json.dumps(_report_json(report), indent=2))
    else:
        print(
            f"{report.indexed} images indexed in {report.folder} "
            f"({report.embedded} embedded, {report.unchanged} unchanged, {report.removed} removed, "
            f"{len(report.skipped)} skipped) with model {session.card.name}"
        )
        if report.kept_offline:
            print(
                f"  kept {report.kept_offline} indexed images that cannot be seen now (a folder that cannot be read, "
                "or an empty folder: is the drive connected?); they are removed once their folder is readable and "
                "they are really gone"
            )
        for s in report.skipped:
            print(f"  skipped {readable(s.relpath)}: {readable(s.reason)}")
    return EXIT_OK


def _query_usage_error(session: Any, args: argparse.Namespace) -> str | None:
    if args.k < 1:
        return "-k must be at least 1"
    if args.dim is not None and not 0 < args.dim <= session.card.dim:
        dims = ", ".join(map(str, session.card.nested_dims))
        return f"--dim must be in 1..{session.card.dim} (trained: {dims})"
    if args.binary and (args.dim or session.card.dim) % 8:
        return "--binary needs a dimension divisible by 8"
    return None


def cmd_query(session: Any, args: argparse.Namespace) -> int:
    from trainer.images import ImageLoadError

    args.folder = args.places[0]
    if any(isinstance(p, str) for p in args.places):  # milvus://...
        extras = args.positives or args.negatives or args.rerank != "none" or args.max_distance is not None
        if len(args.places) > 1 or extras:
            print(
                "explorer: an export is searched on its own, by one picture: give one --in milvus://... and leave "
                "out --also, --not, --rerank and --max-distance",
                file=sys.stderr,
            )
            return EXIT_USAGE
        return cmd_query_store(session, args)
    if len(args.places) > 1 or is_library_name(args.folder) or args.positives or args.negatives:
        if not args.image.is_file():
            print(f"explorer: no such file: {readable(str(args.image))}", file=sys.stderr)
            return EXIT_BAD_IMAGE
        usage = _query_usage_error(session, args)
        if usage:
            print(f"explorer: {usage}", file=sys.stderr)
            return EXIT_USAGE
        return cmd_query_library(session, args)
    if not args.folder.is_dir():
        print(f"explorer: not a folder or a library: {readable(str(args.folder))}", file=sys.stderr)
        return EXIT_NO_FOLDER
    if not args.image.is_file():
        print(f"explorer: no such file: {readable(str(args.image))}", file=sys.stderr)
        return EXIT_BAD_IMAGE
    if not session.is_indexed(args.folder):
        shown = readable(str(args.folder))
        if session.is_damaged(args.folder):
            print(
                f"explorer: the index of {shown} is damaged; run: explorer index {shown} to rebuild it", file=sys.stderr
            )
        else:
            print(f"explorer: {shown} is not indexed yet; run: explorer index {shown}", file=sys.stderr)
        return EXIT_NO_FOLDER
    usage = _query_usage_error(session, args)
    if usage:
        print(f"explorer: {usage}", file=sys.stderr)
        return EXIT_USAGE
    try:
        result = session.query(args.image, args.folder, k=args.k, dim=args.dim, expand=EXPAND[args.rerank])
    except ImageLoadError as exc:
        print(f"explorer: cannot read {readable(str(args.image))}: {exc}", file=sys.stderr)
        return EXIT_BAD_IMAGE
    except ValueError as exc:  # an embedding that is not a number: nothing is ranked at random
        print(f"explorer: {exc}", file=sys.stderr)
        return EXIT_BAD_MODEL
    except CatalogError as exc:
        print(f"explorer: {readable(str(exc))}", file=sys.stderr)
        return EXIT_CACHE
    _print_notes(session)
    ranking = result.ranking(args.binary)
    ranking = replace(ranking, results=within(ranking.results, args.max_distance, args.binary))
    if not ranking.results:
        print(f"nothing in {readable(str(args.folder))} is within {args.max_distance} of the query")
        return EXIT_OK
    print_ranking(session, args, ranking, str(Path(args.folder).resolve()))
    return EXIT_OK


def cmd_info(session: Any, args: argparse.Namespace) -> int:
    if not args.folder.is_dir():
        print(f"explorer: not a folder: {readable(str(args.folder))}", file=sys.stderr)
        return EXIT_NO_FOLDER
    indexed = session.is_indexed(args.folder)
    collection = session.collection(args.folder) if indexed else None
    # `is not None`: a collection with no images is falsy, and that is exactly when its skipped files matter
    meta = collection.catalog.meta() if collection is not None else {}
    skipped = collection.catalog.skipped() if collection is not None else []
    info = {
        "folder": str(Path(args.folder).resolve()),
        "indexed": indexed,
        "images": len(collection) if collection is not None else 0,
        "model": session.card.name,
        "model_trained": session.card.trained,
        "model_fingerprint": session.fingerprint,
        "dim": session.card.dim,
        "nested_dims": session.card.nested_dims,
        "updated": meta.get("updated") or meta.get("completed"),
        "catalog": str(session.catalog_path(args.folder)),
        "skipped": [{"path": s.relpath, "reason": s.reason} for s in skipped],
    }
    _print_notes(session)
    if args.json:
        print(json.dumps(info, indent=2))
        return EXIT_OK
    if not indexed:
        print(f"{readable(str(info['folder']))}: not indexed with model {session.card.name} (run: explorer index)")
        return EXIT_OK
    print(f"{readable(str(info['folder']))}: {info['images']} images, model {info['model']} ({info['dim']}-d)")
    print(f"  last updated {info['updated']}; catalog {info['catalog']}")
    print(f"  {len(skipped)} skipped")
    for s in skipped:
        print(f"    {readable(s.relpath)}: {readable(s.reason)}")
    return EXIT_OK


def cmd_eval(session: Any, args: argparse.Namespace) -> int:
    from trainer import cli as trainer_cli

    argv = ["eval", str(session.model_path), str(args.folder), "--split", args.split]
    return trainer_cli.main([*argv, "--json"] if args.json else argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from explorer.engine.session import RetrievalSession
    from trainer.card import ModelFileError

    if args.device != "auto":  # checked now, not after a scan, and without importing torch for "auto"
        from trainer.devices import pick_device

        try:
            pick_device(args.device)
        except (ValueError, RuntimeError) as exc:
            print(f"explorer: {exc}; use --device cpu or leave --device out", file=sys.stderr)
            return EXIT_USAGE
    try:
        session = RetrievalSession(args.model, device=args.device, batch_size=getattr(args, "batch_size", None))
    except (ModelFileError, OSError) as exc:
        print(f"explorer: cannot load model: {exc}", file=sys.stderr)
        return EXIT_BAD_MODEL
    commands = {
        "index": cmd_index, "query": cmd_query, "info": cmd_info, "eval": cmd_eval, "library": cmd_library,
        "export": cmd_export, "label": cmd_label, "duplicates": cmd_duplicates,
    }  # fmt: skip
    try:
        return commands[args.command](session, args)
    except ModelFileError as exc:  # the weights are read when first needed (a probe image then checks them)
        print(f"explorer: cannot load model: {exc}", file=sys.stderr)
        return EXIT_BAD_MODEL
    except KeyboardInterrupt:
        print("\nexplorer: interrupted; finished batches are kept", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        session.close()


if __name__ == "__main__":
    sys.exit(main())
