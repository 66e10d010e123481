"""Margin loss (Wu et al. 2017) on a batch built so that distance-weighted sampling has exactly one choice."""

from __future__ import annotations

import math

import pytest
import torch

from trainer.losses.margin import MarginLoss

# Unit circle: class 0 at 0° and 180°, class 1 at 40° and 220°. Each anchor's only negative closer than the
# non-zero-loss cutoff 1.4 (≈ 88.9°) is 40° away; the other is 140° away (distance 1.879), never drawn.
ANGLES_DEG = [0.0, 180.0, 40.0, 220.0]
LABELS = torch.tensor([0, 0, 1, 1])


def embeddings() -> torch.Tensor:
    return torch.tensor(
        [[math.cos(math.radians(a)), math.sin(math.radians(a))] for a in ANGLES_DEG], requires_grad=True
    )


def test_value_by_hand_with_shared_beta() -> None:
    beta, margin = 1.2, 0.2
    d_ap = 2.0  # positives are antipodal
    d_an = 2 * math.sin(math.radians(20))  # 40° apart
    pos = max(0.0, d_ap - beta + margin)  # 1.0
    neg = max(0.0, beta - d_an + margin)  # 0.716
    expected = (4 * pos + 4 * neg) / 8  # four triplets, all eight pairs active
    loss = MarginLoss(beta=beta, margin=margin)(embeddings(), LABELS)
    assert loss.item() == pytest.approx(expected, abs=1e-5)


def test_value_by_hand_with_class_specific_beta_and_inactive_pairs() -> None:
    loss_fn = MarginLoss(beta=1.2, margin=0.2, num_classes=2)
    with torch.no_grad():
        loss_fn.beta.copy_(torch.tensor([0.4, 1.9]))
    d_an = 2 * math.sin(math.radians(20))
    # class 0 anchors, beta 0.4: pos 2 - 0.4 + 0.2 = 1.8; neg 0.4 - 0.684 + 0.2 < 0 (inactive)
    # class 1 anchors, beta 1.9: pos 2 - 1.9 + 0.2 = 0.3; neg 1.9 - 0.684 + 0.2 = 1.416
    total = 2 * 1.8 + 2 * 0.3 + 2 * (1.9 - d_an + 0.2)
    expected = total / 6  # divided by the six pairs with a non-zero loss
    assert loss_fn(embeddings(), LABELS).item() == pytest.approx(expected, abs=1e-5)


def test_gradient_reaches_embeddings_and_beta() -> None:
    x = embeddings()
    loss_fn = MarginLoss(beta=1.2, margin=0.2, num_classes=2)
    with torch.no_grad():
        loss_fn.beta.copy_(torch.tensor([0.4, 1.9]))
    loss_fn(x, LABELS).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    # d loss / d beta_c = (-(active positives of c) + (active negatives of c)) / (active pairs = 6):
    # class 0 has two active positives and no active negative, class 1 two of each.
    assert loss_fn.beta.grad is not None
    assert loss_fn.beta.grad.tolist() == pytest.approx([-2 / 6, 0.0], abs=1e-6)


def test_beta_is_fixed_without_learn_beta() -> None:
    loss_fn = MarginLoss(learn_beta=False)
    assert not list(loss_fn.parameters())
    assert loss_fn.beta.tolist() == [pytest.approx(1.2)]


def test_sampling_is_seeded() -> None:
    torch.manual_seed(0)
    x = torch.randn(12, 16)
    labels = torch.arange(4).repeat_interleave(3)
    a = MarginLoss(seed=3)(x, labels)
    b = MarginLoss(seed=3)(x, labels)
    assert a.item() == b.item()
