"""`explorer library add|remove|list|index` and `explorer query IMG --in LIBRARY`: several folders as one.

Kept apart from explorer.cli so that the one-folder commands stay readable; explorer.cli registers the parser and
hands library names given to `--in` here.
"""

from __future__ import annotations

import argparse
import json
import queue
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from explorer.cli_output import (
    EXIT_BAD_IMAGE,
    EXIT_CACHE,
    EXIT_NO_FOLDER,
    EXIT_OK,
    EXIT_USAGE,
    print_table,
    result_json,
)  # fmt: skip
from explorer.engine.catalog import CatalogError, readable
from explorer.engine.library import DEFAULT_LIBRARY, LibraryError, LibraryStore
from explorer.engine.multi_query import combined_embedding, within

if TYPE_CHECKING:
    from explorer.engine.indexer import IndexReport
    from explorer.engine.session import RetrievalSession


def add_library_parser(sub: Any) -> None:
    lib = sub.add_parser("library", help="several folders (on several drives) searched as one")
    lib.add_argument("--name", default=DEFAULT_LIBRARY, help=f"which library (default {DEFAULT_LIBRARY!r})")
    actions = lib.add_subparsers(dest="library_command", required=True)
    add = actions.add_parser("add", help="add a folder (indexed when you run `explorer library index`)")
    add.add_argument("folder", type=Path)
    remove = actions.add_parser("remove", help="take a folder out (its index stays in the cache)")
    remove.add_argument("folder", type=Path)
    listing = actions.add_parser("list", help="the folders, online or offline, and what is indexed")
    listing.add_argument("--json", action="store_true")
    actions.add_parser("index", help="index every folder that is online (incremental)")
    watch = actions.add_parser(
        "watch", help="index every online folder, then keep indexing what changes (Ctrl+C stops)"
    )
    watch.add_argument("--settle", type=float, default=1.0, help="seconds of quiet before a change is indexed")


def _folder_lines(session: RetrievalSession, store: LibraryStore, name: str) -> list[dict[str, Any]]:
    rows = []
    for folder in store.get(name).folders:
        meta = session.catalog_meta(folder.path)
        rows.append(
            {
                "path": str(folder.path),
                "online": folder.online,
                "indexed": "updated" in meta or "completed" in meta,
                "images": session.indexed_count(folder.path),
                "updated": meta.get("completed") or meta.get("updated"),
                "added": folder.added,
            }
        )
    return rows


def cmd_library(session: RetrievalSession, args: argparse.Namespace) -> int:
    store = LibraryStore()
    name = args.name
    try:
        if args.library_command == "add":
            found = session.find_again(args.folder)
            replaces = None
            if found is not None and found.old_folder in store.get(name).folder_paths() and not found.old_folder_online:
                replaces = found.old_folder
            library = store.add(args.folder, name, replaces=replaces)
            moved = f" (was {readable(str(replaces))})" if replaces else ""
            shown = readable(str(Path(args.folder).resolve()))
            print(f"added {shown}{moved}: {len(library.folders)} folders in {name!r}")
            _print_notes(session, store)
            return EXIT_OK
        if args.library_command == "remove":
            library = store.remove(args.folder, name)
            print(f"removed {readable(str(args.folder))}: {len(library.folders)} folders left in {name!r}")
            return EXIT_OK
        if args.library_command == "list":
            rows = _folder_lines(session, store, name)
            if args.json:
                print(json.dumps({"library": name, "model": session.card.name, "folders": rows}, indent=2))
                return EXIT_OK
            if not rows:
                print(f"library {name!r} is empty; add a folder: explorer library add FOLDER")
            for r in rows:
                state = "online " if r["online"] else "OFFLINE"
                what = f"{r['images']} images" if r["indexed"] else "not indexed yet"
                print(f"{state}  {readable(r['path'])}  ({what})")
            _print_notes(session, store)
            return EXIT_OK
        if args.library_command == "watch":
            return _watch(session, store, name, args.settle)
        return _index_all(session, store, name)
    except LibraryError as exc:
        print(f"explorer: {readable(str(exc))}", file=sys.stderr)
        return EXIT_USAGE


def _index_all(session: RetrievalSession, store: LibraryStore, name: str) -> int:
    library = store.get(name)
    if not library.folders:
        print(f"explorer: library {name!r} is empty; add a folder: explorer library add FOLDER", file=sys.stderr)
        return EXIT_NO_FOLDER
    for folder in library.folders:
        shown = readable(str(folder.path))
        if not folder.online:
            print(f"offline, its index is kept: {shown}")
            continue
        try:
            report = session.index(folder.path)
        except CatalogError as exc:
            print(f"explorer: {shown}: {readable(str(exc))}", file=sys.stderr)
            return EXIT_CACHE
        print(f"{shown}: {report.embedded} embedded, {report.unchanged} unchanged, {report.removed} removed")
    _print_notes(session, store)
    return EXIT_OK


def watch_and_index(
    session: RetrievalSession,
    folders: list[Path],
    indexed: Callable[[Path, IndexReport], None],
    stop: threading.Event,
    settle: float = 1.0,
    told: Callable[[str], None] = print,
) -> None:
    """Index `folders`, then index each again whenever its photos change, until `stop` is set. What the window
    does for its library, for a terminal or a server without one."""
    from explorer.engine.watcher import FolderWatcher

    changed: queue.Queue[Path] = queue.Queue()
    watcher = FolderWatcher(changed.put, settle=settle)
    try:
        for folder in folders:
            mode = watcher.watch(folder)
            told(f"watching {readable(str(folder))}" if mode.events else f"{readable(str(folder))}: {mode.reason}")
            changed.put(folder.resolve())
        while not stop.is_set():
            try:
                folder = changed.get(timeout=0.2)
            except queue.Empty:
                continue
            if folder.is_dir():
                indexed(folder, session.index(folder))
    finally:
        watcher.close()


