"""The catalog of embeddings of one folder under one model, in SQLite.

SQLite gives the two properties the catalog needs without hand-written file formats: each batch is one
transaction (a process killed mid-run loses at most the batch in flight, and the next run resumes from a
consistent state), and row ids are never reused (AUTOINCREMENT), so persisted indexes keyed by row id can be
brought up to date by adding and removing ids.

A file is recognised as unchanged by (relative path, size, mtime_ns): an unchanged file is never embedded
twice; a changed one gets a new row id; a file that could not be read is remembered as skipped with its
reason and retried only when it changes.

A cache that cannot be written (a read-only drive, a full disk) still answers: the catalog then opens read-only,
`read_only_reason` says why, and every write raises `CatalogReadOnly` with that reason instead of a traceback.
"""

from __future__ import annotations

import contextlib
import errno
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

from explorer.engine.vector_store import read_store, store_path, write_store

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
INSERT OR IGNORE INTO meta VALUES ('generation', '0');
CREATE TRIGGER IF NOT EXISTS images_inserted AFTER INSERT ON images BEGIN
    UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation';
END;
CREATE TRIGGER IF NOT EXISTS images_deleted AFTER DELETE ON images BEGIN
    UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation';
END;
CREATE TRIGGER IF NOT EXISTS images_updated AFTER UPDATE ON images BEGIN
    UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation';
