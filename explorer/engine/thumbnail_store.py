"""Thumbnails made while a folder is indexed, so that showing results never decodes a camera photo a second time.

Indexing decodes every photo anyway (JPEGs at a reduced DCT scale whose shorter side is still at least the model's
256 px); a 160 px JPEG made from that picture costs about a millisecond, where decoding a 12 MP photo again for the
results grid costs 30 ms of a core (60 ms at 24 MP), on the thread the model needs. The store is one SQLite file per
folder beside its catalogs (thumbnails do not depend on the model), keyed by the file's relative path and stamped
with its size and mtime: a thumbnail is served only for the very file it was made from, and a changed photo gets a
new one at its next indexing. It is a cache: a damaged or unwritable store is ignored (the views decode the file as
before) and never stops indexing.
"""

from __future__ import annotations

import contextlib
import io
import os
import sqlite3
import threading
from collections.abc import Iterable
from pathlib import Path

from PIL import Image

from explorer.engine.cache import folder_key
from explorer.engine.catalog import read_only_connection, stored_name
from explorer.paths import cache_root
from trainer.atomic import temp_path_beside

THUMBNAIL_SIZE = 160
"""Longer side in pixels: the results grid (128 px) and the dimensions strip (64 px) are served from it; larger
views (the query's 480 px picture) decode the file."""
QUALITY = 85

SCHEMA = """
CREATE TABLE IF NOT EXISTS thumbnails (
    relpath TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    jpeg BLOB NOT NULL
);
"""


def thumbnail_jpeg(picture: Image.Image, size: int = THUMBNAIL_SIZE) -> bytes:
    """A JPEG of `picture` (upright RGB, as decoded for the model) with its longer side at most `size` pixels.

    >>> data = thumbnail_jpeg(Image.new("RGB", (500, 375), "red"))
    >>> Image.open(io.BytesIO(data)).size
    (160, 120)
    """
    small = picture.copy()
    small.thumbnail((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
    out = io.BytesIO()
    small.save(out, "JPEG", quality=QUALITY)
    return out.getvalue()


def store_path(folder: Path) -> Path:
    return cache_root() / "catalogs" / folder_key(folder) / "thumbnails.sqlite"


def adopt_store(old_catalog: Path, folder: Path) -> bool:
    """Copy the thumbnails of a folder found again at another path (explorer.engine.relocate: its catalog at
    `old_catalog` was adopted) to `folder`'s store, unless it has one; its relative paths and stamps still hold.
    Best effort: a cache that cannot be copied is made again as the folder is indexed. Whether it was copied."""
    source, target = old_catalog.parent.parent / "thumbnails.sqlite", store_path(Path(folder).resolve())
    if not source.is_file() or target.exists():
        return False
    try:
        tmp = temp_path_beside(target)
    except OSError:  # the cache folder cannot be written now
        return False
    try:
        with contextlib.closing(read_only_connection(source)) as old, contextlib.closing(sqlite3.connect(tmp)) as copy:
            old.backup(copy)
            copy.execute("PRAGMA journal_mode=DELETE")
        os.replace(tmp, target)
    except (OSError, sqlite3.Error):
        with contextlib.suppress(OSError):
            tmp.unlink()
        return False
    return True


class ThumbnailStore:
    """The thumbnails of one folder's files; safe to read from several threads while the indexer writes."""

    def __init__(self, folder: Path, path: Path | None = None, size: int = THUMBNAIL_SIZE) -> None:
        self.folder = Path(folder)
        self.path = path or store_path(self.folder)
        self.size = size
        self._local = threading.local()
        self.broken: str | None = None  # why the store is not used (the views then decode files as before)

    def _connection(self) -> sqlite3.Connection | None:
        if self.broken is not None:
            return None
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                connection = sqlite3.connect(self.path, timeout=5.0)
                connection.execute("PRAGMA journal_mode=WAL")
                connection.executescript(SCHEMA)
            except (OSError, sqlite3.Error) as exc:
                self.broken = f"thumbnail store {self.path} cannot be used: {exc}"
                return None
            self._local.connection = connection
        return connection

    def put_many(self, items: Iterable[tuple[str, int, int, bytes]]) -> None:
        """(relative path, size, mtime_ns, JPEG) of freshly indexed files, in one transaction."""
        connection = self._connection()
        if connection is None:
            return
        try:
            with connection:
                connection.executemany(
                    "INSERT OR REPLACE INTO thumbnails VALUES (?, ?, ?, ?)",
                    [(stored_name(rel), size, mtime, jpeg) for rel, size, mtime, jpeg in items],
                )
        except sqlite3.Error as exc:  # a full disk, a damaged file: the views decode files instead
            self.broken = f"thumbnail store {self.path} cannot be written: {exc}"

    def get(self, relpath: str, size: int, mtime_ns: int) -> bytes | None:
        """The stored JPEG of this file, if it was made from the file as it is now (same size and mtime)."""
        connection = self._connection()
        if connection is None:
            return None
        try:
            row = connection.execute(
                "SELECT jpeg FROM thumbnails WHERE relpath = ? AND size = ? AND mtime_ns = ?",
                (stored_name(relpath), size, mtime_ns),
            ).fetchone()
        except sqlite3.Error:
            return None
        return bytes(row[0]) if row else None

    def lookup(self, path: Path) -> bytes | None:
        """The stored JPEG of a file of this folder given its absolute path (stat'ed now), or None."""
        try:
            relpath = Path(path).relative_to(self.folder).as_posix()
            st = Path(path).stat()
        except (ValueError, OSError):
            return None
        return self.get(relpath, st.st_size, st.st_mtime_ns)

    def remove(self, relpaths: Iterable[str]) -> None:
        connection = self._connection()
        if connection is None:
            return
        with contextlib.suppress(sqlite3.Error), connection:
            connection.executemany("DELETE FROM thumbnails WHERE relpath = ?", [(stored_name(r),) for r in relpaths])

    def count(self) -> int:
        connection = self._connection()
        if connection is None:
            return 0
        try:
            return int(connection.execute("SELECT COUNT(*) FROM thumbnails").fetchone()[0])
        except sqlite3.Error:
            return 0
