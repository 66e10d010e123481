"""Exact searches: Hamming k-NN over binary codes (faiss's scan) and cosine k-NN over float vectors (numpy).

Binary codes stay exact: a Hamming scan reads only D/8 bytes per image, so brute force remains fast enough and
avoids an approximation on top of the already lossy binarization. The exact cosine search is the reference the
approximate index (explorer.engine.index) is measured against, and answers small collections directly.
"""

from __future__ import annotations

import faiss
import numpy as np
import numpy.typing as npt

from explorer.engine.ids import as_ids as _as_ids

__all__ = ["BinaryIndex", "exact_cosine_search"]

# Bound the (queries x vectors) similarity block of the exact search to ~64 MB of float32.
_EXACT_BLOCK_ELEMENTS = 16_000_000


class BinaryIndex:
    """Exact Hamming k-NN over packed codes, for one number of bits.

    Codes are kept in a numpy array sorted by id and scanned with faiss's Hamming heap kernel (the one
    behind IndexBinaryFlat) via `faiss.knn_hamming`. Skipping IndexBinaryFlat itself avoids holding a
    second copy of every code and a rebuild after each removal; the scan is identical.
    """

    def __init__(self, nbits: int) -> None:
        if nbits <= 0 or nbits % 8:
            raise ValueError(f"nbits must be a positive multiple of 8, got {nbits}")
        self.nbits = nbits
        self._ids: npt.NDArray[np.int64] = np.empty(0, np.int64)
        self._codes: npt.NDArray[np.uint8] = np.empty((0, nbits // 8), np.uint8)

    def __len__(self) -> int:
        return int(self._ids.size)

    def __repr__(self) -> str:
        return f"BinaryIndex(nbits={self.nbits}, live={len(self)})"

    def ids(self) -> npt.NDArray[np.int64]:
        return self._ids.copy()

    @property
    def nbytes(self) -> int:
        """Memory held by the codes and ids."""
        return int(self._codes.nbytes + self._ids.nbytes)

    def add(self, ids: npt.ArrayLike, codes: npt.ArrayLike) -> None:
        """Insert codes; an id already present gets its code replaced."""
        id_arr = _as_ids(ids)
        c = np.asarray(codes)
        if c.dtype != np.uint8:
            raise TypeError(f"codes must be packed uint8 (see trainer.binary.binarize), got {c.dtype}")
        if c.shape != (id_arr.size, self.nbits // 8):
            raise ValueError(f"expected codes of shape ({id_arr.size}, {self.nbits // 8}), got {c.shape}")
        if id_arr.size == 0:
            return
        keep = ~np.isin(self._ids, id_arr, assume_unique=True)
        all_ids = np.concatenate([self._ids[keep], id_arr])
        all_codes = np.concatenate([self._codes[keep], c])
        # Sorted by id: faiss's heap keeps the first-scanned of equal distances, so storage order is what
        # breaks ties, and id order makes results independent of insertion history.
        order = np.argsort(all_ids, kind="stable")
        self._ids = all_ids[order]
        self._codes = np.ascontiguousarray(all_codes[order])

    def remove(self, ids: npt.ArrayLike) -> None:
        """Drop ids (unknown ones are ignored); exact search has no graph to repair, so this is a filter."""
        id_arr = np.asarray(ids, dtype=np.int64).reshape(-1)
        keep = ~np.isin(self._ids, id_arr)
        if not keep.all():
            self._ids = self._ids[keep]
            self._codes = self._codes[keep]

    def search(self, query_codes: npt.ArrayLike, k: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int32]]:
        """The k nearest ids per query by Hamming distance, nearest first; equal distances by ascending id.

        Always 2-D, (q, min(k, len)).
        """
        q = np.ascontiguousarray(query_codes, dtype=np.uint8)
        if q.ndim == 1:
            q = q[None, :]
        if q.ndim != 2 or q.shape[1] != self.nbits // 8:
            raise ValueError(f"expected query codes of shape (q, {self.nbits // 8}), got {q.shape}")
        kk = min(int(k), len(self))
        if kk <= 0 or q.shape[0] == 0:
            shape = (q.shape[0], max(kk, 0))
            return np.empty(shape, np.int64), np.empty(shape, np.int32)
        distances, rows = _knn_hamming(q, self._codes, kk)
        # The heap returns ties in arbitrary order; rows are id-ordered, so sorting by (distance, row)
        # makes the order deterministic.
        order = np.lexsort((rows, distances), axis=-1)
        rows = np.take_along_axis(rows, order, axis=-1)
        distances = np.take_along_axis(distances, order, axis=-1)
        return self._ids[rows], distances.astype(np.int32, copy=False)


def _knn_hamming(
    q: npt.NDArray[np.uint8], codes: npt.NDArray[np.uint8], k: int
) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int64]]:
    """faiss's Hamming scan; one query runs on one thread. faiss otherwise starts its whole OpenMP team for a single
    query, whose wake-up costs more than the scan: at 100,000 codes of 1,280 bits the window's query waited a p99
    of 36 ms instead of 0.5-1.5 ms (issue 18). omp_set_num_threads sets the calling thread's own setting, so a
    batch searched on another thread keeps its team."""
    if q.shape[0] != 1:
        return faiss.knn_hamming(q, codes, k)
    team = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        return faiss.knn_hamming(q, codes, k)
    finally:
        faiss.omp_set_num_threads(team)


def exact_cosine_search(
    vectors: npt.ArrayLike, queries: npt.ArrayLike, k: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """Brute-force cosine k-NN: (row indices, 1 - cos), nearest first, ties by row index.

    Ground truth for measuring the HNSW recall, and the whole search for collections small enough that an
    index is not worth building. Zero vectors are kept as zero (distance 1 to everything) rather than NaN.
    """

    def normalise(a: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        norms = np.linalg.norm(a, axis=1, keepdims=True)
        return np.divide(a, norms, out=np.zeros_like(a), where=norms > 0)

    v = normalise(np.atleast_2d(np.asarray(vectors, dtype=np.float32)))
    q = normalise(np.atleast_2d(np.asarray(queries, dtype=np.float32)))
    if v.shape[1] != q.shape[1]:
        raise ValueError(f"vectors have dimension {v.shape[1]}, queries {q.shape[1]}")
    n = v.shape[0]
    kk = max(0, min(int(k), n))
    out_rows = np.empty((q.shape[0], kk), np.int64)
    out_dist = np.empty((q.shape[0], kk), np.float32)
    if kk == 0:
        return out_rows, out_dist
    block = max(1, _EXACT_BLOCK_ELEMENTS // max(n, 1))
    for start in range(0, q.shape[0], block):
        dist = 1.0 - q[start : start + block] @ v.T
        if kk < n:
            part = np.argpartition(dist, kk - 1, axis=1)[:, :kk]
        else:
            part = np.broadcast_to(np.arange(n), dist.shape).copy()
        part_dist = np.take_along_axis(dist, part, axis=1)
        order = np.lexsort((part, part_dist), axis=-1)
        out_rows[start : start + block] = np.take_along_axis(part, order, axis=1)
        out_dist[start : start + block] = np.take_along_axis(part_dist, order, axis=1)
    return out_rows, out_dist
