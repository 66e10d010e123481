"""Retrieval and clustering metrics against hand-worked examples and brute-force references."""

from __future__ import annotations

import doctest
import itertools
import math

import numpy as np
import pytest

from trainer import metrics
from trainer.binary import binarize, pairwise_hamming
from trainer.metrics import (
    clustering_f1,
    cosine_distance_matrix,
    evaluate,
    f1_score,
    hamming_distance_matrix,
    kmeans_assignments,
    map_at_r,
    nmi,
    normalized_mutual_info,
    recall_at_k,
)


def _line(points: list[float]) -> np.ndarray:
    x = np.array(points)
    return np.abs(x[:, None] - x[None, :])


def brute_recall(distances: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Reference Recall@K with explicit loops: sort others by (distance, index), skip lone queries."""
    n = len(labels)
    hits = queries = 0
    for q in range(n):
        if sum(1 for j in range(n) if j != q and labels[j] == labels[q]) == 0:
            continue
        others = sorted((j for j in range(n) if j != q), key=lambda j: (distances[q, j], j))
        queries += 1
        hits += any(labels[j] == labels[q] for j in others[:k])
    return hits / queries


def brute_map_at_r(distances: np.ndarray, labels: np.ndarray) -> float:
    n = len(labels)
    total = 0.0
    queries = 0
    for q in range(n):
        r = sum(1 for j in range(n) if j != q and labels[j] == labels[q])
        if r == 0:
            continue
        others = sorted((j for j in range(n) if j != q), key=lambda j: (distances[q, j], j))
        found = 0
        ap = 0.0
        for rank, j in enumerate(others[:r], start=1):
            if labels[j] == labels[q]:
                found += 1
                ap += found / rank
        total += ap / r
        queries += 1
    return total / queries


def test_docstring_examples_hold() -> None:
    result = doctest.testmod(metrics, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 8
    assert result.failed == 0


def test_recall_hand_example_with_tie_and_clipping() -> None:
    # Points 0, 1, 2, 5, 6 with classes a, a, b, a, b.
    # q0 -> 1(a) hit at rank 1.  q1 -> 0 (d=1, a) and 2 (d=1, b) tie; lower index 0 first: hit at rank 1.
    # q2 (b) -> 1, 0, 3, 4: first b at rank 4.  q3 (a) -> 4(b), 2(b), 1(a): rank 3.
    # q4 (b) -> 3(a), 2(b): rank 2.
    d = _line([0, 1, 2, 5, 6])
    labels = np.array([0, 0, 1, 0, 1])
    assert recall_at_k(d, labels, ks=[1, 2, 3, 4, 1000]) == {1: 2 / 5, 2: 3 / 5, 3: 4 / 5, 4: 1.0, 1000: 1.0}


def test_tie_breaking_goes_to_lower_index() -> None:
    # Query 0 is equidistant from items 1 (other class) and 2 (same class): item 1 wins the tie.
    d = np.array([[0, 1, 1], [1, 0, 1], [1, 1, 0]], dtype=np.int64)
    labels = np.array([7, 8, 7])
    # q0: rank1 = item 1 (miss). q1: lone class, skipped. q2: rank1 = item 0 (hit).
    assert recall_at_k(d, labels, ks=[1, 2]) == {1: 0.5, 2: 1.0}


def test_self_is_excluded_even_when_a_duplicate_sits_at_distance_zero() -> None:
    # Items 0 and 1 are identical but of different classes; item 2 is far away and of class 0, a bit nearer
    # to item 1. Both class-0 queries find the class-1 item first; only dropping the row's own index (not
    # "whatever sits at distance 0") keeps item 1 in query 0's ranking.
    d = np.array([[0.0, 0.0, 5.0], [0.0, 0.0, 4.0], [5.0, 4.0, 0.0]])
    labels = np.array([0, 1, 0])
    assert recall_at_k(d, labels, ks=[1]) == {1: 0.0}
    assert recall_at_k(d, labels, ks=[2]) == {2: 1.0}


def test_map_at_r_hand_example() -> None:
    # Query 0 of class a has R = 3. Its ranking: 1 (a), 4 (b), 2 (a), 3 (a).
    # AP@R = (1/1 + 2/3) / 3 = 5/9 (item 3 falls outside the first R = 3).
    # Other queries are then computed by hand below from the same distances.
    positions = [0.0, 1.0, 3.0, 10.0, 2.0]
    d = _line(positions)
    labels = np.array([0, 0, 0, 0, 1])
    # q1 at 1: 0(d1,a) 4(d1,b) tie -> 0 first, then 4, 2(d2,a): R=3 -> (1 + 2/3)/3 = 5/9
    # q2 at 3: 4(d1,b) 1(d2,a) 0(d3,a): (1/2 + 2/3)/3 = 7/18
    # q3 at 10: 2(d7,a) 4(d8,b) 1(d9,a): (1 + 2/3)/3 = 5/9
    # q4 is the only b: skipped.
    expected = (5 / 9 + 5 / 9 + 7 / 18 + 5 / 9) / 4
    assert map_at_r(d, labels) == pytest.approx(expected)
    assert map_at_r(d, labels) == pytest.approx(brute_map_at_r(d, labels))


def test_map_at_r_is_one_only_when_each_class_comes_first() -> None:
    d = _line([0, 0.1, 0.2, 5, 5.1])
    assert map_at_r(d, [0, 0, 0, 1, 1]) == pytest.approx(1.0)
    assert recall_at_k(d, [0, 0, 0, 1, 1], ks=[1]) == {1: 1.0}


@pytest.mark.parametrize("block_size", [1, 7, 1024])
def test_recall_and_map_match_brute_force_on_random_float_data(block_size: int) -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(60, 16))
    labels = rng.integers(0, 8, size=60)
    d = cosine_distance_matrix(x)
    # Small ks rank only a few neighbours deep (partial sort); k = 100 > n - 1 ranks everything.
    for ks in ([1, 2, 4, 8], [100]):
        got = recall_at_k(d, labels, ks, block_size=block_size)
        for k in ks:
            assert got[k] == pytest.approx(brute_recall(d, labels, k))
    assert map_at_r(d, labels, block_size=block_size) == pytest.approx(brute_map_at_r(d, labels))


@pytest.mark.parametrize("block_size", [5, 1024])
def test_recall_and_map_match_brute_force_on_hamming_with_many_ties(block_size: int) -> None:
    rng = np.random.default_rng(4)
    x = rng.normal(size=(50, 8))  # 8 bits: distances in 0..8, ties everywhere
    labels = rng.integers(0, 5, size=50)
    d = hamming_distance_matrix(x)
    got = recall_at_k(d, labels, [1, 2, 4, 8], block_size=block_size)
    for k in (1, 2, 4, 8):
        assert got[k] == pytest.approx(brute_recall(d, labels, k))
    assert map_at_r(d, labels, block_size=block_size) == pytest.approx(brute_map_at_r(d, labels))


def test_distance_helpers() -> None:
    x = np.array([[3.0, 4.0], [-4.0, 3.0], [-3.0, -4.0]])
    np.testing.assert_allclose(cosine_distance_matrix(x), [[0, 1, 2], [1, 0, 1], [2, 1, 0]], atol=1e-6)
    rng = np.random.default_rng(0)
    y = rng.normal(size=(10, 24))
    h = hamming_distance_matrix(y)
    assert h.dtype == np.int64
    signs = y > 0
    for i, j in itertools.product(range(10), repeat=2):
        assert h[i, j] == int((signs[i] != signs[j]).sum())


def test_retrieval_argument_errors() -> None:
    d = _line([0, 1, 2])
    with pytest.raises(ValueError, match="square"):
        recall_at_k(d[:2], [0, 0], ks=[1])
    with pytest.raises(ValueError, match="labels"):
        recall_at_k(d, [0, 0], ks=[1])
    with pytest.raises(ValueError, match="k must be"):
        recall_at_k(d, [0, 0, 1], ks=[0])
    with pytest.raises(ValueError, match="no query"):
        map_at_r(d, [0, 1, 2])
    with pytest.raises(ValueError, match="NaN"):
        recall_at_k(np.where(d == 2, np.nan, d), [0, 0, 0], ks=[1])


def test_nmi_hand_contingency_table() -> None:
    # true: a a b b ; pred: x x x y. Contingency: a->(x:2), b->(x:1, y:1). N = 4.
    mi = 2 / 4 * math.log(4 * 2 / (2 * 3)) + 1 / 4 * math.log(4 * 1 / (2 * 3)) + 1 / 4 * math.log(4 * 1 / (2 * 1))
    h_true = math.log(2)
    h_pred = -(3 / 4 * math.log(3 / 4) + 1 / 4 * math.log(1 / 4))
    expected = mi / ((h_true + h_pred) / 2)
    assert expected == pytest.approx(0.3437, abs=1e-4)
    assert normalized_mutual_info([0, 0, 1, 1], [0, 0, 0, 1]) == pytest.approx(expected)
    # Symmetric in its arguments, invariant to renaming.
    assert normalized_mutual_info([0, 0, 0, 1], ["p", "p", "q", "q"]) == pytest.approx(expected)


def test_nmi_extremes() -> None:
    labels = np.repeat(np.arange(6), 5)
    assert normalized_mutual_info(labels, labels) == pytest.approx(1.0)
    assert normalized_mutual_info(labels, (labels + 3) * 10) == pytest.approx(1.0)
    rng = np.random.default_rng(1)
    a = rng.integers(0, 5, size=20000)
    b = rng.integers(0, 5, size=20000)
    assert normalized_mutual_info(a, b) < 0.01
    assert normalized_mutual_info([1, 1, 1], [2, 2, 2]) == 1.0


def test_clustering_f1_hand_example_and_brute_force() -> None:
    # Classes {0,1,2},{3,4}; clusters {0,1},{2,3,4}. True pairs: 01 02 12 34. Predicted: 01 23 24 34.
    # Shared: 01, 34 -> precision 2/4, recall 2/4, F1 0.5.
    assert clustering_f1([0, 0, 0, 1, 1], [0, 0, 1, 1, 1]) == pytest.approx(0.5)
    assert clustering_f1([0, 0, 1, 1], [3, 3, 4, 4]) == pytest.approx(1.0)
    # Everything in one cluster: precision 2/6 (pairs 01, 23 out of 6), recall 1,
    # so F1 = 2 * (1/3) / (4/3) = 1/2.
    assert clustering_f1([0, 0, 1, 1], [0, 0, 0, 0]) == pytest.approx(0.5)

    rng = np.random.default_rng(2)
    t = rng.integers(0, 4, size=40)
    p = rng.integers(0, 5, size=40)
    pairs = list(itertools.combinations(range(40), 2))
    tp = sum(1 for i, j in pairs if t[i] == t[j] and p[i] == p[j])
    pred = sum(1 for i, j in pairs if p[i] == p[j])
    true = sum(1 for i, j in pairs if t[i] == t[j])
    precision, recall = tp / pred, tp / true
    assert clustering_f1(t, p) == pytest.approx(2 * precision * recall / (precision + recall))


def _blobs(n_per: int, classes: int, dim: int, spread: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dim))
    labels = np.repeat(np.arange(classes), n_per)
    x = centres[labels] + spread * rng.normal(size=(len(labels), dim))
    return x.astype(np.float32), labels


def test_kmeans_metrics_on_separated_and_random_data() -> None:
    # One random-init k-means run (the literature's protocol) can merge two blobs and split another, so
    # separated data is asserted to score high rather than exactly 1.
    x, labels = _blobs(20, 5, 32, 0.05, seed=0)
    # Over k-means seeds 0..5 these range 0.69-0.89 (NMI) and 0.56-0.81 (F1); noise scores ~0.05 / ~0.2.
    assert nmi(x, labels) > 0.6
    assert f1_score(x, labels) > 0.5
    rng = np.random.default_rng(5)
    noise = rng.normal(size=x.shape).astype(np.float32)
    assert nmi(noise, labels) < 0.3
    assert f1_score(noise, labels) < 0.4
    # Same seed, same clustering.
    assert np.array_equal(kmeans_assignments(noise, 5, seed=3), kmeans_assignments(noise, 5, seed=3))


def test_lone_query_blocks_are_skipped() -> None:
    # With block_size 2, the first block holds only the two lone queries (classes 5 and 6).
    d = _line([0, 10, 20, 21, 22])
    assert recall_at_k(d, [5, 6, 1, 1, 1], ks=[1], block_size=2) == {1: 1.0}
    assert map_at_r(d, [5, 6, 1, 1, 1], block_size=2) == pytest.approx(1.0)


def test_evaluate_structure_and_consistency() -> None:
    x, labels = _blobs(8, 6, 32, 0.8, seed=1)
    out = evaluate(x, labels, dims=[8, 32], block_size=13)
    assert set(out) == {"float", "binary"}
    for rep in out.values():
        assert set(rep) == {8, 32}
        for scores in rep.values():
            assert set(scores) == {"R@1", "R@2", "R@4", "R@8", "MAP@R", "NMI", "F1"}
            assert all(0.0 <= v <= 1.0 for v in scores.values())
    # Blocked scoring from embeddings agrees with the public functions on full matrices.
    assert out["float"][32]["R@1"] == pytest.approx(recall_at_k(cosine_distance_matrix(x), labels, [1])[1])
    hamming8 = pairwise_hamming(binarize(x[:, :8]))
    assert out["binary"][8]["R@4"] == pytest.approx(recall_at_k(hamming8, labels, [4])[4])
    assert out["binary"][8]["MAP@R"] == pytest.approx(map_at_r(hamming8, labels))
    # Recall is monotone in k, and the full float embedding beats 8 sign bits on this data.
    f = out["float"][32]
    assert f["R@1"] <= f["R@2"] <= f["R@4"] <= f["R@8"]
    assert f["MAP@R"] >= out["binary"][8]["MAP@R"]


def test_evaluate_without_clustering_and_custom_ks() -> None:
    x, labels = _blobs(4, 3, 16, 0.5, seed=2)
    out = evaluate(x, labels, dims=[16], ks=(1, 10, 100), with_clustering=False)
    assert set(out["binary"][16]) == {"R@1", "R@10", "R@100", "MAP@R"}
    assert out["float"][16]["R@100"] == 1.0


def test_evaluate_rejects_bad_dims() -> None:
    x, labels = _blobs(4, 3, 16, 0.5, seed=2)
    for dims in ([], [12], [32], [0]):
        with pytest.raises(ValueError, match="dims"):
            evaluate(x, labels, dims=dims)
