"""`explorer export FOLDER [FOLDER ...] --to milvus [URI] | --to parquet PATH`, and `explorer query --in milvus://...`.

Kept out of explorer/cli.py, which only registers the subcommand: the export's packages (pymilvus, milvus-lite,
pyarrow) are optional, imported when an export or a Milvus query runs, and their absence is one sentence with the
install command (exit 7). The engine side is explorer.engine.milvus_store and explorer.engine.parquet_export.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from explorer.engine.catalog import CatalogError, readable
from explorer.engine.export_data import ExportError, ExportSource, MissingPackage, ModelIdentity, ModelMismatch

KINDS = ("milvus", "parquet")


def is_store(text: str) -> bool:
    """Whether a `--in` argument names a Milvus export rather than a folder."""
    return text.startswith("milvus://")


def add_export_parser(sub: Any) -> None:
    ex = sub.add_parser(
        "export",
        help="write indexed folders to Milvus (Lite by default) or to a parquet file",
        description="Write the embeddings, binary codes, paths, sizes and times of indexed folders to a Milvus "
        "collection (Milvus Lite, a local .db folder, when no URI is given; a server as http://HOST:19530, "
        "with MILVUS_TOKEN for its token) or to one parquet file.",
    )
    ex.add_argument(
        "folders", type=Path, nargs="+", metavar="FOLDER",
        help="indexed folders, or a library's name (explorer library): one export of all",
    )  # fmt: skip
    ex.add_argument(
        "--to", nargs="+", required=True, metavar="KIND",
        help="milvus [PATH.db|http://HOST:19530][#collection] (default: milvus.db in the cache), or parquet FILE",
    )  # fmt: skip
    ex.add_argument("--batch-size", type=int, default=None, help="rows per write (Milvus 1000, parquet 10000)")
    ex.add_argument("--quiet", action="store_true", help="no progress bar")
    ex.add_argument("--json", action="store_true", help="print the summary as JSON")


def _fail(text: str, code: int) -> int:
    print(f"explorer: {readable(text)}", file=sys.stderr)
    return code


def _model(session: Any) -> ModelIdentity:
    return ModelIdentity(session.fingerprint, session.card.name, session.card.dim)


def cmd_export(session: Any, args: argparse.Namespace) -> int:
    from explorer import cli_output as cli

    kind, *rest = args.to
    if kind not in KINDS or len(rest) > 1 or (kind == "parquet" and not rest):
        return _fail("use --to milvus [URI] or --to parquet FILE, after the folders", cli.EXIT_USAGE)
    if args.batch_size is not None and args.batch_size < 1:
        return _fail("--batch-size must be at least 1", cli.EXIT_USAGE)
    from explorer.cli_library import is_library_name
    from explorer.engine.library import LibraryStore

    named = [LibraryStore().get(str(f)).folder_paths() if is_library_name(f) else [f] for f in args.folders]
    # a folder named twice is exported once; a library's folder whose drive is away, from its index
    folders = list(dict.fromkeys(Path(f).resolve() for group in named for f in group))
    for folder in folders:
        shown = readable(str(folder))
        if not folder.is_dir() and not session.is_indexed(folder):
            return _fail(f"not a folder: {shown}", cli.EXIT_NO_FOLDER)
        if not session.is_indexed(folder):
            return _fail(f"{shown} is not indexed yet; run: explorer index {shown}", cli.EXIT_NO_FOLDER)
    try:
        target = None
        if kind == "milvus":
            from explorer.engine.milvus_target import Target

            target = Target.parse(rest[0] if rest else None)
    except MissingPackage as exc:
        return _fail(str(exc), cli.EXIT_MISSING)
    except ExportError as exc:
        return _fail(str(exc), cli.EXIT_USAGE)
    try:
        sources = [ExportSource.from_collection(session.collection(f)) for f in folders]
        progress = cli.progress_printer(args.quiet or args.json)
        if target is None:
            from explorer.engine.parquet_export import export_to_parquet

            done = export_to_parquet(sources, _model(session), Path(rest[0]), args.batch_size or 10_000, progress)
            summary = {"to": "parquet", "path": str(done.path.resolve()), "rows": done.rows, "seconds": done.seconds}
        else:
            from explorer.engine.milvus_store import export_to_milvus
            from explorer.engine.milvus_target import SCHEME

            made = export_to_milvus(sources, _model(session), target, args.batch_size or 1000, progress)
            summary = {"to": "milvus", "uri": made.uri, "collection": made.collection, "rows": made.rows,
                       "seconds": made.seconds, "query": f"{SCHEME}{made.uri}#{made.collection}"}  # fmt: skip
    except MissingPackage as exc:
        return _fail(str(exc), cli.EXIT_MISSING)
    except ExportError as exc:
        return _fail(str(exc), cli.EXIT_ERROR)
    except CatalogError as exc:
        return _fail(str(exc), cli.EXIT_CACHE)
    except OSError as exc:
        return _fail(f"cannot write the export: {exc.strerror or exc}; choose another place", cli.EXIT_ERROR)
    except KeyboardInterrupt:
        print("\nexplorer: interrupted; nothing was exported, and an earlier export is as it was", file=sys.stderr)
        return cli.EXIT_INTERRUPTED
    cli.print_notes(session)
    summary["model"] = session.card.name
    if args.json:
        print(json.dumps(summary, indent=2))
        return cli.EXIT_OK
    where = f"{summary['path']}" if kind == "parquet" else f"Milvus {summary['uri']} as {summary['collection']}"
    count = f"{len(folders)} folder{'s' if len(folders) > 1 else ''}"
    print(f"{summary['rows']} images of {count} exported to {readable(where)} "
          f"(model {session.card.name}, {session.card.dim}-d) in {summary['seconds']:.1f} s")  # fmt: skip
    if kind == "milvus":
        print(f"  query it with: explorer query IMAGE --in {readable(str(summary['query']))}")
    return cli.EXIT_OK


def cmd_query_store(session: Any, args: argparse.Namespace) -> int:
    """`explorer query IMAGE --in milvus://...`: the image embedded by this session's model, searched in Milvus,
    printed as a folder's query is."""
    from explorer import cli_output as cli
    from trainer.images import ImageLoadError

    if not args.image.is_file():
        return _fail(f"no such file: {args.image}", cli.EXIT_BAD_IMAGE)
    if args.k < 1:
        return _fail("-k must be at least 1", cli.EXIT_USAGE)
    if args.dim not in (None, session.card.dim):
        return _fail(f"an export holds the full {session.card.dim}-d embeddings only: leave --dim out", cli.EXIT_USAGE)
    try:
        from explorer.engine.milvus_store import MilvusExport
        from explorer.engine.milvus_target import SCHEME, Target

        target = Target.parse(args.folder)
    except MissingPackage as exc:
        return _fail(str(exc), cli.EXIT_MISSING)
    except ExportError as exc:
        return _fail(str(exc), cli.EXIT_USAGE)
    try:
        store = MilvusExport(target, _model(session))
    except MissingPackage as exc:
        return _fail(str(exc), cli.EXIT_MISSING)
    except ModelMismatch as exc:
        return _fail(str(exc), cli.EXIT_BAD_MODEL)
    except ExportError as exc:
        return _fail(str(exc), cli.EXIT_NO_FOLDER)
    with store:
        try:
            ranking = store.search(session.embed_query(args.image), args.k, args.binary, exclude=args.image)
        except ImageLoadError as exc:
            return _fail(f"cannot read {args.image}: {exc}", cli.EXIT_BAD_IMAGE)
        except ValueError as exc:  # an embedding that is not a number
            return _fail(str(exc), cli.EXIT_BAD_MODEL)
        except ExportError as exc:
            return _fail(str(exc), cli.EXIT_ERROR)
    cli.print_notes(session)
    cli.print_ranking(session, args, ranking, f"{SCHEME}{target.uri}#{store.name}", full_paths=len(store.folders) > 1)
    return cli.EXIT_OK
