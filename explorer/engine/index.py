"""The approximate cosine index over catalog embeddings (hnswlib); the exact searches are in exact_search.

The search layer keeps one index per (representation, dimension) and addresses images by their catalog
row id, never by a position: the catalog changes between sessions (folders added, files deleted), and a
persisted index must be patched by id rather than rebuilt from scratch. Both classes therefore speak in
caller-chosen int64 ids and keep the id bookkeeping themselves.

Float embeddings go to HNSW because an exact scan of 100k x 1024 float32 (400 MB) per query is far too slow
for interactive search, and HNSW gives recall@10 >= 0.95 in well under a millisecond. Binary codes stay
exact: a Hamming scan reads only D/8 bytes per image, so brute force remains fast enough and avoids an
approximation on top of the already lossy binarization.
"""

from __future__ import annotations

import contextlib
import json
import os
import zlib
from collections.abc import Callable
from pathlib import Path

import hnswlib
import numpy as np
import numpy.typing as npt

from explorer.engine.ids import as_ids as _as_ids
from trainer.atomic import fsync_file, make_ordinary, temp_path_beside

__all__ = ["FloatIndex", "IndexFileError"]

_FORMAT_VERSION = 1
_MIN_CAPACITY = 1024


class IndexFileError(OSError):
    """A persisted index is missing, truncated, corrupt or inconsistent: the caller should rebuild it.

    One exception type for every failure mode lets the search layer write a single `except` around `load`
    instead of guessing which of hnswlib's RuntimeErrors, numpy's ValueErrors or zipfile's errors means
    "the file is unusable".
    """


SYNC_CHUNK = 4096
"""Vectors added to a graph between two progress reports (and chances to cancel) while an index is built."""


