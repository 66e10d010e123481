"""Re-ranking a retrieval's distances: query expansion and k-reciprocal re-ranking, as pure numpy functions.

Both take the (n, n) distance matrix of a collection searched against itself (every item a query, as in
trainer.metrics) and return a new one, so every metric there applies unchanged, to float (cosine) and binary
(Hamming) distances alike:

* `query_expansion` (average query expansion, Chum et al. 2007): a query becomes the mean of itself and its
  `n` nearest others; its distances are then those of that mean. Cheap; it helps when a query's first neighbours
  are nearly always right, and it hurts when they are not (it adds their mistakes).
* `k_reciprocal` (Zhong et al., "Re-ranking Person Re-identification with k-reciprocal Encoding", CVPR 2017):
  two items are close when their k-reciprocal neighbourhoods (items that have each other among their k nearest)
  overlap; the Jaccard distance of those neighbourhoods is blended with the original distance (`lam`).

Whether either helps is an empirical question per model and data set: `bench/rerank.py` measures it, and the app
turns neither on by default unless that table says so.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["RERANKERS", "k_reciprocal", "query_expansion", "reranked_metrics"]


def _order(distances: npt.NDArray[np.floating]) -> npt.NDArray[np.int64]:
    """Each row's items nearest first, the row's own item first of all (distance ties: lower index first)."""
    d = np.asarray(distances, dtype=np.float64).copy()
    np.fill_diagonal(d, -np.inf)
    return np.argsort(d, axis=1, kind="stable").astype(np.int64)


def query_expansion(
    embeddings: npt.ArrayLike, distances: npt.ArrayLike, n: int = 2, binary: bool = False
) -> npt.NDArray[np.float64]:
    """Distances after average query expansion: each query replaced by the mean of itself and its `n` nearest
    others (by `distances`); distances from that mean to every item (cosine, or Hamming of the mean's signs
    against the items' signs when `binary`). The diagonal is kept at 0, so the query still excludes itself.

    Four points on the unit circle: item 0's nearest other is item 1, so its expanded query is the normalised mean
    of items 0 and 1, half-way between them.

    >>> x = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-1.0, 0.0]])
    >>> d = query_expansion(x, 1 - x @ x.T, n=1)
    >>> [round(float(v), 3) for v in d[0]]  # was [0, 0.2, 1, 2]: item 2 came nearer, item 1 too
    [0.0, 0.051, 0.684, 1.949]
    """
    x = np.asarray(embeddings, dtype=np.float64)
    order = _order(np.asarray(distances))
    neighbours = order[:, : n + 1]  # the item itself, then its n nearest others
    if binary:
        signs = np.where(x > 0, 1.0, -1.0)
        mean = signs[neighbours].mean(axis=1)
        # Hamming distance of the expanded query's signs (a tie counts as agreeing with neither) to every item
        q = np.sign(mean)
        out = (x.shape[1] - q @ signs.T) / 2.0
    else:
        unit = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        mean = unit[neighbours].mean(axis=1)
        mean /= np.maximum(np.linalg.norm(mean, axis=1, keepdims=True), 1e-12)
        out = 1.0 - mean @ unit.T
    np.fill_diagonal(out, 0.0)
    return out


def k_reciprocal(distances: npt.ArrayLike, k1: int = 20, k2: int = 6, lam: float = 0.3) -> npt.NDArray[np.float64]:
    """Distances after k-reciprocal re-ranking (Zhong et al. 2017, the all-against-all form): (1 - lam) x the
    Jaccard distance of the items' k-reciprocal neighbourhoods (expanded by half-size ones, weighted by a Gaussian
    of the distance, smoothed over each item's k2 nearest) + lam x the original distance, scaled to [0, 1].

    Two tight pairs far apart: an item's reciprocal neighbourhood is its own pair (weighted a little towards itself),
    so within a pair the Jaccard distance is nearly 0 and across pairs 1.

    >>> x = np.array([0.0, 0.1, 5.0, 5.1])
    >>> d = k_reciprocal(np.abs(x[:, None] - x[None, :]), k1=1, k2=1, lam=0.0)
    >>> np.round(d, 2).tolist()
    [[0.0, 0.02, 1.0, 1.0], [0.02, 0.0, 1.0, 1.0], [1.0, 1.0, 0.0, 0.02], [1.0, 1.0, 0.02, 0.0]]
    """
    original = np.asarray(distances, dtype=np.float64)
    n = original.shape[0]
    scale = original.max(axis=0)
    scaled = original / np.where(scale > 0, scale, 1.0)
    k1 = min(k1, n - 1)
    order = _order(original)
    forward = order[:, : k1 + 1]
    half = order[:, : max(1, round(k1 / 2)) + 1]
    is_forward = np.zeros((n, n), dtype=bool)
    is_forward[np.arange(n)[:, None], forward] = True
    reciprocal = [forward[i][is_forward[forward[i], i]] for i in range(n)]
    is_half = np.zeros((n, n), dtype=bool)
    is_half[np.arange(n)[:, None], half] = True
    weights = np.zeros((n, n), dtype=np.float64)
    for i in range(n):
        expanded = reciprocal[i]
        for j in reciprocal[i]:
            candidate = half[j][is_half[half[j], j]]  # j's own half-size reciprocal neighbourhood
            if len(np.intersect1d(candidate, reciprocal[i])) > 2 / 3 * len(candidate):
                expanded = np.union1d(expanded, candidate)
        expanded = np.unique(expanded)
        w = np.exp(-scaled[i, expanded])
        weights[i, expanded] = w / w.sum()
    if k2 > 1:  # local query expansion of the neighbourhood vectors
        weights = weights[order[:, :k2]].mean(axis=1)
    # Jaccard distance through an inverted index: only the items sharing a neighbour with i are visited
    # (the rows sum to 1, so |union| = 2 - |intersection|).
    holders = [np.flatnonzero(weights[:, j]) for j in range(n)]
    jaccard = np.ones((n, n), dtype=np.float64)
    for i in range(n):
        shared = np.zeros(n, dtype=np.float64)
        for j in np.flatnonzero(weights[i]):
            shared[holders[j]] += np.minimum(weights[i, j], weights[holders[j], j])
        jaccard[i] = 1.0 - shared / (2.0 - shared)
    out = (1.0 - lam) * jaccard + lam * scaled
    np.fill_diagonal(out, 0.0)
    return out


RERANKERS = ("none", "qe", "kreciprocal")
MAX_ITEMS = 15_000  # an (n, n) float64 matrix and its re-ranked copy: 3.6 GB at 15,000 items


def reranked_metrics(
    embeddings: npt.ArrayLike, labels: npt.ArrayLike, dims: list[int], method: str, ks: tuple[int, ...] = (1, 2, 4, 8)
) -> dict[str, dict[int, dict[str, float]]]:
    """Recall@K and MAP@R of every item searched against the others after re-ranking (`method` one of
    RERANKERS), float (cosine) and binary (Hamming) at each nested dimension: trainer.metrics.evaluate's layout,
    without the clustering scores (re-ranking changes rankings, not clusters)."""
    from trainer.metrics import map_at_r, recall_at_k

    if method not in RERANKERS:
        raise ValueError(f"unknown re-ranking {method!r}; one of {', '.join(RERANKERS)}")
    x = np.asarray(embeddings, dtype=np.float64)
    if len(x) > MAX_ITEMS:
        raise ValueError(f"re-ranking {len(x):,} items needs an {len(x):,}-square matrix; use at most {MAX_ITEMS:,}")
    out: dict[str, dict[int, dict[str, float]]] = {"float": {}, "binary": {}}
    for d in dims:
        prefix = x[:, :d]
        for kind in ("float", "binary"):
            binary = kind == "binary"
            if binary:
                signs = np.where(prefix > 0, 1.0, -1.0)
                base = (d - signs @ signs.T) / 2.0
            else:
                unit = prefix / np.maximum(np.linalg.norm(prefix, axis=1, keepdims=True), 1e-12)
                base = 1.0 - unit @ unit.T
            dist = (
                base
                if method == "none"
                else query_expansion(prefix, base, binary=binary)
                if method == "qe"
                else k_reciprocal(base)
            )
            recalls = recall_at_k(dist, labels, ks)
            out[kind][d] = {**{f"R@{k}": v for k, v in recalls.items()}, "MAP@R": map_at_r(dist, labels)}
    return out
