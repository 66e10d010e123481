"""Contrastive loss against a hand computation on a tiny 2-D batch."""

from __future__ import annotations

import math

import pytest
import torch

from trainer.losses.contrastive import ContrastiveLoss

ANGLES_DEG = [0.0, 20.0, 90.0, 100.0]
LABELS = [0, 0, 1, 1]


def embeddings() -> torch.Tensor:
    # radii differ on purpose: distances are between the normalised vectors
    return torch.tensor(
        [[(i + 1) * math.cos(math.radians(a)), (i + 1) * math.sin(math.radians(a))] for i, a in enumerate(ANGLES_DEG)],
        requires_grad=True,
    )


def chord(i: int, j: int) -> float:
    return 2 * math.sin(math.radians(abs(ANGLES_DEG[i] - ANGLES_DEG[j])) / 2)


@pytest.mark.parametrize(("pos_margin", "neg_margin"), [(0.0, 0.5), (0.2, 1.5)])
def test_matches_hadsell_definition(pos_margin: float, neg_margin: float) -> None:
    pos, neg = [], []
    for i in range(4):
        for j in range(i + 1, 4):
            d = chord(i, j)
            if LABELS[i] == LABELS[j]:
                pos.append(0.5 * max(0.0, d - pos_margin) ** 2)
            else:
                neg.append(0.5 * max(0.0, neg_margin - d) ** 2)
    expected = sum(pos) / len(pos) + sum(neg) / len(neg)
    loss = ContrastiveLoss(pos_margin, neg_margin)(embeddings(), torch.tensor(LABELS))
    assert loss.item() == pytest.approx(expected, abs=1e-6)


def test_value_by_hand_with_default_margins() -> None:
    # positives: (0,1) at 2 sin 10°, (2,3) at 2 sin 5°; negatives are 70° to 100° apart, the closest (1,2)
    # at 2 sin 35° = 1.147, all beyond 0.5: only the positive term counts, ½ d² averaged over the two pairs.
    expected = 0.5 * ((2 * math.sin(math.radians(10))) ** 2 + (2 * math.sin(math.radians(5))) ** 2) / 2
    loss = ContrastiveLoss()(embeddings(), torch.tensor(LABELS))
    assert loss.item() == pytest.approx(expected, abs=1e-6)


def test_gradient_flows_to_embeddings() -> None:
    x = embeddings()
    ContrastiveLoss(0.0, 1.5)(x, torch.tensor(LABELS)).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_rejects_inverted_margins() -> None:
    with pytest.raises(ValueError):
        ContrastiveLoss(pos_margin=0.6, neg_margin=0.5)