def _fsync_dir(directory: Path) -> None:
    """Persist the rename itself; best effort, since Windows cannot open directories for fsync."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _temp_beside_ordinary(path: Path) -> Path:
    """A temp file beside `path` with ordinary permissions (set before hnswlib writes into it)."""
    tmp = temp_path_beside(path)
    make_ordinary(tmp)
    return tmp


def _file_crc32(path: Path) -> int:
    """CRC of the index file, so that a truncated or bit-flipped file is rejected before hnswlib parses it.

    hnswlib trusts its input: a damaged file can make it allocate garbage sizes or read out of bounds,
    so integrity must be checked on our side. CRC32 suffices: this guards against accidents, not attacks.
    """
    crc = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            crc = zlib.crc32(chunk, crc)
    return crc


def _meta_path(path: Path) -> Path:
    return path.with_name(path.name + ".meta.npz")


class FloatIndex:
    """Approximate cosine nearest neighbours with hnswlib (space='cosine'), for one dimension.

    hnswlib only knows labels; the live and deleted id sets are tracked here because hnswlib keeps deleted
    labels in its lookup table (so `get_ids_list` cannot tell live from dead) and because the catalog sync
    needs a cheap sorted view of what is indexed.
    """

    def __init__(
        self, dim: int, *, m: int = 16, ef_construction: int = 200, ef_search: int = 64, threads: int = 0
    ) -> None:
        if dim <= 0:
            raise ValueError(f"dim must be positive, got {dim}")
        self.dim = dim
        self.m = m
        self.ef_construction = ef_construction
        self.ef_search = ef_search
        self.threads = threads
        self.built_from = ""
        """The identity of the catalog whose rows the ids are (explorer.engine.catalog): saved and checked."""
        self._index = hnswlib.Index(space="cosine", dim=dim)
        # allow_replace_deleted lets new ids reuse the slots of deleted ones, so a catalog with churn does
        # not grow the graph (and the file) forever.
        self._index.init_index(
            max_elements=_MIN_CAPACITY, M=m, ef_construction=ef_construction, allow_replace_deleted=True
        )
        self._configure()
        self._live: npt.NDArray[np.int64] = np.empty(0, np.int64)
        # Labels still present in hnswlib but marked deleted (their slots are reusable).
        self._deleted: npt.NDArray[np.int64] = np.empty(0, np.int64)

    def _configure(self) -> None:
        self._index.set_ef(self.ef_search)
        if self.threads > 0:
            self._index.set_num_threads(self.threads)

    def __len__(self) -> int:
        return int(self._live.size)

    def __repr__(self) -> str:
        return f"FloatIndex(dim={self.dim}, live={len(self)}, m={self.m}, ef_search={self.ef_search})"

    @property
    def capacity(self) -> int:
        """Slots allocated in the hnswlib graph (live + deleted + free)."""
        return int(self._index.get_max_elements())

    @property
    def nbytes(self) -> int:
        """Bytes `save` would write for the graph: vectors plus links, a close proxy of its memory."""
        return int(self._index.index_file_size())

    def ids(self) -> npt.NDArray[np.int64]:
        return self._live.copy()

    def _vectors(self, vectors: npt.ArrayLike, n: int) -> npt.NDArray[np.float32]:
        v = np.ascontiguousarray(vectors, dtype=np.float32)
        if v.ndim == 1 and n == 1:
            v = v[None, :]
        if v.shape != (n, self.dim):
            raise ValueError(f"expected vectors of shape ({n}, {self.dim}), got {v.shape}")
        if not np.isfinite(v).all():
            raise ValueError("vectors contain NaN or infinity")
        return v

    def _ensure_capacity(self, extra_slots: int) -> None:
        needed = int(self._index.get_current_count()) + extra_slots
        cap = self.capacity
        if needed > cap:
            # Doubling keeps the amortised cost of resize_index (a full reallocation) linear.
            self._index.resize_index(max(needed, 2 * cap))

    def add(self, ids: npt.ArrayLike, vectors: npt.ArrayLike) -> None:
        """Insert or replace vectors; a previously removed id is revived with the new vector."""
        id_arr = _as_ids(ids)
        if id_arr.size == 0:
            return
        vecs = self._vectors(vectors, id_arr.size)
        num_threads = self.threads if self.threads > 0 else -1

        revive = np.isin(id_arr, self._deleted, assume_unique=True)
        existing = np.isin(id_arr, self._live, assume_unique=True) | revive
        # Order matters: revived labels must be unmarked before new ids may claim deleted slots, or a
        # new id could evict the very label we are about to revive.
        for label in id_arr[revive].tolist():
            self._index.unmark_deleted(label)
        if revive.any():
            self._deleted = np.setdiff1d(self._deleted, id_arr[revive], assume_unique=True)
        if existing.any():
            # With allow_replace_deleted, add_items on a live label updates its vector in place.
            self._index.add_items(vecs[existing], id_arr[existing], num_threads=num_threads)

        new = ~existing
        n_new = int(new.sum())
        if n_new:
            reusable = int(self._deleted.size)
            self._ensure_capacity(max(0, n_new - reusable))
            # replace_deleted=True is only safe for labels hnswlib has never seen: for a known label it
            # would create a duplicate entry in a vacant slot.
            self._index.add_items(vecs[new], id_arr[new], num_threads=num_threads, replace_deleted=True)
            if reusable:
                # hnswlib picks which deleted slots to recycle; re-read which deleted labels survived.
                still_there = np.asarray(self._index.get_ids_list(), dtype=np.int64)
                self._deleted = np.intersect1d(self._deleted, still_there, assume_unique=True)
        self._live = np.union1d(self._live, id_arr)

    def remove(self, ids: npt.ArrayLike) -> None:
        """Mark ids deleted; unknown ids are ignored so callers can remove without checking first."""
        id_arr = np.unique(np.asarray(ids, dtype=np.int64).reshape(-1))
        gone = np.intersect1d(id_arr, self._live, assume_unique=True)
        for label in gone.tolist():
            self._index.mark_deleted(label)
        self._live = np.setdiff1d(self._live, gone, assume_unique=True)
        self._deleted = np.union1d(self._deleted, gone)

    def search(self, queries: npt.ArrayLike, k: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """The k nearest live ids per query and their cosine distances (1 - cos), nearest first.

        Always returns 2-D arrays, (q, min(k, len)), even for a single 1-D query, so that callers have one
        shape to handle.
        """
        q = np.ascontiguousarray(queries, dtype=np.float32)
        if q.ndim == 1:
            q = q[None, :]
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise ValueError(f"expected queries of shape (q, {self.dim}), got {q.shape}")
        kk = min(int(k), len(self))
        if kk <= 0 or q.shape[0] == 0:
            shape = (q.shape[0], max(kk, 0))
            return np.empty(shape, np.int64), np.empty(shape, np.float32)
        # One query walks the graph on one thread (a team only adds its start-up to a walk of a millisecond, and
        # waits for cores that indexing keeps busy); batches use them all.
        num_threads = 1 if q.shape[0] == 1 else self.threads if self.threads > 0 else -1
        ef = max(self.ef_search, kk)
        while True:
            self._index.set_ef(ef)
            try:
                labels, distances = self._index.knn_query(q, k=kk, num_threads=num_threads)
                break
            except RuntimeError:
                # hnswlib refuses when the graph walk finds fewer than k live points, which happens when
                # many neighbours are deleted; a wider beam fixes it, and ef = all slots always does.
                total = int(self._index.get_current_count())
                if ef >= total:
                    raise
                ef = min(total, ef * 4)
            finally:
                self._index.set_ef(self.ef_search)
        return labels.astype(np.int64), np.asarray(distances, dtype=np.float32)

    def sync(
        self,
        ids: npt.ArrayLike,
        vectors_for: Callable[[npt.NDArray[np.int64]], npt.ArrayLike],
        progress: Callable[[int, int], None] | None = None,
        cancel: Callable[[], bool] = lambda: False,
    ) -> tuple[int, int] | None:
        """Make the live id set equal `ids`: add the missing ones (fetching their vectors through
        vectors_for(missing_ids)), remove the extra ones; return (added, removed), or None when `cancel` said
        stop between two chunks of SYNC_CHUNK vectors (`progress(added, to_add)` after each).

        This is how a persisted index is extended incrementally after the catalog changed: only the
        difference is touched, and vectors are fetched only for ids the index lacks.
        """
        wanted = np.unique(np.asarray(ids, dtype=np.int64).reshape(-1))
        missing = np.setdiff1d(wanted, self._live, assume_unique=True)
        extra = np.setdiff1d(self._live, wanted, assume_unique=True)
        if extra.size:
            self.remove(extra)
        for start in range(0, missing.size, SYNC_CHUNK):
            if cancel():
                return None
            chunk = missing[start : start + SYNC_CHUNK]
            self.add(chunk, vectors_for(chunk))
            if progress is not None:
                progress(start + chunk.size, int(missing.size))
        return int(missing.size), int(extra.size)

    def save(self, path: Path) -> None:
        """Write the index to `path` plus a `<name>.meta.npz` sidecar (ids, parameters, checksum).

        Both files are first written to temp files in the same directory, fsynced, and only then renamed
        over the old ones, so an interrupted save leaves the previous index usable. The sidecar records
        the index file's size and CRC, so a crash between the two renames is detected on load rather than
        pairing a new graph with old ids.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        index_tmp = _temp_beside_ordinary(path)
        meta_tmp: Path | None = None
        try:
            self._index.save_index(str(index_tmp))
            fsync_file(index_tmp)
            meta = {
                "format": _FORMAT_VERSION,
                "dim": self.dim,
                "m": self.m,
                "ef_construction": self.ef_construction,
                "ef_search": self.ef_search,
                "index_bytes": index_tmp.stat().st_size,
                "index_crc32": _file_crc32(index_tmp),
                "built_from": self.built_from,
            }
            meta_tmp = _temp_beside_ordinary(_meta_path(path))
            with open(meta_tmp, "wb") as f:
                np.savez(f, meta=np.array(json.dumps(meta)), live=self._live, deleted=self._deleted)
                f.flush()
                os.fsync(f.fileno())
            os.replace(index_tmp, path)
            os.replace(meta_tmp, _meta_path(path))
        except BaseException:
            for tmp in (index_tmp, meta_tmp):
                if tmp is not None:
                    with contextlib.suppress(OSError):
                        tmp.unlink()
            raise
        _fsync_dir(path.parent)

    @classmethod
    def load(cls, path: Path, *, threads: int = 0) -> FloatIndex:
        """Read an index written by `save`; raise IndexFileError if it cannot be trusted."""
        path = Path(path)
        meta_file = _meta_path(path)
        if not path.is_file() or not meta_file.is_file():
            raise IndexFileError(f"no saved index at {path} (or its sidecar {meta_file.name} is missing)")
        try:
            with np.load(meta_file, allow_pickle=False) as npz:
                meta = json.loads(str(npz["meta"]))
                live = np.asarray(npz["live"], dtype=np.int64)
                deleted = np.asarray(npz["deleted"], dtype=np.int64)
            if meta["format"] != _FORMAT_VERSION:
                raise IndexFileError(f"{meta_file} has format {meta['format']}, expected {_FORMAT_VERSION}")
            dim, m = int(meta["dim"]), int(meta["m"])
            ef_construction, ef_search = int(meta["ef_construction"]), int(meta["ef_search"])
            expected_bytes, expected_crc = int(meta["index_bytes"]), int(meta["index_crc32"])
        except IndexFileError:
            raise
        except Exception as e:  # zip, JSON, key and dtype errors all mean the same thing here
            raise IndexFileError(f"corrupt index sidecar {meta_file}: {e}") from e
        if path.stat().st_size != expected_bytes or _file_crc32(path) != expected_crc:
            raise IndexFileError(f"index file {path} does not match its sidecar (truncated or corrupt)")

        obj = cls(dim, m=m, ef_construction=ef_construction, ef_search=ef_search, threads=threads)
        index = hnswlib.Index(space="cosine", dim=dim)
        try:
            index.load_index(str(path), allow_replace_deleted=True)
        except (RuntimeError, ValueError, MemoryError) as e:
            raise IndexFileError(f"hnswlib could not read {path}: {e}") from e
        if int(index.get_current_count()) != live.size + deleted.size:
            count = index.get_current_count()
            raise IndexFileError(f"{path} holds {count} elements, its sidecar {live.size + deleted.size}")
        obj._index = index
        obj._configure()
        obj._live = live
        obj._deleted = deleted
        obj.built_from = str(meta.get("built_from", ""))
        return obj
