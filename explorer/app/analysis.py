"""What the window shows for one query, computed in a worker from the engine's own answers.

Everything the grid, the float-against-binary plots and the dimension panel draw comes from one
`QueryOutcome`, built here on a pool thread from `RetrievalSession.query`, `Collection.search` and
`Collection.all_distances`: the GUI thread only copies numbers into widgets, and the numbers on screen are
by construction the engine's numbers. No Qt and no torch at import time (the GUI thread imports this
module before the model is loaded).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from PIL import Image

    from explorer.engine.search import Collection, Ranking, SearchResult
    from explorer.engine.session import RetrievalSession

MAX_RECALL_ITEMS = 4000
"""Recall@K ranks every image against all others (n^2 distances per dimension and representation); above
this many images a seeded random sample stands in, and the panel says so."""

RECALL_KS = (1, 4)


MAX_SCATTER_POINTS = 5_000
"""Above this many images the scatter draws a fixed random sample (plus every top-k image): a million points would
take the GUI thread seconds to paint and look the same. At 20,000 the window's longest stall while drawing a
100,000-image query was 190-220 ms; at 5,000, 42 ms (bench/gui_responsiveness.py), and the cloud looks the same."""


def scatter_sample(n: int, limit: int = MAX_SCATTER_POINTS) -> npt.NDArray[np.int64]:
    """Rows to draw in the scatter: all of them, or the same seeded random subset for every query.

    >>> scatter_sample(3).tolist(), len(scatter_sample(50_000))
    ([0, 1, 2], 5000)
    """
    if n <= limit:
        return np.arange(n)
    return np.sort(np.random.default_rng(0).choice(n, limit, replace=False))


@dataclass
class DimStrip:
    """The top-k at one nested dimension, in one representation, against the full-dimension float top-k."""

    dim: int
    binary: bool
    ranking: Ranking
    overlap: int  # neighbours shared with the full-dimension float top-k
    k: int

    @property
    def bytes_per_image(self) -> int:
        return self.dim // 8 if self.binary else 4 * self.dim


@dataclass
class QueryOutcome:
    """A query's answer at the chosen k and dimension, plus everything the analysis views need."""

    label: str  # what the query was (file name or "pasted image")
    embedding: npt.NDArray[np.float32]
    folder: Path | None
    k: int
    dim: int
    float_ranking: Ranking | None = None
    binary_ranking: Ranking | None = None
    cosine: npt.NDArray[np.float32] = field(default_factory=lambda: np.zeros(0, np.float32))
    hamming: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))
    float_rows: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))
    notes: list[str] = field(default_factory=list)  # what the search had to do differently (an unwritable cache)
    # What the plots draw, sorted and sampled here on the worker, never on the GUI thread:
    cosine_sorted: npt.NDArray[np.float32] = field(default_factory=lambda: np.zeros(0, np.float32))
    hamming_sorted: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))
    scatter_rows: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))
    binary_rows: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))
    strips: list[DimStrip] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def searched(self) -> bool:
        return self.float_ranking is not None

    def ranking(self, binary: bool) -> Ranking | None:
        return self.binary_ranking if binary else self.float_ranking

    @property
    def overlap(self) -> int:
        """How many of the float top-k the binary top-k keeps (binarization's cost, as one number)."""
        return len(np.intersect1d(self.float_rows, self.binary_rows))

    @property
    def collection_size(self) -> int:
        return len(self.cosine)


def ids_to_rows(collection: Collection, results: Sequence[SearchResult]) -> npt.NDArray[np.int64]:
    """Positions in `collection.snapshot` (the order of `all_distances`) of search results."""
    ids = np.array([r.id for r in results], dtype=np.int64)
    return np.searchsorted(collection.snapshot.ids, ids).astype(np.int64)


def _overlap(a: Ranking, b: Ranking) -> int:
    return len({r.id for r in a.results} & {r.id for r in b.results})


