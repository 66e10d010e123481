"""The catalog of embeddings of one folder under one model, in SQLite.

SQLite gives the two properties the catalog needs without hand-written file formats: each batch is one
transaction (a process killed mid-run loses at most the batch in flight, and the next run resumes from a
consistent state), and row ids are never reused (AUTOINCREMENT), so persisted indexes keyed by row id can be
brought up to date by adding and removing ids.

A file is recognised as unchanged by (relative path, size, mtime_ns): an unchanged file is never embedded
twice; a changed one gets a new row id; a file that could not be read is remembered as skipped with its
reason and retried only when it changes.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS images (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    relpath TEXT NOT NULL UNIQUE,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    embedding BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS skipped (
    relpath TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    reason TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class FileStamp:
    relpath: str
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class SkippedFile:
    relpath: str
    reason: str


@dataclass
class CatalogSnapshot:
    """All live embeddings in id order: what the indexes and exact search are built from."""

    ids: npt.NDArray[np.int64]
    relpaths: list[str]
    embeddings: npt.NDArray[np.float32]


class CatalogError(RuntimeError):
    """The catalog cannot be opened or does not match the model it is asked for."""


class CatalogDamaged(CatalogError):
    """The catalog file fails SQLite's integrity check (truncated, overwritten): set it aside and rebuild."""


def set_aside(path: Path) -> Path:
    """Move a damaged catalog (and its WAL files) out of the way, keeping it for inspection; returns where."""
    target = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
    for suffix in ("", "-wal", "-shm"):
        part = path.with_name(path.name + suffix)
        if part.exists():
            os.replace(part, target.with_name(target.name + suffix))
    return target


_RAW = "\x00"  # no file name can hold a NUL, so no stored name that is a plain name starts with one


def stored_name(relpath: str) -> str:
    r"""A relative path as SQLite can store it, losslessly.

    Names that are not valid UTF-8 (older cameras, other systems: `bad\xff.jpg`) reach Python with surrogate
    escapes, which SQLite's text cannot encode; they are stored as NUL + the hex of their bytes instead. Every
    other name is stored as it is, so catalogs written before this stay valid.

    >>> stored_name("a/b.jpg"), stored_name("caf\udce9.jpg")
    ('a/b.jpg', '\x00636166e92e6a7067')
    >>> loaded_name(stored_name("caf\udce9.jpg")) == "caf\udce9.jpg"
    True
    """
    try:
        relpath.encode("utf-8")
    except UnicodeEncodeError:
        return _RAW + relpath.encode("utf-8", "surrogateescape").hex()
    return relpath


def loaded_name(stored: str) -> str:
    """The inverse of `stored_name`."""
    if stored.startswith(_RAW):
        return bytes.fromhex(stored[1:]).decode("utf-8", "surrogateescape")
    return stored


