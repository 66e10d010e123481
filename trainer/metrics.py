"""Retrieval and clustering metrics for deep metric learning, as pure numpy functions.

The protocol is the usual one for CUB / Cars / SOP: every item is a query against all the *others* (the query
itself is excluded, it would trivially be its own nearest neighbour). Queries whose class has no other item
cannot retrieve anything relevant and are left out of Recall@K and MAP@R, as in Musgrave et al.'s
pytorch-metric-learning: counting them would lower every model by the same constant and hide real
differences.

Neighbours are ranked by a stable sort on distance, so ties go to the lower index. Hamming distances are
small integers and tie constantly; a stable order makes the binary numbers reproducible across runs and
machines instead of depending on the sort algorithm.

Recall@K and MAP@R are computed in blocks of query rows, so a 10k-item evaluation never holds more than one
(block, n) slab of distances and ranks next to the embeddings.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np
import numpy.typing as npt

from trainer.binary import binarize, pairwise_hamming

DEFAULT_BLOCK = 1024
"""Query rows ranked at once: at n = 10k a block's float64 distances take 80 MB, its masks 10 MB each."""

_Blocks = Callable[[int, int], npt.NDArray[np.floating] | npt.NDArray[np.integer]]


# -------------------- distances


def _l2_normalise(x: npt.ArrayLike) -> npt.NDArray[np.float32]:
    a = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(a, axis=1, keepdims=True)
    # A zero vector has no direction; leaving it at zero puts it at cosine distance 1 from everything.
    return np.ascontiguousarray(a / np.maximum(norms, 1e-12))


