"""A folder found again after a rename or a move: identified by what it holds, not by its path.

Catalogs are kept per folder path (explorer.engine.cache), so renaming `Photos/2019` to `Photos/2019 Italy`, or
moving it to another drive, used to mean embedding every photo again. Before a folder without a catalog is indexed,
the catalogs of the same model are compared with it: a sample of each catalog's files (relative path, size and
modification time, the same stamp the indexer trusts to skip a file) is looked up in the folder, and a catalog whose
sample is nearly all there is the folder's own. Its content is copied (SQLite's backup API: a consistent copy even
while another process reads it) to the folder's catalog place, and indexing then only embeds what changed.

It is copied, never moved: the old path may be a drive that is only away (then it comes back to its index), or a copy
the user keeps. Nothing is trusted blindly: the indexer still compares every file's stamp, so a wrong match costs
nothing but the copy.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from explorer.engine.cache import catalog_dir
from explorer.engine.catalog import Catalog, loaded_name, read_only_connection
from explorer.engine.thumbnail_store import adopt_store
from explorer.paths import cache_root
from trainer.atomic import temp_path_beside

SAMPLE = 400  # files looked up per candidate catalog: enough to tell, a few milliseconds to stat
MATCH_SHARE = 0.9  # of the sample found with the same size and time: the folder is that catalog's folder
MIN_FILES = 3  # fewer than this says nothing about identity


@dataclass(frozen=True)
class FoundCatalog:
    """A catalog of another path whose photos are in the folder now."""

    catalog: Path
    old_folder: Path
    matched: int  # sampled files found with the same stamp
    sampled: int

    @property
    def old_folder_online(self) -> bool:
        return self.old_folder.is_dir()


def _sample(path: Path, n: int) -> list[tuple[str, int, int]]:
    db = read_only_connection(path)
    try:
        # every k-th row: spread over the whole folder, and the same sample every time (no RANDOM())
        count = int(db.execute("SELECT COUNT(*) FROM images").fetchone()[0])
        step = max(1, count // n)
        rows = db.execute("SELECT relpath, size, mtime_ns FROM images WHERE (id % ?) = 0 LIMIT ?", (step, n)).fetchall()
        if len(rows) < min(n, count):  # ids with gaps: fall back to the first n
            rows = db.execute("SELECT relpath, size, mtime_ns FROM images LIMIT ?", (n,)).fetchall()
        return [(str(r), int(s), int(m)) for r, s, m in rows]
    finally:
        db.close()


def _matches(folder: Path, sample: list[tuple[str, int, int]]) -> int:
    found = 0
    for relpath, size, mtime_ns in sample:
        try:
            st = os.stat(folder / loaded_name(relpath))
        except (OSError, ValueError):
            continue
        found += (st.st_size, st.st_mtime_ns) == (size, mtime_ns)
    return found


def find_moved_catalog(folder: Path, fingerprint: str) -> FoundCatalog | None:
    """The catalog (of this model, another path's) whose photos `folder` holds. The caller asks only for a folder
    that has not been indexed yet (RetrievalSession.index)."""
    folder = Path(folder).resolve()
    own = catalog_dir(folder, fingerprint) / "catalog.sqlite"
    best: FoundCatalog | None = None
    for candidate in sorted((cache_root() / "catalogs").glob(f"*/{fingerprint}/catalog.sqlite")):
        old = Catalog.peek_meta(candidate).get("folder")
        if not old or Path(old) == folder or candidate == own:
            continue
        try:
            sample = _sample(candidate, SAMPLE)
        except sqlite3.Error:
            continue  # damaged or unreadable now: not a match, and not touched
        if len(sample) < MIN_FILES:
            continue
        matched = _matches(folder, sample)
        better = best is None or matched / len(sample) > best.matched / best.sampled
        if matched >= MATCH_SHARE * len(sample) and better:
            best = FoundCatalog(candidate, Path(old), matched, len(sample))
    return best


def adopt_catalog(found: FoundCatalog, folder: Path, fingerprint: str) -> Path:
    """Copy the found catalog to `folder`'s place (consistent, atomic), over the empty catalog a look at the folder
    may have left there (closed by the caller); returns the new catalog's path."""
    target = catalog_dir(Path(folder).resolve(), fingerprint) / "catalog.sqlite"
    tmp = temp_path_beside(target)
    try:
        source = read_only_connection(found.catalog)
        copy = sqlite3.connect(str(tmp))
        try:
            source.backup(copy)
            copy.execute("PRAGMA journal_mode=DELETE")  # one self-contained file to rename
        finally:
            copy.close()
            source.close()
        for leftover in (target.with_name(target.name + "-wal"), target.with_name(target.name + "-shm")):
            leftover.unlink(missing_ok=True)  # the empty catalog's journal must not be replayed into the copy
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    adopt_store(found.catalog, folder)  # the thumbnails made when it was indexed there
    return target
