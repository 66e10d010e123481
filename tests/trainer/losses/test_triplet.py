"""Triplet loss against a brute-force reading of its definition on tiny 2-D batches."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pytest
import torch

from trainer.losses.triplet import TripletLoss

# Points on circles of different radii (the loss must normalise them), labels 0 0 1 1.
ANGLES_DEG = [0.0, 40.0, 60.0, 180.0]
RADII = [2.0, 1.0, 0.5, 3.0]
LABELS = [0, 0, 1, 1]


def embeddings() -> torch.Tensor:
    return torch.tensor(
        [
            [r * math.cos(math.radians(a)), r * math.sin(math.radians(a))]
            for a, r in zip(ANGLES_DEG, RADII, strict=True)
        ],
        requires_grad=True,
    )


def chord(i: int, j: int) -> float:
    """Distance between the unit vectors at angles i and j: 2 sin(Δθ / 2)."""
    return 2 * math.sin(math.radians(abs(ANGLES_DEG[i] - ANGLES_DEG[j])) / 2)


def reference(mining: str, margin: float, labels: Sequence[int] = LABELS) -> float:
    n = len(labels)
    hinge = [
        (a, p, k, max(0.0, chord(a, p) - chord(a, k) + margin))
        for a in range(n)
        for p in range(n)
        for k in range(n)
        if a != p and labels[a] == labels[p] and labels[k] != labels[a]
    ]
    if mining == "all":
        active = [h for *_, h in hinge if h > 0]
        return sum(active) / len(active)
    if mining == "batch_hard":
        losses = []
        for a in range(n):
            p = max((q for q in range(n) if q != a and labels[q] == labels[a]), key=lambda q: chord(a, q))
            k = min((q for q in range(n) if labels[q] != labels[a]), key=lambda q: chord(a, q))
            losses.append(max(0.0, chord(a, p) - chord(a, k) + margin))
        return sum(losses) / len(losses)
    losses = []
    for a in range(n):
        for p in range(n):
            if a == p or labels[a] != labels[p]:
                continue
            d_ap = chord(a, p)
            negatives = [k for k in range(n) if labels[k] != labels[a]]
            semi = [k for k in negatives if d_ap < chord(a, k) < d_ap + margin]
            k = min(semi or negatives, key=lambda q: chord(a, q))
            losses.append(max(0.0, d_ap - chord(a, k) + margin))
    return sum(losses) / len(losses)


@pytest.mark.parametrize("mining", ["semihard", "batch_hard", "all"])
@pytest.mark.parametrize("margin", [0.2, 0.5])
def test_matches_definition(mining: str, margin: float) -> None:
    x = embeddings()
    loss = TripletLoss(margin=margin, mining=mining)(x, torch.tensor(LABELS))
    assert loss.item() == pytest.approx(reference(mining, margin), abs=1e-5)


def test_semihard_value_by_hand() -> None:
    # Distances: d01 = 2 sin 20°, d02 = 2 sin 30° = 1, d03 = 2, d12 = 2 sin 10°, d13 = 2 sin 70°,
    # d23 = 2 sin 60°.
    # (0,1): window (0.684, 0.884) has no negative -> hardest, 2 (1.0): loss 0.684 - 1 + 0.2 < 0 -> 0
    # (1,0): window (0.684, 0.884): none -> hardest, 2 (0.347): 0.684 - 0.347 + 0.2 = 0.537
    # (2,3): d_ap = 1.732, negatives 1.0, 0.347: none in window -> 1 (0.347): 1.732 - 0.347 + 0.2 = 1.585
    # (3,2): d_ap = 1.732, negatives 2.0, 1.879: 1.879 in (1.732, 1.932) -> 1.732 - 1.879 + 0.2 = 0.053
    s = lambda deg: 2 * math.sin(math.radians(deg))  # noqa: E731
    expected = (0.0 + (s(20) - s(10) + 0.2) + (s(60) - s(10) + 0.2) + (s(60) - s(70) + 0.2)) / 4
    loss = TripletLoss(margin=0.2, mining="semihard")(embeddings(), torch.tensor(LABELS))
    assert loss.item() == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize("mining", ["semihard", "batch_hard", "all"])
def test_gradient_flows_to_embeddings(mining: str) -> None:
    x = embeddings()
    TripletLoss(mining=mining)(x, torch.tensor(LABELS)).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_no_triplet_gives_a_differentiable_zero() -> None:
    x = embeddings()
    loss = TripletLoss()(x, torch.tensor([5, 5, 5, 5]))
    loss.backward()
    assert loss.item() == 0.0 and x.grad is not None


def test_rejects_unknown_mining() -> None:
    with pytest.raises(ValueError, match="semihard"):
        TripletLoss(mining="hardest")