END;
"""
"""The triggers raise the catalog's `generation` whenever a row of `images` changes, whoever changes it (a
skipped file recorded again changes nothing): the contiguous copy of the vectors records the generation it was
written at (explorer.engine.vector_store) and is stale as soon as it moves."""


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


class CatalogReadOnly(CatalogError):
    """The catalog can be read but nothing can be written to it now (read-only or full cache)."""


WHAT_TO_DO = "free some space on it, or set RETRIEVAL_EXPLORER_CACHE to a folder that can be written"
_WRITE_FAILURES = ("readonly", "read-only", "unable to open database file")
_WRITE_ERRNOS = {errno.EROFS: "is read-only", errno.EACCES: "cannot be written (permission denied)",
                 errno.EPERM: "cannot be written (permission denied)", errno.ENOSPC: "is full"}  # fmt: skip


def write_failure(exc: BaseException) -> str | None:
    """Why the cache could not be written, when `exc` says it could not ("is read-only", "is full"); else None."""
    if isinstance(exc, OSError) and exc.errno in _WRITE_ERRNOS:
        return _WRITE_ERRNOS[exc.errno]
    if isinstance(exc, sqlite3.OperationalError):
        text = str(exc).lower()
        if "full" in text:
            return "is full"
        if "disk i/o error" in text:
            return "cannot be written (disk I/O error: is the drive full or unplugged?)"
        if any(s in text for s in _WRITE_FAILURES):
            return "is read-only"
    return None


def read_only_connection(path: Path, immutable: bool = False) -> sqlite3.Connection:
    """A connection that never writes. A WAL catalog on a read-only drive cannot make its shared-memory file, so it
    is opened `immutable` there, which is exact while its write-ahead log is empty (it is, after a clean close)."""
    mode = "immutable=1" if immutable else "mode=ro"
    return sqlite3.connect(
        f"file:{Path(path).resolve()}?{mode}", uri=True, check_same_thread=False, isolation_level=None
    )


def read_only_modes(path: Path) -> list[bool]:
    """The `immutable` flags to try, in order, for a read-only look: plain read-only first; immutable next only
    while the write-ahead log is empty, since an immutable open would not see what the log holds."""
    wal = Path(f"{path}-wal")
    return [False] if wal.exists() and wal.stat().st_size > 0 else [False, True]


def _peek(path: Path, sql: str) -> list[tuple[str, str]]:
    """Rows of a read-only query (`read_only_modes`: immutable when the plain read-only open fails)."""
    modes = read_only_modes(path)
    for i, immutable in enumerate(modes):
        try:
            db = read_only_connection(path, immutable)
            try:
                return list(db.execute(sql).fetchall())
            finally:
                db.close()
        except sqlite3.OperationalError:
            if i + 1 == len(modes):
                raise
    raise AssertionError("unreachable")  # pragma: no cover


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
        self._lock = threading.Lock()
        self.read_only_reason: str | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = self._connect(writable=True)
            stored = self.meta()
            self._check_dim(stored)
            # Row ids restart when a catalog is recreated: the identity is what ties an index file to this one.
            self.identity = stored.get("identity") or uuid.uuid4().hex
            self.set_meta({"dim": str(dim), "identity": self.identity, **(meta or {})})
        except (OSError, sqlite3.OperationalError, CatalogReadOnly) as exc:
            cause = exc.__cause__ if isinstance(exc, CatalogReadOnly) else exc
            why = write_failure(cause) if cause is not None else None
            if why is None and isinstance(exc, sqlite3.OperationalError):  # locked, say: not damage, left alone
                raise CatalogError(f"catalog {self.path} cannot be opened now: {exc}") from exc
            if why is None:
                raise
            with contextlib.suppress(Exception):
                self._db.close()
            where = f"the cache folder {self.path.parent} {why}"
            if not self.path.exists():
                raise CatalogReadOnly(f"{where}: nothing can be indexed; {WHAT_TO_DO}") from exc
            self._db = self._connect(writable=False)
            self.read_only_reason = where
            stored = self.meta()
            self._check_dim(stored)
            self.identity = stored.get("identity", "")

    def _connect(self, writable: bool) -> sqlite3.Connection:
        """Open the file and check its integrity. Only what SQLite calls damage (not a database, malformed, a
        failed integrity check) raises `CatalogDamaged`, which has the catalog set aside; a drive that is full,
        read-only or failing raises its OperationalError (writable) or `CatalogReadOnly` (read-only), and the
        catalog stays where it is."""
        for immutable in [False] if writable else read_only_modes(self.path):
            try:
                db = (
                    sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
                    if writable
                    else read_only_connection(self.path, immutable)
                )
            except sqlite3.OperationalError as exc:
                if writable:
                    raise
                failure: sqlite3.OperationalError = exc
                continue
            try:
                check = db.execute("PRAGMA quick_check").fetchone()
                if check is None or check[0] != "ok":
                    raise sqlite3.DatabaseError(f"integrity check: {check[0] if check else 'no answer'}")
                if writable:
                    db.execute("PRAGMA journal_mode=WAL")
                    db.execute("PRAGMA synchronous=NORMAL")
                    db.executescript(SCHEMA)
                return db
            except sqlite3.OperationalError as exc:
                db.close()
                if writable:
                    raise
                failure = exc
            except sqlite3.DatabaseError as exc:
                db.close()
                raise CatalogDamaged(f"catalog {self.path} is damaged: {exc}") from None
        raise CatalogReadOnly(
            f"the catalog {self.path} cannot be read now ({failure}); is its drive full or unplugged?"
        )

    def _check_dim(self, stored: dict[str, str]) -> None:
        if "dim" in stored and int(stored["dim"]) != self.dim:
            raise CatalogError(f"catalog {self.path} holds {stored['dim']}-d embeddings, the model gives {self.dim}")

    @staticmethod
    def is_damaged(path: Path) -> bool:
        """True when a catalog file exists but is not a database or fails its integrity check (read-only look; a
        drive that cannot be read now is not damage)."""
        if not Path(path).exists():
            return False
        try:
            check = _peek(path, "PRAGMA quick_check")
            return not check or check[0][0] != "ok"
        except sqlite3.OperationalError:
            return False
        except sqlite3.Error:
            return True

    @staticmethod
    def peek_meta(path: Path) -> dict[str, str]:
        """Metadata of a catalog file without creating or changing it (empty if absent or unreadable)."""
        if not Path(path).exists():
            return {}
        try:
            return dict(_peek(path, "SELECT key, value FROM meta"))
        except sqlite3.Error:
            return {}

    @staticmethod
    def peek_count(path: Path) -> int:
        """How many images a catalog file holds, without creating or changing it (0 if absent or unreadable)."""
        if not Path(path).exists():
            return 0
        try:
            return int(_peek(path, "SELECT COUNT(*) FROM images")[0][0])
        except sqlite3.Error:
            return 0

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

    def stamp_of(self, relpath: str) -> FileStamp | None:
        """The stamp of one embedded file, or None."""
        with self._lock:
            row = self._db.execute(
                "SELECT size, mtime_ns FROM images WHERE relpath = ?", (stored_name(relpath),)
            ).fetchone()
        return FileStamp(relpath, row[0], row[1]) if row else None

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
            # rowcount, not total_changes: the generation triggers' own updates are not files forgotten
            images = self._db.executemany("DELETE FROM images WHERE relpath = ?", rel).rowcount
            return images + self._db.executemany("DELETE FROM skipped WHERE relpath = ?", rel).rowcount

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
        """Every live embedding in id order: from the contiguous copy (explorer.engine.vector_store, memory-mapped)
        when it is the copy of what this catalog holds now, else from SQLite, and then the copy is written again
        (best effort: SQLite stays the truth)."""
        with self._lock:
            self._db.execute("BEGIN")  # one consistent read: the generation, the ids and (if needed) the vectors
            try:
                row = self._db.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
                generation = int(row[0]) if row else 0
                listed = self._db.execute("SELECT id, relpath FROM images ORDER BY id").fetchall()
                ids = np.fromiter((r[0] for r in listed), dtype=np.int64, count=len(listed))
                relpaths = [loaded_name(r[1]) for r in listed]
                path = store_path(self.path)
                vectors = read_store(path, ids, self.dim, self.identity, generation)
                if vectors is not None:
                    return CatalogSnapshot(ids, relpaths, vectors)
                emb = self._read_vectors(len(ids))
            finally:
                self._db.execute("COMMIT")
        finite = np.isfinite(emb).all(axis=1)  # rows written by an older version or altered on disk
        if not finite.all():
            keep = np.flatnonzero(finite)
            return CatalogSnapshot(ids[keep], [relpaths[j] for j in keep], emb[keep])
        if self.read_only_reason is None:
            with contextlib.suppress(OSError):  # a full or failing disk: the next open reads SQLite again
                write_store(path, ids, emb, self.identity, generation)
        return CatalogSnapshot(ids, relpaths, emb)

    def _read_vectors(self, count: int) -> npt.NDArray[np.float32]:
        """The embeddings in id order, read in chunks into one array (fetching every row first held each twice)."""
        emb = np.empty((count, self.dim), np.float32)
        cursor = self._db.execute("SELECT embedding FROM images ORDER BY id")
        i = 0
        while rows := cursor.fetchmany(4096):
            n = len(rows)
            emb[i : i + n] = np.frombuffer(b"".join(r[0] for r in rows), dtype=np.float32).reshape(n, self.dim)
            i += n
        return emb

    def _transaction(self) -> _Transaction:
        if self.read_only_reason is not None:
            raise CatalogReadOnly(f"{self.read_only_reason}: nothing new can be saved; {WHAT_TO_DO}")
        return _Transaction(self._db)


def _refused(exc: BaseException) -> CatalogReadOnly | None:
    """The sentence for a write the cache refused (read-only, full), or None for any other failure."""
    why = write_failure(exc)
    return None if why is None else CatalogReadOnly(f"the cache folder {why}: nothing new can be saved; {WHAT_TO_DO}")


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any error (the connection runs in autocommit mode)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            refused = _refused(exc)
            if refused is None:
                raise
            raise refused from exc

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        if exc_type is None:
            try:
                self._db.execute("COMMIT")
                return
            except sqlite3.OperationalError as failed:
                exc = failed
        with contextlib.suppress(sqlite3.Error):
            self._db.execute("ROLLBACK")
        refused = _refused(exc) if exc is not None else None
        if refused is not None:  # a full disk mid-run: what was committed before stays, the run ends with the reason
            raise refused from exc
        if exc_type is None and exc is not None:  # COMMIT itself failed for another reason
            raise exc
