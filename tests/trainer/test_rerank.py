"""Re-ranking: on data where neighbourhoods carry information, both methods must improve MAP@R, float and binary."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.metrics import map_at_r, recall_at_k
from trainer.rerank import k_reciprocal, query_expansion


def clusters(n: int = 400, classes: int = 20, dim: int = 32, noise: float = 1.1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(classes, dim))
    labels = rng.integers(0, classes, n)
    return centres[labels] + rng.normal(size=(n, dim)) * noise, labels


def cosine(x: np.ndarray) -> np.ndarray:
    u = x / np.linalg.norm(x, axis=1, keepdims=True)
    return 1 - u @ u.T


def hamming(x: np.ndarray) -> np.ndarray:
    s = np.where(x > 0, 1.0, -1.0)
    return (x.shape[1] - s @ s.T) / 2


@pytest.mark.parametrize("binary", [False, True])
def test_both_rerankings_improve_map_at_r_on_clustered_data(binary: bool) -> None:
    x, y = clusters()
    base = hamming(x) if binary else cosine(x)
    expanded = query_expansion(x, base, n=2, binary=binary)
    reciprocal = k_reciprocal(base, k1=20, k2=6, lam=0.3)
    for d in (expanded, reciprocal):
        assert d.shape == base.shape and np.all(np.diag(d) == 0)
        assert map_at_r(d, y) > map_at_r(base, y) + 0.02
        assert recall_at_k(d, y, [1])[1] >= recall_at_k(base, y, [1])[1] - 0.01


def test_query_expansion_with_no_neighbour_changes_nothing() -> None:
    x, _y = clusters(n=50)
    base = cosine(x)
    assert np.allclose(query_expansion(x, base, n=0), base, atol=1e-9)
    h = hamming(x)
    assert np.array_equal(query_expansion(x, h, n=0, binary=True), h)


def test_k_reciprocal_with_lam_one_is_the_scaled_original() -> None:
    x, _y = clusters(n=60)
    base = cosine(x)
    scaled = base / base.max(axis=0)
    np.fill_diagonal(scaled, 0)
    assert np.allclose(k_reciprocal(base, k1=5, k2=1, lam=1.0), scaled)