def dim_strips(
    nested: Sequence[int],
    full_dim: int,
    search: Callable[[int, bool], Ranking],
    overlap: Callable[[Ranking, Ranking], int],
) -> list[DimStrip]:
    """The dimensions tab's rows: each nested dimension's float and binary ranking (binary only at multiples of 8),
    with how many of the full float ranking's results each keeps (`overlap`)."""
    full = search(full_dim, False)
    strips = []
    for nd in nested:
        for binary in (False, True):
            if binary and nd % 8:
                continue
            ranking = full if nd == full_dim and not binary else search(nd, binary)
            strips.append(DimStrip(nd, binary, ranking, overlap(ranking, full), len(full.results)))
    return strips


def run_query(
    session: RetrievalSession,
    query: Path | Image.Image | npt.NDArray[np.float32],
    folder: Path | None,
    k: int,
    dim: int | None,
    label: str = "",
    check: Callable[[], None] = lambda: None,
    query_path: Path | None = None,
    expand: int = 0,
) -> QueryOutcome:
    """Embed the query (unless an embedding is given) and, if `folder` is indexed, answer it fully (ranked by
    query expansion with `expand` neighbours when > 0).

    A query that is one of the folder's own images (`query`, or `query_path` when an embedding is given) is left
    out of its rankings and its plots: its own distance 0 would take the first place and squash the plot's axes.
    Raises trainer.images.ImageLoadError when the query file cannot be read.
    """
    start = time.perf_counter()
    emb = query if isinstance(query, np.ndarray) else session.embed_query(query)
    d = int(dim or session.card.dim)
    out = QueryOutcome(label, emb, folder, k, d)
    if folder is None or not session.is_indexed(folder):
        out.seconds = time.perf_counter() - start
        return out
    check()
    collection = session.collection(folder)
    result = session.query(
        emb, folder, k=k, dim=d, exclude=query if isinstance(query, Path) else query_path, expand=expand
    )
    own = result.excluded_row
    out.float_ranking, out.binary_ranking = result.float_ranking, result.binary_ranking
    cosine, hamming = collection.all_distances(emb, d)
    float_rows = ids_to_rows(collection, result.float_ranking.results)
    binary_rows = ids_to_rows(collection, result.binary_ranking.results if result.binary_ranking else [])
    if own is not None:  # the rows after the query's own move up by one
        cosine, hamming = np.delete(cosine, own), np.delete(hamming, own)
        float_rows, binary_rows = float_rows - (float_rows > own), binary_rows - (binary_rows > own)
    out.cosine, out.hamming, out.float_rows, out.binary_rows = cosine, hamming, float_rows, binary_rows
    out.cosine_sorted, out.hamming_sorted = np.sort(cosine), np.sort(hamming)
    out.scatter_rows = scatter_sample(len(cosine))
    check()
    out.strips = dim_strips(
        session.card.nested_dims,
        session.card.dim,
        lambda nd, binary: collection.search(emb, k, nd, binary, exclude_row=own, expand=expand),
        _overlap,
    )
    out.notes = list(session.notes)
    out.seconds = time.perf_counter() - start
    return out


# ------------------------------------------------------------------------------------- labelled folders


@dataclass
class FolderLabels:
    """Classes of a folder whose images sit in one sub-folder per class."""

    rows: npt.NDArray[np.int64]  # snapshot rows that have a class (images at the top level have none)
    labels: list[str]
    classes: list[str]


def folder_labels(relpaths: Sequence[str]) -> FolderLabels | None:
    """Sub-folder = class; None unless at least two classes exist and some class has two images."""
    rows = [i for i, r in enumerate(relpaths) if "/" in r]
    labels = [relpaths[i].split("/", 1)[0] for i in rows]
    classes, counts = np.unique(labels, return_counts=True) if labels else (np.array([]), np.array([]))
    if len(classes) < 2 or counts.max() < 2:
        return None
    return FolderLabels(np.array(rows, np.int64), labels, [str(c) for c in classes])


