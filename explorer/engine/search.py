"""Answer queries against one indexed folder: float (cosine) or binary (Hamming) ranking at any nested dimension.

Every result carries both distances, so the app can show what binarization changes for each neighbour.
Float ranking is exact while a scan is cheap (below `exact_limit` vectors x dimensions, where it is also
faster than a graph walk) and goes through the persisted hnswlib index above that; binary ranking is always
exact (faiss's Hamming scan meets 10 ms at a million 1024-bit codes).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import numpy.typing as npt

from explorer.engine.catalog import Catalog, CatalogSnapshot, write_failure
from explorer.engine.exact_search import BinaryIndex
from explorer.engine.index import FloatIndex, IndexFileError
from trainer.binary import binarize, code_prefix, hamming_distances

DEFAULT_EXACT_LIMIT = 20_000 * 1280  # vectors x dims: an exact scan of this costs about as much as a graph walk


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
        self._unit: dict[int, npt.NDArray[np.float32]] = {}
        self._rows_by_relpath: dict[str, int] | None = None
        self.reload()

    # -- state ------------------------------------------------------------------------------------------
    def reload(self) -> None:
        """Re-read the catalog after indexing; persisted float indexes are brought up to date lazily."""
        self.snapshot: CatalogSnapshot = self.catalog.snapshot()
        self.codes = binarize(self.snapshot.embeddings) if self.dim % 8 == 0 else None
        self._float.clear()
        self._binary.clear()
        self._unit.clear()
        self._rows_by_relpath = None

    def __len__(self) -> int:
        return len(self.snapshot.ids)

    @property
    def paths(self) -> list[Path]:
        return [self.folder / r for r in self.snapshot.relpaths]

    def check_dim(self, dim: int | None) -> int:
        d = self.dim if dim is None else int(dim)
        if not 0 < d <= self.dim:
            raise ValueError(f"dimension {d} is outside 1..{self.dim}")
        return d

    def unit_vectors(self, dim: int) -> npt.NDArray[np.float32]:
        """L2-normalised `dim`-prefixes of every embedding (cached per dimension)."""
        if dim not in self._unit:
            self._unit[dim] = _normalise(self.snapshot.embeddings[:, :dim])
        return self._unit[dim]

    def codes_at(self, dim: int) -> npt.NDArray[np.uint8]:
        if self.codes is None or dim % 8:
            raise ValueError(f"binary codes need a dimension divisible by 8, got {dim}")
        return code_prefix(self.codes, dim)

    # -- indexes ----------------------------------------------------------------------------------------
    def _index_path(self, dim: int) -> Path:
        return self.catalog.path.parent / f"float-{dim}.hnsw"

    def float_index(self, dim: int) -> FloatIndex | None:
        """The persisted hnswlib index for `dim`, extended or pruned to match the catalog; None when the cache
        cannot be written and holds no index that matches (the exact search then answers, as right and slower).
        An index that cannot be saved (a full disk) is used from memory, and said so."""
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
        if self.catalog.read_only_reason is not None:
            if index is None or not np.array_equal(np.sort(index.ids()), ids):
                self.note(f"{self.catalog.read_only_reason}: the float search is exact, without its saved index")
                return None
        else:
            if index is None:
                index = FloatIndex(dim)
                index.built_from = self.catalog.identity
            added, removed = index.sync(ids, lambda want: self.snapshot.embeddings[np.searchsorted(ids, want), :dim])
            if added or removed or not path.exists():
                try:
                    index.save(path)
                except OSError as exc:
                    why = write_failure(exc) or f"cannot be written ({exc.strerror or exc})"
                    self.note(f"the cache folder {why}: the float index is kept in memory and built again next time")
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

    def prepare(self, dims: list[int] | None = None) -> None:
        """Build (or update and persist) the float indexes a large collection will be searched with."""
        for d in dims or [self.dim]:
            if not self.uses_exact_float(d):
                self.float_index(d)

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
    ) -> Ranking:
        """The k nearest images to a query embedding (raw, full D), ranked by cosine or by Hamming distance;
        `exclude_row` (the query's own row, when it is one of the collection's images) is never among them."""
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
            rows = self._exact_rows(q_unit, d, k)
        else:
            found, _ = index.search(q[:d], k)
            rows = np.searchsorted(ids, found[0])
        return Ranking(d, binary, self._results(rows, q_unit, q[:d], d, binary))

    def _exact_rows(self, q_unit: npt.NDArray[np.float32], d: int, k: int) -> npt.NDArray[np.int64]:
        sims = self.unit_vectors(d) @ q_unit
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
        cos = np.maximum(1.0 - self.unit_vectors(d)[rows] @ q_unit, 0.0)
        ham = (
            hamming_distances(binarize(q), self.codes_at(d)[rows])
            if d % 8 == 0 and self.codes is not None
            else np.zeros(len(rows), np.int64)
        )
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
        cos = np.maximum(1.0 - self.unit_vectors(d) @ _normalise(q), 0.0)
        ham = hamming_distances(binarize(q), self.codes_at(d)) if d % 8 == 0 else np.zeros(len(cos), np.int64)
        return cos.astype(np.float32), ham
