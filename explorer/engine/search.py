"""Answer queries against one indexed folder: float (cosine) or binary (Hamming) ranking at any nested dimension.

Every result carries both distances, so the app can show what binarization changes for each neighbour.
Float ranking is exact while a scan is cheap (up to `exact_limit` vectors x dimensions) and goes through a
persisted hnswlib index above that; binary ranking is always exact (faiss's Hamming scan meets 10 ms at a million
1024-bit codes). A query never builds an index: indexing a folder builds the ones its dimensions need
(`prepare`), and a query that comes before they are ready is answered by the exact scan, and says so.

The vectors are held once: each dimension's scan divides by that prefix's norms (one float per image) instead of
keeping a normalised copy per dimension (100,000 x 1280-d: 0.5 GB a copy).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import numpy.typing as npt

from explorer.engine.catalog import Catalog, CatalogSnapshot, write_failure
from explorer.engine.exact_search import BinaryIndex
from explorer.engine.index import FloatIndex, IndexFileError
from trainer.binary import binarize, code_prefix, hamming_distances
from trainer.card import nested_dims
from trainer.progress import CancelCheck, Progress, ProgressCallback, never_cancelled

DEFAULT_EXACT_LIMIT = 250_000 * 1280
"""Vectors x dimensions scanned exactly: 100,000 x 1280-d takes 17 ms on 2 cores (bench/large_folder.py), where
building the graph took 147 s and 0.5 GB of disk per dimension; a graph pays for itself only beyond this."""


@dataclass(frozen=True)
class SearchResult:
    rank: int  # 1-based, in the ranking that was asked for
    path: Path
    relpath: str
    cosine_distance: float  # 1 - cos of the `dim`-prefix embeddings
    hamming_distance: int  # differing bits of the `dim`-bit codes
    id: int  # catalog row id


@dataclass(frozen=True)
class Ranking:
    dim: int
    binary: bool
    results: list[SearchResult]

    @property
    def bytes_per_image(self) -> int:
        return self.dim // 8 if self.binary else self.dim * 4


def _normalise(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)


class Collection:
    """A folder's catalog under one model, loaded for search."""

    def __init__(
        self,
        folder: Path,
        catalog: Catalog,
        exact_limit: int = DEFAULT_EXACT_LIMIT,
        note: Callable[[str], None] = lambda _text: None,
    ) -> None:
        self.folder = Path(folder)
        self.note = note  # told what the search had to do differently (a cache that cannot be written)
        self.catalog = catalog
        self.dim = catalog.dim
        self.exact_limit = exact_limit
        self._float: dict[int, FloatIndex] = {}
        self._binary: dict[int, BinaryIndex] = {}
        self._norms: dict[int, npt.NDArray[np.float32]] = {}
        self._rows_by_relpath: dict[str, int] | None = None
        self._snapshot: CatalogSnapshot | None = None
        self._codes: npt.NDArray[np.uint8] | None = None
        self._told: set[str] = set()

    # -- state ------------------------------------------------------------------------------------------
    def reload(self) -> None:
        """Forget what was read, after indexing: the catalog is read again when next needed."""
        self._snapshot = None
        self._codes = None
        self._float.clear()
        self._binary.clear()
        self._norms.clear()
        self._rows_by_relpath = None

    @property
    def snapshot(self) -> CatalogSnapshot:
        """Every embedding, read on first use (counting images, `explorer info`, needs none of them)."""
        if self._snapshot is None:
            self._snapshot = self.catalog.snapshot()
        return self._snapshot

    @property
    def codes(self) -> npt.NDArray[np.uint8] | None:
        """The binary codes of every embedding at full width, derived once (None when dim % 8)."""
        if self._codes is None and self.dim % 8 == 0:
            self._codes = binarize(self.snapshot.embeddings)
        return self._codes

    def __len__(self) -> int:
        """Images indexed: from what was read, else counted in the catalog without reading a vector."""
        return len(self._snapshot.ids) if self._snapshot is not None else len(self.catalog)

    @property
    def paths(self) -> list[Path]:
        return [self.folder / r for r in self.snapshot.relpaths]

    def check_dim(self, dim: int | None) -> int:
        d = self.dim if dim is None else int(dim)
        if not 0 < d <= self.dim:
            raise ValueError(f"dimension {d} is outside 1..{self.dim}")
        return d

    def prefix_norms(self, dim: int) -> npt.NDArray[np.float32]:
        """The L2 norm of every embedding's `dim`-prefix (cached per dimension; never 0, so it divides).

        The first call computes every nested dimension's in one pass over the vectors, a block of columns at a
        time (einsum makes no temporary): the window asks for all of them at once, and a whole-array `norm` made
        a temporary as large as the vectors."""
        if dim not in self._norms:
            dims = sorted({dim, *(d for d in nested_dims(self.dim) if d not in self._norms)})
            emb = self.snapshot.embeddings
            squares = np.zeros(len(emb), np.float32)
            previous = 0
            for d in dims:
                block = emb[:, previous:d]
                squares += np.einsum("ij,ij->i", block, block)
                self._norms[d] = np.maximum(np.sqrt(squares), 1e-12)
                previous = d
        return self._norms[dim]

    def cosine_similarities(
        self, q_unit: npt.NDArray[np.float32], dim: int, rows: npt.ArrayLike | None = None
    ) -> npt.NDArray[np.float32]:
        """cos(query, image) at `dim` for every image (or those `rows`), from the one copy of the vectors."""
        if rows is None:
            return (self.snapshot.embeddings[:, :dim] @ q_unit) / self.prefix_norms(dim)
        picked = np.asarray(rows, dtype=np.int64)
        return (self.snapshot.embeddings[picked, :dim] @ q_unit) / self.prefix_norms(dim)[picked]

    def _tell_once(self, text: str) -> None:
        if text not in self._told:
            self._told.add(text)
            self.note(text)

    def codes_at(self, dim: int) -> npt.NDArray[np.uint8]:
        if self.codes is None or dim % 8:
            raise ValueError(f"binary codes need a dimension divisible by 8, got {dim}")
        return code_prefix(self.codes, dim)

    # -- indexes ----------------------------------------------------------------------------------------
    def _index_path(self, dim: int) -> Path:
        return self.catalog.path.parent / f"float-{dim}.hnsw"

    def float_index(
        self, dim: int, build: bool = False, progress: Callable[[int, int], None] | None = None,
        cancel: CancelCheck = never_cancelled,
    ) -> FloatIndex | None:  # fmt: skip
        """The hnswlib index for `dim` when one is ready: held, or saved and matching the catalog row for row.

        With `build` (indexing, never a query) a saved one is extended or pruned to match, or a new one built
        (`progress(done, total)` as vectors go in; `cancel` stops it unsaved), and saved. None when none is ready,
        or when a build was cancelled or the cache cannot be written and holds no index that matches (the exact
        scan then answers: as right, and slower). An index that cannot be saved (a full disk) is used from
        memory, and said so."""
        if dim in self._float:
            return self._float[dim]
        path = self._index_path(dim)
        index: FloatIndex | None = None
        try:
            index = FloatIndex.load(path)
            if index.dim != dim:
                raise IndexFileError(f"{path} is {index.dim}-d")
            if index.built_from != self.catalog.identity:  # ids of another catalog (recreated since)
                raise IndexFileError(f"{path} was built from another catalog")
        except (IndexFileError, FileNotFoundError):
            index = None
        ids = self.snapshot.ids
        matches = index is not None and np.array_equal(index.ids(), ids)
        if self.catalog.read_only_reason is not None:
            if not matches:
                self._tell_once(f"{self.catalog.read_only_reason}: the float search is exact, without its saved index")
                return None
        elif not matches and not build:
            return None
        elif not matches:
            if index is None:
                index = FloatIndex(dim)
                index.built_from = self.catalog.identity
            done = index.sync(
                ids, lambda want: self.snapshot.embeddings[np.searchsorted(ids, want), :dim], progress, cancel
            )
            if done is None:  # cancelled: nothing saved, the exact scan answers until the next indexing
                return None
            try:
                index.save(path)
            except OSError as exc:
                why = write_failure(exc) or f"cannot be written ({exc.strerror or exc})"
                self.note(f"the cache folder {why}: the float index is kept in memory and built again next time")
        assert index is not None
        self._float[dim] = index
        return index

    def binary_index(self, dim: int) -> BinaryIndex:
        if dim not in self._binary:
            index = BinaryIndex(dim)
            if len(self):
                index.add(self.snapshot.ids, self.codes_at(dim))
            self._binary[dim] = index
        return self._binary[dim]

    def uses_exact_float(self, dim: int) -> bool:
        return len(self) * dim <= self.exact_limit

    def prepare(
        self,
        dims: list[int] | None = None,
        progress: ProgressCallback | None = None,
        cancel: CancelCheck = never_cancelled,
    ) -> bool:
        """Build (or update and save) the float indexes of the dimensions that the window searches (every nested
        prefix by default) and that are too large to scan; False when cancelled (the exact scan answers until the
        next indexing finishes them)."""
        wanted = [d for d in (dims or nested_dims(self.dim)) if not self.uses_exact_float(d)]
        for i, d in enumerate(wanted):
            stage = f"building the {d}-d search index ({i + 1} of {len(wanted)})"
            started = time.perf_counter()

            def report(done: int, total: int, stage: str = stage, started: float = started) -> None:
                if progress is not None:
                    rate = done / max(time.perf_counter() - started, 1e-9)
                    progress(Progress(done, total, rate, stage))

            if self.float_index(d, build=True, progress=report, cancel=cancel) is None and cancel():
                return False
        return True

    # -- queries ----------------------------------------------------------------------------------------
    def row_of(self, path: Path | None) -> int | None:
        """The snapshot row of a file of this folder (a query picked from the collection itself), else None."""
        if path is None:
            return None
        try:
            rel = Path(path).resolve().relative_to(self.folder).as_posix()
        except (ValueError, OSError):
            return None
        if self._rows_by_relpath is None:
            self._rows_by_relpath = {r: i for i, r in enumerate(self.snapshot.relpaths)}
        return self._rows_by_relpath.get(rel)

    def search(
        self,
        query: npt.NDArray[np.float32],
        k: int = 20,
        dim: int | None = None,
        binary: bool = False,
        exclude_row: int | None = None,
        expand: int = 0,
    ) -> Ranking:
        """The k nearest images to a query embedding (raw, full D), ranked by cosine or by Hamming distance;
        `exclude_row` (the query's own row, when it is one of the collection's images) is never among them.

        `expand` > 0: average query expansion (trainer.rerank.query_expansion): ranked by the mean of the query and
        its `expand` nearest images (the majority of their bits when `binary`); the distances shown stay the
        query's own, so a ranking may show a farther image first."""
        if expand > 0:
            return self._expanded_search(query, k, dim, binary, exclude_row, expand)
        if exclude_row is not None:
            wider = self.search(query, k + 1, dim, binary)
            kept = [r for r in wider.results if r.id != int(self.snapshot.ids[exclude_row])][: max(0, int(k))]
            return Ranking(wider.dim, binary, [replace(r, rank=i + 1) for i, r in enumerate(kept)])
        d = self.check_dim(dim)
        k = max(0, min(int(k), len(self)))
        q = np.asarray(query, np.float32).reshape(-1)
        if q.shape[0] != self.dim:
            raise ValueError(f"query has {q.shape[0]} dimensions, the collection {self.dim}")
        if k == 0:
            return Ranking(d, binary, [])
        q_unit = _normalise(q[:d])
        ids = self.snapshot.ids
        if binary:
            found, _ = self.binary_index(d).search(binarize(q[:d])[None], k)
            rows = np.searchsorted(ids, found[0])
        elif self.uses_exact_float(d) or (index := self.float_index(d)) is None:
            if not self.uses_exact_float(d) and self.catalog.read_only_reason is None:
                self._tell_once(
                    f"the {d}-d search index is not ready yet: the float ranking comes from an exact scan of every "
                    "image (as right, slower); indexing the folder builds it"
                )
            rows = self._exact_rows(q_unit, d, k)
        else:
            found, _ = index.search(q[:d], k)
            rows = np.searchsorted(ids, found[0])
        return Ranking(d, binary, self._results(rows, q_unit, q[:d], d, binary))

    def _expanded_search(
        self, query: npt.NDArray[np.float32], k: int, dim: int | None, binary: bool, exclude_row: int | None, n: int
    ) -> Ranking:
        d = self.check_dim(dim)
        q = np.asarray(query, np.float32).reshape(-1)
        first = self.search(q, n, d, binary, exclude_row)
        rows = np.searchsorted(self.snapshot.ids, [r.id for r in first.results])
        vectors = np.vstack([q[None, :d], self.snapshot.embeddings[rows, :d]]).astype(np.float32)
        # binary: the majority of the bits (query and n neighbours: no tie for an even n); float: the mean direction
        mean = np.where(vectors > 0, 1.0, -1.0).sum(axis=0) if binary else _normalise(vectors).mean(axis=0)
        expanded = np.zeros(self.dim, np.float32)
        expanded[:d] = mean
        ranked = self.search(expanded, k, d, binary, exclude_row)
        rows = np.searchsorted(self.snapshot.ids, [r.id for r in ranked.results]).astype(np.int64)
        if len(rows) == 0:
            return ranked
        cos, ham = self._distances(rows, _normalise(q[:d]), q[:d], d)
        results = [
            replace(r, cosine_distance=float(c), hamming_distance=int(h))
            for r, c, h in zip(ranked.results, cos, ham, strict=True)
        ]
        return Ranking(d, binary, results)

    def _distances(
        self, rows: npt.NDArray[np.int64], q_unit: npt.NDArray[np.float32], q: npt.NDArray[np.float32], d: int
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        """Cosine and Hamming distances of the query (`q`: its `d`-prefix) to the images at `rows`."""
        cos = np.maximum(1.0 - self.cosine_similarities(q_unit, d, rows), 0.0)
        ham = (
            hamming_distances(binarize(q), self.codes_at(d)[rows])
            if d % 8 == 0 and self.codes is not None
            else np.zeros(len(rows), np.int64)
        )
        return cos, ham

    def _exact_rows(self, q_unit: npt.NDArray[np.float32], d: int, k: int) -> npt.NDArray[np.int64]:
        sims = self.cosine_similarities(q_unit, d)
        rows = np.argpartition(-sims, k - 1)[:k] if k < len(sims) else np.arange(len(sims))
        return np.asarray(rows[np.lexsort((rows, -sims[rows]))], dtype=np.int64)

    def _results(
        self,
        rows: npt.NDArray[np.int64],
        q_unit: npt.NDArray[np.float32],
        q: npt.NDArray[np.float32],
        d: int,
        binary: bool,
    ) -> list[SearchResult]:
        cos, ham = self._distances(rows, q_unit, q, d)
        order = np.lexsort((rows, cos)) if not binary else np.lexsort((rows, cos, ham))
        return [
            SearchResult(
                rank=i + 1,
                path=self.folder / self.snapshot.relpaths[rows[j]],
                relpath=self.snapshot.relpaths[rows[j]],
                cosine_distance=float(cos[j]),
                hamming_distance=int(ham[j]),
                id=int(self.snapshot.ids[rows[j]]),
            )
            for i, j in enumerate(order)
        ]

    def all_distances(
        self, query: npt.NDArray[np.float32], dim: int | None = None
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        """Cosine and Hamming distance from the query to every image (row order of `snapshot`), for plots."""
        d = self.check_dim(dim)
        q = np.asarray(query, np.float32).reshape(-1)[:d]
        cos = np.maximum(1.0 - self.cosine_similarities(_normalise(q), d), 0.0)
        ham = hamming_distances(binarize(q), self.codes_at(d)) if d % 8 == 0 else np.zeros(len(cos), np.int64)
        return cos.astype(np.float32), ham