def cosine_distance_matrix(x: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """All-pairs `1 - cos`, the distance the float embeddings are trained for (NormSoftmax uses cosine).

    >>> cosine_distance_matrix(np.array([[1.0, 0.0], [0.0, 2.0], [-3.0, 0.0]])).round(3).tolist()
    [[0.0, 1.0, 2.0], [1.0, 0.0, 1.0], [2.0, 1.0, 0.0]]
    """
    xn = _l2_normalise(x)
    return np.asarray(1.0 - xn @ xn.T, dtype=np.float32)


def hamming_distance_matrix(x: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """All-pairs Hamming distance between the sign codes of `x` (the deployed binary representation).

    >>> hamming_distance_matrix(np.array([[1.0] * 8, [1.0] * 4 + [-1.0] * 4])).tolist()
    [[0, 4], [4, 0]]
    """
    return pairwise_hamming(binarize(x))


def _matrix_blocks(distances: npt.NDArray[np.generic]) -> _Blocks:
    return lambda start, stop: distances[start:stop]  # type: ignore[return-value]


def _cosine_blocks(x: npt.ArrayLike) -> _Blocks:
    xn = _l2_normalise(x)
    return lambda start, stop: 1.0 - xn[start:stop] @ xn.T


def _hamming_blocks(x: npt.ArrayLike) -> _Blocks:
    # Same identity as `pairwise_hamming` (|a xor b| = |a| + |b| - 2 |a and b|), one slab at a time; float32
    # matmul is exact for bit counts below 2**24.
    bits = np.unpackbits(binarize(x), axis=1).astype(np.float32)
    ones = bits.sum(axis=1)
    return lambda start, stop: ones[start:stop, None] + ones[None, :] - 2.0 * (bits[start:stop] @ bits.T)


# -------------------- retrieval


def _check_labels(labels: npt.ArrayLike, n: int) -> npt.NDArray[np.int64]:
    lab = np.asarray(labels)
    if lab.ndim != 1 or len(lab) != n:
        raise ValueError(f"labels must have shape ({n},), got {lab.shape}")
    if n < 2:
        raise ValueError("retrieval needs at least two items (each query is matched against the others)")
    _, codes = np.unique(lab, return_inverse=True)
    return codes.astype(np.int64).reshape(-1)


def _nearest_others(dist: npt.NDArray[np.float64], rows: npt.NDArray[np.int64], depth: int) -> npt.NDArray[np.int64]:
    """Indices of the `depth` nearest items other than the query, per row, ordered by (distance, index).

    A full sort of every row costs O(n log n) per query and dominates a 10k evaluation, but Recall@K and
    MAP@R only look `max(k, R)` deep. So each row is partitioned around its depth-th value, the ties at that
    value are cut by index, and only the survivors are sorted: the same order as a stable full sort.
    """
    b, n = dist.shape
    # The query itself goes first and is dropped by position, so a duplicate at distance 0 stays a neighbour.
    dist[np.arange(b), rows] = -np.inf
    m = depth + 1
    if m < n:
        kth = np.partition(dist, m - 1, axis=1)[:, m - 1 : m]
        below = dist < kth
        at = dist == kth
        room = m - below.sum(axis=1, keepdims=True)
        crowded = at.sum(axis=1) > room[:, 0]  # more ties than places left: the lowest indices win
        if crowded.any():
            at[crowded] &= np.cumsum(at[crowded], axis=1, dtype=np.int32) <= room[crowded]
        candidates = np.nonzero(below | at)[1].reshape(b, m)  # ascending index within each row
    else:
        candidates = np.broadcast_to(np.arange(n), (b, n))
    by_distance = np.argsort(np.take_along_axis(dist, candidates, axis=1), axis=1, kind="stable")
    return np.take_along_axis(candidates, by_distance, axis=1)[:, 1:]


def _ranked_matches(
    blocks: _Blocks, codes: npt.NDArray[np.int64], depth: int, block_size: int
) -> Iterator[tuple[npt.NDArray[np.bool_], npt.NDArray[np.int64]]]:
    """Per block of queries: whether the r-th nearest other item (r < depth) shares the query's class, and R.

    Only queries with R >= 1 (another item of their class exists) are returned.
    """
    n = len(codes)
    class_sizes = np.bincount(codes)
    for start in range(0, n, block_size):
        stop = min(start + block_size, n)
        rows = np.arange(start, stop)
        relevant = class_sizes[codes[rows]] - 1
        kept = relevant > 0
        if not kept.any():
            continue
        dist = np.array(blocks(start, stop)[kept], dtype=np.float64)
        if np.isnan(dist).any():
            raise ValueError("distances contain NaN (are there NaN embeddings?): neighbours cannot be ranked")
        order = _nearest_others(dist, rows[kept], depth)
        yield codes[order] == codes[rows[kept], None], relevant[kept]


def _retrieval_scores(
    blocks: _Blocks, labels: npt.ArrayLike, n: int, ks: Sequence[int], block_size: int
) -> tuple[dict[int, float], float]:
    codes = _check_labels(labels, n)
    if any(k < 1 for k in ks):
        raise ValueError(f"every k must be at least 1, got {list(ks)}")
    if block_size < 1:
        raise ValueError(f"block_size must be at least 1, got {block_size}")
    # Deep enough for the largest k and the largest class (R = class size - 1).
    depth = min(n - 1, max(max(ks, default=1), int(np.bincount(codes).max()) - 1))
    hits = dict.fromkeys(ks, 0)
    ap_sum = 0.0
    queries = 0
    for match, relevant in _ranked_matches(blocks, codes, depth, block_size):
        first_hit = np.where(match.any(axis=1), match.argmax(axis=1), n)  # rank (0-based) of first relevant
        for k in ks:
            hits[k] += int(np.count_nonzero(first_hit < min(k, n - 1)))
        # MAP@R: precision at each relevant rank within the first R, summed, divided by R.
        r_max = int(relevant.max())
        top = match[:, :r_max]
        within_r = np.arange(r_max)[None, :] < relevant[:, None]
        precision = np.cumsum(top, axis=1) / np.arange(1, r_max + 1)[None, :]
        ap_sum += float((np.where(top & within_r, precision, 0.0).sum(axis=1) / relevant).sum())
        queries += len(relevant)
    if queries == 0:
        raise ValueError("no query has another item of its class, so retrieval metrics are undefined")
    return {k: hits[k] / queries for k in ks}, ap_sum / queries


def recall_at_k(
    distances: npt.ArrayLike, labels: npt.ArrayLike, ks: Sequence[int], *, block_size: int = DEFAULT_BLOCK
) -> dict[int, float]:
    """Recall@K: the share of queries with at least one same-class item among their k nearest others.

    It is the headline number of the DML literature because it is what a user scrolling the first k results
    experiences. A k beyond the n - 1 available neighbours is clipped to n - 1.

    Five items on a line at 0, 1, 2, 5, 6 with classes 0, 0, 1, 0, 1. Items 0 and 1 find each other first
    (item 1 is at distance 1 from both item 0 and item 2: the tie goes to the lower index); item 4's first
    same-class neighbour comes second, item 3's third, item 2's fourth.

    >>> x = np.array([0.0, 1.0, 2.0, 5.0, 6.0])
    >>> recall_at_k(np.abs(x[:, None] - x[None, :]), [0, 0, 1, 0, 1], ks=[1, 2, 3, 4, 100])
    {1: 0.4, 2: 0.6, 3: 0.8, 4: 1.0, 100: 1.0}
    """
    d = np.asarray(distances)
    if d.ndim != 2 or d.shape[0] != d.shape[1]:
        raise ValueError(f"distances must be a square (n, n) matrix, got shape {d.shape}")
    return _retrieval_scores(_matrix_blocks(d), labels, d.shape[0], ks, block_size)[0]


def map_at_r(distances: npt.ArrayLike, labels: npt.ArrayLike, *, block_size: int = DEFAULT_BLOCK) -> float:
    """MAP@R (Musgrave et al., "A Metric Learning Reality Check", 2020).

    R is the number of other items of the query's class; the score is the mean over the first R results of
    the precision at each relevant rank. Unlike Recall@1 it rewards putting the *whole* class first, so it
    separates embeddings that Recall@K rates as saturated.

    Same line as for `recall_at_k`: items 0 and 1 (R = 2) each get one hit, at rank 1, in their first two
    results (AP = 1/2); items 2, 3 and 4 have no hit within their first R (AP = 0): MAP@R = 1/5.

    >>> x = np.array([0.0, 1.0, 2.0, 5.0, 6.0])
    >>> round(map_at_r(np.abs(x[:, None] - x[None, :]), [0, 0, 1, 0, 1]), 6)
    0.2
    """
    d = np.asarray(distances)
    if d.ndim != 2 or d.shape[0] != d.shape[1]:
        raise ValueError(f"distances must be a square (n, n) matrix, got shape {d.shape}")
    return _retrieval_scores(_matrix_blocks(d), labels, d.shape[0], (1,), block_size)[1]


def query_gallery_scores(
    distances: npt.ArrayLike, query_labels: npt.ArrayLike, gallery_labels: npt.ArrayLike
) -> tuple[float, float]:
    """(Recall@1, MAP@R) of queries searched against a separate gallery: `distances` is (queries, gallery).

    How the images a person labels are searched for more like them: the queries are images the model never
    trained on, the gallery the ones it did. R is the number of gallery items of the query's class; a query
    whose class has none in the gallery is left out.

    Two queries (classes 0, 1) against a gallery at 0, 1, 4 with classes 0, 1, 1: query 0 (at 0.2) finds its
    one class-0 item first (AP 1); query 1 (at 0.9, R = 2) ranks class 1, class 0, class 1: one hit in its
    first two ranks, at rank 1 (AP 1/2). Both find a same-class item first.

    >>> q, g = np.array([0.2, 0.9]), np.array([0.0, 1.0, 4.0])
    >>> query_gallery_scores(np.abs(q[:, None] - g[None, :]), [0, 1], [0, 1, 1])
    (1.0, 0.75)
    """
    d = np.asarray(distances, dtype=np.float64)
    q = np.asarray(query_labels).reshape(-1)
    g = np.asarray(gallery_labels).reshape(-1)
    if d.shape != (len(q), len(g)):
        raise ValueError(f"distances must be (queries, gallery) = ({len(q)}, {len(g)}), got {d.shape}")
    order = np.argsort(d, axis=1, kind="stable")
    match = g[order] == q[:, None]
    relevant = match.sum(axis=1)
    keep = relevant > 0
    if not keep.any():
        raise ValueError("no query has an item of its class in the gallery")
    match, relevant = match[keep], relevant[keep]
    recall = float(match[:, 0].mean())
    ranks = np.arange(1, match.shape[1] + 1)[None, :]
    within_r = ranks <= relevant[:, None]
    precision = np.cumsum(match, axis=1) / ranks
    ap = np.where(match & within_r, precision, 0.0).sum(axis=1) / relevant
    return recall, float(ap.mean())


def query_gallery_metrics(
    queries: npt.ArrayLike, query_labels: npt.ArrayLike, gallery: npt.ArrayLike, gallery_labels: npt.ArrayLike
) -> dict[str, float]:
    """Recall@1 and MAP@R of embeddings searched against a gallery, float (cosine) and binary (Hamming on the
    signs): {"R@1", "MAP@R", "binary R@1", "binary MAP@R"}.

    By cosine both queries find their class first. By sign bits the second query, (-, +), is one bit from both
    (+, +) of class 0 and (-, -) of class 1; the tie goes to the earlier gallery item, of the wrong class.

    >>> q, g = np.array([[1.0, 0.2], [-1.0, 0.1]]), np.array([[0.9, 0.3], [-0.8, -0.2], [0.7, -0.1]])
    >>> query_gallery_metrics(q, [0, 1], g, [0, 1, 0])
    {'R@1': 1.0, 'MAP@R': 1.0, 'binary R@1': 0.5, 'binary MAP@R': 0.5}
    """
    q, g = np.asarray(queries), np.asarray(gallery)
    cosine = 1.0 - _l2_normalise(q) @ _l2_normalise(g).T
    hamming = ((q[:, None, :] > 0) != (g[None, :, :] > 0)).sum(-1)
    out: dict[str, float] = {}
    for rep, dist in (("", cosine), ("binary ", hamming)):
        out[f"{rep}R@1"], out[f"{rep}MAP@R"] = query_gallery_scores(dist, query_labels, gallery_labels)
    return out


# -------------------- clustering


def _contingency(labels_true: npt.ArrayLike, labels_pred: npt.ArrayLike) -> npt.NDArray[np.int64]:
    t = np.asarray(labels_true).reshape(-1)
    p = np.asarray(labels_pred).reshape(-1)
    if len(t) != len(p):
        raise ValueError(f"labels_true and labels_pred differ in length: {len(t)} vs {len(p)}")
    if len(t) == 0:
        raise ValueError("clustering metrics need at least one item")
    _, ti = np.unique(t, return_inverse=True)
    classes_p, pi = np.unique(p, return_inverse=True)
    table = np.zeros((int(ti.max()) + 1, len(classes_p)), dtype=np.int64)
    np.add.at(table, (ti.reshape(-1), pi.reshape(-1)), 1)
    return table


def _entropy(counts: npt.NDArray[np.int64]) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def normalized_mutual_info(labels_true: npt.ArrayLike, labels_pred: npt.ArrayLike) -> float:
    """NMI with arithmetic-mean normalisation, MI / ((H(true) + H(pred)) / 2), sklearn's default.

    It is invariant to renaming clusters, which is why it can score k-means output against class labels.
    Two single-cluster partitions agree perfectly and score 1 (sklearn's convention for 0 / 0).

    >>> normalized_mutual_info([0, 0, 1, 1], [5, 5, 7, 7])
    1.0
    >>> normalized_mutual_info([0, 0, 1, 1], [0, 1, 0, 1])
    0.0
    """
    table = _contingency(labels_true, labels_pred)
    if table.shape[0] == table.shape[1] == 1:
        return 1.0
    n = table.sum()
    rows = table.sum(axis=1)
    cols = table.sum(axis=0)
    i, j = np.nonzero(table)
    nij = table[i, j].astype(np.float64)
    mutual = float((nij / n * np.log(n * nij / (rows[i] * cols[j]).astype(np.float64))).sum())
    denom = (_entropy(rows) + _entropy(cols)) / 2.0
    if denom <= 0.0:
        return 1.0
    return float(np.clip(mutual / denom, 0.0, 1.0))


def clustering_f1(labels_true: npt.ArrayLike, labels_pred: npt.ArrayLike) -> float:
    """Pairwise F1 of a clustering (Oh Song et al., "Deep Metric Learning via Lifted Structured Feature
    Embedding", 2016): precision and recall over the pairs of items put in the same cluster.

    Counted from the contingency table (pairs inside cell, row and column), not by enumerating O(n^2) pairs.
    If neither partition puts any two items together they agree and the score is 1.

    Classes {0, 1, 2}, {3, 4} clustered as {0, 1}, {2, 3, 4}: 2 of the 4 predicted pairs are true pairs and 2
    of the 4 true pairs are found, so precision = recall = F1 = 0.5.

    >>> clustering_f1([0, 0, 0, 1, 1], [0, 0, 1, 1, 1])
    0.5
    """
    table = _contingency(labels_true, labels_pred)

    def pairs(counts: npt.NDArray[np.int64]) -> int:
        return int((counts * (counts - 1) // 2).sum())

    together = pairs(table)
    predicted = pairs(table.sum(axis=0))
    actual = pairs(table.sum(axis=1))
    if predicted == 0 and actual == 0:
        return 1.0
    if together == 0:
        return 0.0
    precision = together / predicted
    recall = together / actual
    return 2.0 * precision * recall / (precision + recall)


def kmeans_assignments(
    embeddings: npt.ArrayLike, num_clusters: int, seed: int = 0, niter: int = 20
) -> npt.NDArray[np.int64]:
    """Cluster index per row by spherical k-means (faiss) on L2-normalised rows.

    Spherical because the embeddings are compared by cosine: Euclidean k-means on raw vectors would let the
    norm, which retrieval ignores, decide clusters.
    """
    import faiss  # lazily: metrics without clustering should not pay faiss's import

    x = _l2_normalise(embeddings)
    n, d = x.shape
    if not 1 <= num_clusters <= n:
        raise ValueError(f"num_clusters must be between 1 and the number of items ({n}), got {num_clusters}")
    kmeans = faiss.Kmeans(
        d,
        num_clusters,
        niter=niter,
        seed=seed,
        spherical=True,
        verbose=False,
        # Cluster every point: faiss would otherwise subsample above 256 points per centroid.
        max_points_per_centroid=max(256, n),
    )
    kmeans.train(x)
    _, assigned = kmeans.index.search(x, 1)
    return np.asarray(assigned[:, 0], dtype=np.int64)


def _num_classes(labels: npt.ArrayLike) -> int:
    return len(np.unique(np.asarray(labels)))


def nmi(embeddings: npt.ArrayLike, labels: npt.ArrayLike, seed: int = 0) -> float:
    """NMI between the classes and a k-means clustering of the embeddings with k = number of classes."""
    return normalized_mutual_info(labels, kmeans_assignments(embeddings, _num_classes(labels), seed))


def f1_score(embeddings: npt.ArrayLike, labels: npt.ArrayLike, seed: int = 0) -> float:
    """Pairwise clustering F1 of a k-means clustering of the embeddings with k = number of classes."""
    return clustering_f1(labels, kmeans_assignments(embeddings, _num_classes(labels), seed))


# -------------------- evaluation


def evaluate(
    embeddings: npt.ArrayLike,
    labels: npt.ArrayLike,
    dims: Sequence[int],
    ks: Sequence[int] = (1, 2, 4, 8),
    with_clustering: bool = True,
    seed: int = 0,
    *,
    block_size: int = DEFAULT_BLOCK,
) -> dict[str, dict[int, dict[str, float]]]:
    """All metrics for both deployed representations at each nested dimension.

    Returns `{'float' | 'binary': {d: {'R@k'..., 'MAP@R', 'NMI', 'F1'}}}` for each prefix `x[:, :d]`: the
    model is trained so that prefixes are usable embeddings on their own, and the app may store fewer
    dimensions or only the sign bits, so each combination is scored as it would be searched (cosine for
    floats, Hamming for bits). Binary clustering runs k-means on the bits as +-1 vectors, whose cosine is an
    affine function of Hamming distance. Each dimension must be a multiple of 8 (bits are packed by bytes).
    """
    x = np.asarray(embeddings, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"embeddings must be (n, D), got shape {x.shape}")
    n, full = x.shape
    bad = [d for d in dims if not (1 <= d <= full and d % 8 == 0)]
    if bad or not dims:
        raise ValueError(f"dims must be non-empty multiples of 8 in [8, {full}], got {list(dims)}")
    results: dict[str, dict[int, dict[str, float]]] = {"float": {}, "binary": {}}
    num_classes = _num_classes(labels)
    for d in dims:
        prefix = np.ascontiguousarray(x[:, :d])
        signs = np.where(prefix > 0, 1.0, -1.0).astype(np.float32)
        for name, blocks, cluster_input in (
            ("float", _cosine_blocks(prefix), prefix),
            ("binary", _hamming_blocks(prefix), signs),
        ):
            recalls, mapr = _retrieval_scores(blocks, labels, n, ks, block_size)
            scores = {f"R@{k}": recalls[k] for k in ks}
            scores["MAP@R"] = mapr
            if with_clustering:
                assigned = kmeans_assignments(cluster_input, num_classes, seed)
                scores["NMI"] = normalized_mutual_info(labels, assigned)
                scores["F1"] = clustering_f1(labels, assigned)
            results[name][d] = scores
    return results
