"""Intra-batch message passing: permutation equivariance, the loss it trains, and its absence at export."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from trainer.mpn import IntraBatchObjective, MessagePassingNetwork


@pytest.mark.parametrize("training", [True, False])
def test_message_passing_is_permutation_equivariant(training: bool) -> None:
    torch.manual_seed(0)
    mpn = MessagePassingNetwork(16, num_heads=2, num_layers=2).train(training)
    x = torch.randn(10, 16)
    perm = torch.randperm(10)
    with torch.no_grad():
        assert torch.allclose(mpn(x[perm]), mpn(x)[perm], atol=1e-5)


def test_messages_depend_on_the_rest_of_the_batch() -> None:
    torch.manual_seed(0)
    mpn = MessagePassingNetwork(8).eval()
    x = torch.randn(5, 8)
    with torch.no_grad():
        alone = mpn(x[:1])
        together = mpn(x)[:1]
    assert not torch.allclose(alone, together, atol=1e-4)


def test_objective_is_the_sum_of_both_cross_entropies() -> None:
    torch.manual_seed(0)
    objective = IntraBatchObjective(8, num_classes=3)
    x = torch.randn(6, 8, requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    loss = objective(x, labels)
    expected = F.cross_entropy(objective.classifier(objective.mpn(x)), labels) + F.cross_entropy(
        objective.backbone_classifier(x), labels
    )
    assert loss.item() == pytest.approx(expected.item(), abs=1e-6)
    loss.backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert all(p.grad is not None for p in objective.mpn.parameters())


def test_training_step_leaves_no_mpn_in_the_embedding_model() -> None:
    torch.manual_seed(0)
    model = nn.Linear(4, 8)
    objective = IntraBatchObjective(8, num_classes=2)
    before = model.weight.detach().clone()
    loss = objective(model(torch.randn(6, 4)), torch.tensor([0, 0, 0, 1, 1, 1]))
    loss.backward()
    with torch.no_grad():  # one plain SGD step on model and objective together, as the trainer does
        for p in [*model.parameters(), *objective.parameters()]:
            assert p.grad is not None
            p.sub_(0.1 * p.grad)
    assert set(model.state_dict()) == {"weight", "bias"}
    assert not any("mpn" in key or "classifier" in key for key in model.state_dict())
    assert not torch.equal(model.weight, before)  # the model did train through the objective


def test_rejects_dim_not_divisible_by_heads() -> None:
    with pytest.raises(ValueError, match="num_heads"):
        MessagePassingNetwork(7, num_heads=2)