def _watch(session: RetrievalSession, store: LibraryStore, name: str, settle: float) -> int:
    folders = [f.path for f in store.get(name).folders if f.online]
    if not folders:
        print(
            f"explorer: no folder of library {name!r} is online; add one: explorer library add FOLDER", file=sys.stderr
        )
        return EXIT_NO_FOLDER

    def indexed(folder: Path, report: IndexReport) -> None:
        when = time.strftime("%H:%M:%S")
        print(f"{when} {readable(str(folder))}: {report.embedded} embedded, {report.removed} removed", flush=True)

    try:
        watch_and_index(session, folders, indexed, threading.Event(), settle)
    except KeyboardInterrupt:
        print("explorer: stopped watching; what was indexed is kept", file=sys.stderr)
    return EXIT_OK


def _print_notes(session: RetrievalSession, store: LibraryStore) -> None:
    for note in [*store.notes, *session.notes]:
        print(f"note: {readable(note)}", file=sys.stderr)


def is_library_name(text: Path) -> bool:
    """`--in NAME`: a folder wins; else an existing library of that name."""
    return not text.exists() and LibraryStore().exists(str(text))


def cmd_query_library(session: RetrievalSession, args: argparse.Namespace) -> int:
    from explorer.engine.library_search import search_library
    from trainer.images import ImageLoadError

    folders: list[Path] = []
    for place in args.places:  # library names stand for their folders; a folder given twice is searched once
        for folder in LibraryStore().get(str(place)).folder_paths() if is_library_name(place) else [place.resolve()]:
            if not folder.is_dir() and not session.is_indexed(folder):
                print(f"explorer: not a folder or a library: {readable(str(folder))}", file=sys.stderr)
                return EXIT_NO_FOLDER
            if folder not in folders:
                folders.append(folder)
    name = " + ".join(str(p) for p in args.places)
    pictures = [args.image, *args.positives, *args.negatives]
    for picture in pictures:
        if not picture.is_file():
            print(f"explorer: no such file: {readable(str(picture))}", file=sys.stderr)
            return EXIT_BAD_IMAGE
    both = {p.resolve() for p in [args.image, *args.positives]} & {p.resolve() for p in args.negatives}
    if both:
        shown = readable(str(sorted(both)[0]))
        print(f"explorer: {shown} is both wanted and not wanted; leave it out of one of the lists", file=sys.stderr)
        return EXIT_USAGE
    try:
        expand = 2 if args.rerank == "qe" else 0
        if args.positives or args.negatives:  # several pictures: their combined embedding, none of them a result
            query: Path | np.ndarray = combined_embedding(
                [session.embed_query(p) for p in [args.image, *args.positives]],
                [session.embed_query(p) for p in args.negatives],
            )
            own = {p.resolve() for p in pictures}
            ranking = search_library(session, query, folders, args.k + len(own), args.dim, args.binary, expand=expand)
            kept = [r for r in ranking.results if r.path.resolve() not in own][: args.k]
            ranking = replace(
                ranking,
                results=[replace(r, rank=i + 1) for i, r in enumerate(kept)],
                folder_of=[f for r, f in zip(ranking.results, ranking.folder_of, strict=True) if r in kept],
            )
        else:
            ranking = search_library(session, args.image, folders, args.k, args.dim, args.binary, expand=expand)
        cut = within(ranking.results, args.max_distance, args.binary)  # not a prefix when ranked by expansion
        folder_of = [f for r, f in zip(ranking.results, ranking.folder_of, strict=True) if r in cut]
        ranking = replace(ranking, results=cut, folder_of=folder_of)
    except ImageLoadError as exc:
        print(f"explorer: cannot read a query picture: {exc}", file=sys.stderr)
        return EXIT_BAD_IMAGE
    except ValueError as exc:  # pictures that cancel out
        print(f"explorer: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except CatalogError as exc:
        print(f"explorer: {readable(str(exc))}", file=sys.stderr)
        return EXIT_CACHE
    for folder in ranking.not_indexed:
        print(f"note: not indexed yet, not searched: {readable(str(folder))}", file=sys.stderr)
    for folder in ranking.offline:
        print(f"note: offline, searched from its index: {readable(str(folder))}", file=sys.stderr)
    if len(ranking.not_indexed) == len(folders):
        what = "explorer library index" if any(is_library_name(p) for p in args.places) else "explorer index FOLDER"
        print(f"explorer: nothing in {name} is indexed yet; run: {what}", file=sys.stderr)
        return EXIT_NO_FOLDER
    if not ranking.results and args.max_distance is not None:
        print(f"nothing in {readable(name)} is within {args.max_distance} of the query")
        return EXIT_OK
    if args.json:
        out = {
            "query": str(args.image),
            "in": [str(p) for p in args.places],
            "model": session.card.name,
            "dim": ranking.dim,
            "ranking": "binary" if args.binary else "float",
            "results": [
                result_json(r, ranking.dim, folder=str(folder), online=folder not in ranking.offline)
                for r, folder in zip(ranking.results, ranking.folder_of, strict=True)
            ],
        }
        print(json.dumps(out, indent=2))
        return EXIT_OK
    kind = f"binary {ranking.dim} bits" if args.binary else f"float {ranking.dim}-d"
    print(f"{len(ranking.results)} nearest to {readable(str(args.image))} in {readable(name)} ({kind}):")
    away = ["  (offline)" if folder in ranking.offline else "" for folder in ranking.folder_of]
    print_table(ranking, [readable(str(r.path)) + a for r, a in zip(ranking.results, away, strict=True)])
    return EXIT_OK
