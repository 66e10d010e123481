"""ArcFace against a hand computation with explicit class weights."""

from __future__ import annotations

import math

import pytest
import torch

from trainer.losses.arcface import ArcFaceLoss


def softmax_ce(logits: list[float], target: int) -> float:
    top = max(logits)
    return -(logits[target] - top - math.log(sum(math.exp(v - top) for v in logits)))


def make(margin: float, scale: float, easy_margin: bool = False) -> ArcFaceLoss:
    loss = ArcFaceLoss(num_classes=2, dim=2, margin=margin, scale=scale, easy_margin=easy_margin)
    with torch.no_grad():
        loss.weight.copy_(torch.tensor([[2.0, 0.0], [0.0, 0.5]]))  # directions 0° and 90°
    return loss


def at(deg: float, radius: float = 1.0) -> list[float]:
    return [radius * math.cos(math.radians(deg)), radius * math.sin(math.radians(deg))]


def test_value_by_hand_including_the_threshold_branch() -> None:
    m, s = 0.5, 4.0
    x = torch.tensor([at(30.0, 3.0), at(170.0), at(100.0)])
    labels = torch.tensor([0, 0, 1])
    # sample 0: θ_y = 30° -> target cos(30° + m); other class cos 60°
    l0 = softmax_ce([s * math.cos(math.radians(30) + m), s * math.cos(math.radians(60))], 0)
    # sample 1: θ_y = 170° > π - m (151.4°) -> cos θ - m·sin(π - m); other class at 80°
    l1 = softmax_ce([s * (math.cos(math.radians(170)) - m * math.sin(math.pi - m)), s * math.cos(math.radians(80))], 0)
    # sample 2: θ_y = 10° to class 1; other class 100°
    l2 = softmax_ce([s * math.cos(math.radians(100)), s * math.cos(math.radians(10) + m)], 1)
    loss = make(m, s)(x, labels)
    assert loss.item() == pytest.approx((l0 + l1 + l2) / 3, rel=1e-5)


def test_easy_margin_leaves_obtuse_angles_alone() -> None:
    m, s = 0.5, 4.0
    x = torch.tensor([at(120.0)])
    expected = softmax_ce([s * math.cos(math.radians(120)), s * math.cos(math.radians(30))], 0)
    assert make(m, s, easy_margin=True)(x, torch.tensor([0])).item() == pytest.approx(expected, rel=1e-5)


def test_zero_margin_is_normalised_softmax() -> None:
    x = torch.tensor([at(30.0), at(100.0)])
    first = softmax_ce([8 * math.cos(math.radians(30)), 8 * math.cos(math.radians(60))], 0)
    second = softmax_ce([8 * math.cos(math.radians(100)), 8 * math.cos(math.radians(10))], 1)
    expected = (first + second) / 2
    assert make(0.0, 8.0)(x, torch.tensor([0, 1])).item() == pytest.approx(expected, rel=1e-5)


def test_gradient_flows_to_embeddings_and_weights() -> None:
    x = torch.tensor([at(30.0, 2.0), at(170.0), at(100.0), at(90.0)], requires_grad=True)
    loss_fn = ArcFaceLoss(num_classes=2, dim=2)
    loss_fn(x, torch.tensor([0, 0, 1, 1])).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert loss_fn.weight.grad is not None and torch.isfinite(loss_fn.weight.grad).all()