@dataclass
class RecallTable:
    """Recall@K of the folder against itself, per nested dimension, float (cosine) and binary (Hamming)."""

    dims: list[int]
    ks: tuple[int, ...]
    cosine: dict[int, dict[int, float]]  # float embeddings: dim -> k -> recall
    binary: dict[int, dict[int, float]]
    items: int
    classes: int
    sampled_from: int | None = None  # the folder's labelled count when a sample was used

    def series(self, binary: bool, k: int) -> list[float]:
        table = self.binary if binary else self.cosine
        return [table[d][k] for d in self.dims]


def folder_recall(
    embeddings: npt.NDArray[np.float32],
    relpaths: Sequence[str],
    dims: Sequence[int],
    ks: Sequence[int] = RECALL_KS,
    max_items: int = MAX_RECALL_ITEMS,
    check: Callable[[], None] = lambda: None,
    progress: Callable[[int, int], Any] | None = None,
    seed: int = 0,
) -> RecallTable | None:
    """Recall@K of a labelled folder (each image against all the others) at every nested dimension.

    None when the folder is not labelled. Computed one dimension at a time with `trainer.metrics.evaluate`
    (the trainer's own protocol), checking for cancellation in between.
    """
    from trainer.metrics import evaluate

    found = folder_labels(relpaths)
    if found is None:
        return None
    rows, labels = found.rows, np.asarray(found.labels)
    sampled_from = None
    if len(rows) > max_items:
        pick = np.sort(np.random.default_rng(seed).choice(len(rows), max_items, replace=False))
        rows, labels, sampled_from = rows[pick], labels[pick], len(found.rows)
    x = np.asarray(embeddings, np.float32)[rows]
    usable = [int(d) for d in dims if d % 8 == 0 and d <= x.shape[1]]
    table = RecallTable(usable, tuple(ks), {}, {}, len(rows), len(np.unique(labels)), sampled_from)
    for i, d in enumerate(usable):
        check()
        scores = evaluate(x, labels, [d], ks=ks, with_clustering=False)
        table.cosine[d] = {k: scores["float"][d][f"R@{k}"] for k in ks}
        table.binary[d] = {k: scores["binary"][d][f"R@{k}"] for k in ks}
        if progress is not None:
            progress(i + 1, len(usable))
    return table


@dataclass
class IndexSummary:
    """What an indexing run left behind, for the status bar and the skipped-files list."""

    folder: Path
    report: Any  # explorer.engine.indexer.IndexReport
    count: int  # images now searchable in the folder
    labelled: bool
    seconds: float = 0.0
    resumable: bool = False  # no run: what a folder cancelled last time can be searched in, continuing offered

    @property
    def cancelled(self) -> bool:
        return bool(self.report.cancelled)

    @property
    def changed(self) -> bool:
        return bool(self.report.embedded or self.report.removed)


def searchable_now(session: RetrievalSession, folder: Path) -> IndexSummary:
    """What a folder whose last indexing run was cancelled can be searched in now, without indexing (a pool
    thread: it opens the catalog). Its report says cancelled, with nothing embedded in this run."""
    from explorer.engine.indexer import IndexReport

    collection = session.collection(folder)
    report = IndexReport(Path(folder), cancelled=True)
    report.unchanged = len(collection)
    report.skipped = collection.catalog.skipped()
    labelled = folder_labels(collection.snapshot.relpaths) is not None
    return IndexSummary(Path(folder), report, len(collection), labelled, resumable=True)


def index_folder(
    session: RetrievalSession,
    folder: Path,
    progress: Callable[[Any], None] | None = None,
    cancel: Callable[[], bool] = lambda: False,
) -> IndexSummary:
    """`session.index` plus what the window shows afterwards (runs on a pool thread)."""
    start = time.perf_counter()
    report = session.index(folder, progress=progress, cancel=cancel)
    collection = session.collection(folder)
    labelled = folder_labels(collection.snapshot.relpaths) is not None
    return IndexSummary(Path(folder), report, len(collection), labelled, time.perf_counter() - start)
