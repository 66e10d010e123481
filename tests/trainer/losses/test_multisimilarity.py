"""Multi-similarity loss and miner against a plain-Python reading of Wang et al. (CVPR 2019)."""

from __future__ import annotations

import math

import pytest
import torch

from trainer.losses.multisimilarity import MultiSimilarityLoss, MultiSimilarityMiner

# Angles on the unit circle (radii vary: the loss works on cosine similarity); labels 0 0 1 1.
ANGLES_DEG = [0.0, 45.0, 30.0, 100.0]
LABELS = [0, 0, 1, 1]


def embeddings() -> torch.Tensor:
    return torch.tensor(
        [[(1 + i) * math.cos(math.radians(a)), (1 + i) * math.sin(math.radians(a))] for i, a in enumerate(ANGLES_DEG)],
        requires_grad=True,
    )


def cos_sim(i: int, j: int) -> float:
    return math.cos(math.radians(ANGLES_DEG[i] - ANGLES_DEG[j]))


def mined(epsilon: float) -> tuple[list[list[int]], list[list[int]]]:
    """Kept positives / negatives per anchor by Eq. 7-8 of the paper."""
    kept_pos, kept_neg = [], []
    for i in range(4):
        pos = [k for k in range(4) if k != i and LABELS[k] == LABELS[i]]
        neg = [k for k in range(4) if LABELS[k] != LABELS[i]]
        kept_neg.append([k for k in neg if cos_sim(i, k) > min(cos_sim(i, q) for q in pos) - epsilon])
        kept_pos.append([k for k in pos if cos_sim(i, k) < max(cos_sim(i, q) for q in neg) + epsilon])
    return kept_pos, kept_neg


def reference(alpha: float, beta: float, base: float, epsilon: float | None) -> float:
    if epsilon is None:
        kept_pos = [[k for k in range(4) if k != i and LABELS[k] == LABELS[i]] for i in range(4)]
        kept_neg = [[k for k in range(4) if LABELS[k] != LABELS[i]] for i in range(4)]
    else:
        kept_pos, kept_neg = mined(epsilon)
    total = 0.0
    for i in range(4):
        total += math.log(1 + sum(math.exp(-alpha * (cos_sim(i, k) - base)) for k in kept_pos[i])) / alpha
        total += math.log(1 + sum(math.exp(beta * (cos_sim(i, k) - base)) for k in kept_neg[i])) / beta
    return total / 4


def test_miner_keeps_the_pairs_of_the_epsilon_rule() -> None:
    pos, neg = mined(0.1)
    # anchor 0: positive 1 at cos 45° = 0.707; negatives at cos 30° = 0.866 and cos 100° < 0.
    #   -> negative 2 kept (0.866 > 0.607), negative 3 not; positive kept (0.707 < 0.966).
    # anchor 1: positive 0 at 0.707; negatives at cos 15° = 0.966 (2) and cos 55° = 0.574 (3)
    #   -> 2 kept, 3 not (0.574 < 0.607); positive kept (0.707 < 1.066).
    # anchor 2: positive 3 at cos 70° = 0.342; negatives at 0.866 (0) and 0.966 (1): both kept;
    #   positive kept (0.342 < 1.066).
    # anchor 3: positive 2 at 0.342; negatives cos 100° = -0.174 and cos 55° = 0.574: 1 kept (0.574 > 0.242),
    #   0 not; positive kept (0.342 < 0.674).
    assert pos == [[1], [0], [3], [2]]
    assert neg == [[2], [2], [0, 1], [1]]
    pa, pp, na, nn_ = MultiSimilarityMiner(epsilon=0.1)(embeddings(), torch.tensor(LABELS))
    assert sorted(zip(pa.tolist(), pp.tolist(), strict=True)) == [(0, 1), (1, 0), (2, 3), (3, 2)]
    assert sorted(zip(na.tolist(), nn_.tolist(), strict=True)) == [
        (0, 2),
        (1, 2),
        (2, 0),
        (2, 1),
        (3, 1),
    ]


def test_miner_drops_well_separated_positives() -> None:
    # A positive far more similar than any negative is not informative and is dropped.
    x = torch.tensor([[1.0, 0.0], [0.99, 0.14], [0.0, 1.0], [-0.1, 0.99]])
    pa, _, na, _ = MultiSimilarityMiner(epsilon=0.1)(x, torch.tensor([0, 0, 1, 1]))
    assert pa.numel() == 0 and na.numel() == 0


@pytest.mark.parametrize(("alpha", "beta", "base"), [(2.0, 50.0, 0.5), (1.0, 10.0, 0.3)])
def test_loss_matches_definition_with_mining(alpha: float, beta: float, base: float) -> None:
    loss = MultiSimilarityLoss(alpha=alpha, beta=beta, base=base, epsilon=0.1)(embeddings(), torch.tensor(LABELS))
    assert loss.item() == pytest.approx(reference(alpha, beta, base, 0.1), rel=1e-5)


def test_loss_matches_definition_without_mining() -> None:
    loss = MultiSimilarityLoss(mine=False)(embeddings(), torch.tensor(LABELS))
    assert loss.item() == pytest.approx(reference(2.0, 50.0, 0.5, None), rel=1e-5)
    # mining matters: dropping the three easy negatives changes the loss (visibly at a small beta)
    loss = MultiSimilarityLoss(alpha=1.0, beta=2.0, base=0.3, mine=False)(embeddings(), torch.tensor(LABELS))
    assert loss.item() == pytest.approx(reference(1.0, 2.0, 0.3, None), rel=1e-5)
    assert abs(reference(1.0, 2.0, 0.3, None) - reference(1.0, 2.0, 0.3, 0.1)) > 1e-3


def test_gradient_flows_to_embeddings() -> None:
    x = embeddings()
    MultiSimilarityLoss()(x, torch.tensor(LABELS)).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_large_beta_does_not_overflow() -> None:
    x = torch.tensor([[1.0, 0.0], [1.0, 0.01], [1.0, 0.02], [1.0, 0.03]], requires_grad=True)
    loss = MultiSimilarityLoss(beta=500.0)(x, torch.tensor([0, 0, 1, 1]))
    loss.backward()
    assert torch.isfinite(loss) and x.grad is not None and torch.isfinite(x.grad).all()