def readable(text: str) -> str:
    """A name or message with undecodable bytes shown as U+FFFD: what people see and what can be printed."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


class Catalog:
    def __init__(self, path: Path, dim: int, meta: dict[str, str] | None = None) -> None:
        self.path = Path(path)
        self.dim = dim
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
            check = self._db.execute("PRAGMA quick_check").fetchone()
            if check is None or check[0] != "ok":
                raise sqlite3.DatabaseError(f"integrity check: {check[0] if check else 'no answer'}")
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)
        except sqlite3.DatabaseError as exc:
            with contextlib.suppress(Exception):
                self._db.close()
            raise CatalogDamaged(f"catalog {self.path} is damaged: {exc}") from None
        stored = self.meta()
        if "dim" in stored and int(stored["dim"]) != dim:
            raise CatalogError(f"catalog {self.path} holds {stored['dim']}-d embeddings, the model gives {dim}")
        # Row ids restart when a catalog is recreated: the identity is what ties an index file to this one.
        self.identity = stored.get("identity") or uuid.uuid4().hex
        self.set_meta({"dim": str(dim), "identity": self.identity, **(meta or {})})

    @staticmethod
    def is_damaged(path: Path) -> bool:
        """True when a catalog file exists but fails to open or its integrity check (read-only look)."""
        if not Path(path).exists():
            return False
        try:
            db = sqlite3.connect(f"file:{Path(path).resolve()}?mode=ro", uri=True)
            try:
                check = db.execute("PRAGMA quick_check").fetchone()
                return check is None or check[0] != "ok"
            finally:
                db.close()
        except sqlite3.Error:
            return True

    @staticmethod
    def peek_meta(path: Path) -> dict[str, str]:
        """Metadata of a catalog file without creating or changing it (empty if absent or unreadable)."""
        if not Path(path).exists():
            return {}
        try:
            db = sqlite3.connect(f"file:{Path(path).resolve()}?mode=ro", uri=True)
            try:
                return dict(db.execute("SELECT key, value FROM meta").fetchall())
            finally:
                db.close()
        except sqlite3.Error:
            return {}

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- metadata ---------------------------------------------------------------------------------------
    def meta(self) -> dict[str, str]:
        with self._lock:
            return dict(self._db.execute("SELECT key, value FROM meta").fetchall())

    def set_meta(self, values: dict[str, str]) -> None:
        with self._lock, self._transaction():
            self._db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", list(values.items()))

    # -- what is known ----------------------------------------------------------------------------------
    def stamps(self) -> dict[str, FileStamp]:
        """Stamps of embedded files."""
        with self._lock:
            rows = self._db.execute("SELECT relpath, size, mtime_ns FROM images").fetchall()
        return {loaded_name(r[0]): FileStamp(loaded_name(r[0]), r[1], r[2]) for r in rows}

    def skipped_stamps(self) -> dict[str, FileStamp]:
        with self._lock:
            rows = self._db.execute("SELECT relpath, size, mtime_ns FROM skipped").fetchall()
        return {loaded_name(r[0]): FileStamp(loaded_name(r[0]), r[1], r[2]) for r in rows}

    def skipped(self) -> list[SkippedFile]:
        with self._lock:
            rows = self._db.execute("SELECT relpath, reason FROM skipped ORDER BY relpath").fetchall()
        return [SkippedFile(loaded_name(r[0]), r[1]) for r in rows]

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM images").fetchone()[0])

    # -- changes ----------------------------------------------------------------------------------------
    def remove(self, relpaths: Iterable[str]) -> int:
        """Forget files (embedded or skipped) that are gone from the folder."""
        rel = [(stored_name(r),) for r in relpaths]
        with self._lock, self._transaction():
            before = self._db.total_changes
            self._db.executemany("DELETE FROM images WHERE relpath = ?", rel)
            self._db.executemany("DELETE FROM skipped WHERE relpath = ?", rel)
            return self._db.total_changes - before

    def commit_batch(
        self,
        embedded: Sequence[tuple[FileStamp, npt.NDArray[np.float32]]],
        skipped: Sequence[tuple[FileStamp, str]],
    ) -> None:
        """Record one batch atomically: new or changed files get fresh row ids, failures their reason."""
        rows = []
        skipped = list(skipped)
        for stamp, vector in embedded:
            v = np.ascontiguousarray(vector, dtype=np.float32)
            if v.shape != (self.dim,):
                raise CatalogError(f"embedding of {stamp.relpath} has shape {v.shape}, expected ({self.dim},)")
            if not np.isfinite(v).all():  # never stored, so never searched: NaN distances rank at random
                skipped.append((stamp, "the model gave an embedding that is not a number (is the model damaged?)"))
                continue
            rows.append((stored_name(stamp.relpath), stamp.size, stamp.mtime_ns, v.tobytes()))
        with self._lock, self._transaction():
            for stamp, _ in embedded:  # a non-finite one is replaced by its skip record below
                self._db.execute("DELETE FROM images WHERE relpath = ?", (stored_name(stamp.relpath),))
                self._db.execute("DELETE FROM skipped WHERE relpath = ?", (stored_name(stamp.relpath),))
            self._db.executemany("INSERT INTO images (relpath, size, mtime_ns, embedding) VALUES (?, ?, ?, ?)", rows)
            for stamp, reason in skipped:
                name = stored_name(stamp.relpath)
                self._db.execute("DELETE FROM images WHERE relpath = ?", (name,))
                self._db.execute(
                    "INSERT OR REPLACE INTO skipped VALUES (?, ?, ?, ?)",
                    (name, stamp.size, stamp.mtime_ns, readable(reason)),
                )
            self._db.execute("INSERT OR REPLACE INTO meta VALUES ('updated', ?)", (time.strftime("%Y-%m-%d %H:%M:%S"),))

    # -- reading ----------------------------------------------------------------------------------------
    def snapshot(self) -> CatalogSnapshot:
        with self._lock:
            rows = self._db.execute("SELECT id, relpath, embedding FROM images ORDER BY id").fetchall()
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        emb = np.empty((len(rows), self.dim), np.float32)
        for i, r in enumerate(rows):
            emb[i] = np.frombuffer(r[2], dtype=np.float32)
        finite = np.isfinite(emb).all(axis=1)  # rows written by an older version or altered on disk
        if not finite.all():
            keep = np.flatnonzero(finite)
            return CatalogSnapshot(ids[keep], [loaded_name(rows[i][1]) for i in keep], emb[keep])
        return CatalogSnapshot(ids, [loaded_name(r[1]) for r in rows], emb)

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any error (the connection runs in autocommit mode)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._db.execute("COMMIT" if exc_type is None else "ROLLBACK")
