"""A query answered across a library, with everything the window's views need (explorer.app.analysis.QueryOutcome).

The rankings come from explorer.engine.library_search (the folders' top k merged); the plots get every indexed
image's distances, folder after folder, so the float-against-binary scatter shows the whole library; and the
dimensions tab compares each nested dimension's library ranking with the full one. Results of different folders
may share a catalog row id, so rankings are compared by path here, never by id.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
from PIL import Image

from explorer.app.analysis import QueryOutcome, dim_strips, ids_to_rows, scatter_sample
from explorer.engine.library_search import LibraryRanking, search_library
from explorer.engine.search import Ranking, SearchResult

if TYPE_CHECKING:
    from explorer.engine.session import RetrievalSession


def _ranking(library: LibraryRanking) -> Ranking:
    return Ranking(library.dim, library.binary, library.results)


def _in_folder(library: LibraryRanking, folder: Path) -> list[SearchResult]:
    return [r for r, f in zip(library.results, library.folder_of, strict=True) if f == folder]


def _same_paths(a: Ranking, b: Ranking) -> int:
    return len({r.path for r in a.results} & {r.path for r in b.results})


def run_library_query(
    session: RetrievalSession,
    query: Path | Image.Image | npt.NDArray[np.float32],
    folders: list[Path],
    k: int,
    dim: int | None,
    label: str = "",
    check: Callable[[], None] = lambda: None,
    query_path: Path | None = None,
    expand: int = 0,
) -> QueryOutcome:
    """Embed the query (unless an embedding is given) and answer it across `folders` (a library's).

    The query's own picture, when it is in the library, is left out of the rankings and the plots.
    """
    start = time.perf_counter()
    own_path = query if isinstance(query, Path) else query_path
    emb = query if isinstance(query, np.ndarray) else session.embed_query(query)
    d = int(dim or session.card.dim)
    out = QueryOutcome(label, emb, None, k, d)
    indexed = [f for f in folders if session.is_indexed(f)]
    if not indexed:
        out.seconds = time.perf_counter() - start
        return out
    check()
    float_lib = search_library(session, emb, indexed, k, d, False, own_path, expand)
    binary_lib = search_library(session, emb, indexed, k, d, True, own_path, expand) if d % 8 == 0 else None
    out.float_ranking = _ranking(float_lib)
    out.binary_ranking = _ranking(binary_lib) if binary_lib is not None else None

    cosines, hammings = [], []
    row_of: dict[tuple[Path, int], int] = {}  # (folder, result id) -> row of the plots' arrays
    offset = 0
    for folder in indexed:
        collection = session.collection(folder)
        cosine, hamming = collection.all_distances(emb, d)
        own = collection.row_of(own_path) if own_path is not None else None
        shown = [*_in_folder(float_lib, folder), *(_in_folder(binary_lib, folder) if binary_lib else [])]
        rows = ids_to_rows(collection, shown)
        if own is not None:
            cosine, hamming = np.delete(cosine, own), np.delete(hamming, own)
            rows = rows - (rows > own)
        row_of.update({(folder, r.id): int(row) + offset for r, row in zip(shown, rows, strict=True)})
        cosines.append(cosine)
        hammings.append(hamming)
        offset += len(cosine)
    out.cosine, out.hamming = np.concatenate(cosines), np.concatenate(hammings)
    # in ranking order, as analysis.run_query gives them (a result dropped later drops its row at the same place)
    out.float_rows = np.array(
        [row_of[f, r.id] for r, f in zip(float_lib.results, float_lib.folder_of, strict=True)], dtype=np.int64
    )
    out.binary_rows = np.array(
        [row_of[f, r.id] for r, f in zip(binary_lib.results, binary_lib.folder_of, strict=True)]
        if binary_lib is not None
        else [],
        dtype=np.int64,
    )
    out.cosine_sorted, out.hamming_sorted = np.sort(out.cosine), np.sort(out.hamming)
    out.scatter_rows = scatter_sample(len(out.cosine))
    check()
    out.strips = dim_strips(
        session.card.nested_dims,
        session.card.dim,
        lambda nd, binary: _ranking(search_library(session, emb, indexed, k, nd, binary, own_path, expand)),
        _same_paths,
    )
    out.notes = list(session.notes)
    out.seconds = time.perf_counter() - start
    return out
