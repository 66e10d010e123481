"""The method registry: every method trains, nested objectives stay independent, bad input raises."""

from __future__ import annotations

import pytest
import torch

from trainer.methods import METHODS, NestedObjective, build_objective, resolve_hparams

EXPECTED = {
    "normsoftmax", "arcface", "triplet", "triplet-batchhard", "contrastive", "margin", "multisimilarity",
    "multisimilarity-das", "triplet-das", "intra-batch",
}  # fmt: skip


def class_balanced_batch(dim: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(12, dim, generator=g)
    return x.requires_grad_(True), torch.arange(4).repeat_interleave(3)


def test_registry_has_the_documented_methods() -> None:
    assert set(METHODS) == EXPECTED
    for name, spec in METHODS.items():
        assert spec.name == name
        assert spec.summary and "\n" not in spec.summary and len(spec.summary) <= 110


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_method_gives_a_finite_loss_and_gradients(name: str) -> None:
    torch.manual_seed(0)
    objective = build_objective(name, dim=16, num_classes=4)
    objective.train()
    x, labels = class_balanced_batch()
    loss = objective(x, labels)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    for p in objective.parameters():
        assert p.grad is None or torch.isfinite(p.grad).all()


@pytest.mark.parametrize("name", ["normsoftmax", "arcface", "intra-batch"])
def test_nested_objective_has_one_set_of_parameters_per_dim(name: str) -> None:
    objective = build_objective(name, dim=16, num_classes=4, nested_dims=[4, 8, 16])
    assert isinstance(objective, NestedObjective) and objective.dims == (4, 8, 16)
    for d in (4, 8, 16):
        shapes = {tuple(p.shape) for p in objective[d].parameters()}
        assert (4, d) in shapes  # proxies / classifier of its own width
    ids = [{id(p) for p in objective[d].parameters()} for d in (4, 8, 16)]
    assert not (ids[0] & ids[1] or ids[1] & ids[2] or ids[0] & ids[2])


@pytest.mark.parametrize("name", ["normsoftmax", "arcface", "multisimilarity", "contrastive"])
def test_nested_loss_is_the_sum_of_the_prefix_losses(name: str) -> None:
    torch.manual_seed(0)
    objective = build_objective(name, dim=16, num_classes=4, nested_dims=[16, 4, 8])
    assert isinstance(objective, NestedObjective)
    x, labels = class_balanced_batch()
    parts = [objective[d](x[:, :d], labels) for d in (4, 8, 16)]
    assert objective(x, labels).item() == pytest.approx(sum(p.item() for p in parts), rel=1e-6)


def test_single_full_nested_dim_is_the_plain_objective() -> None:
    assert not isinstance(build_objective("triplet", 16, 4, nested_dims=[16]), NestedObjective)


def test_hyperparameters_override_defaults_and_accept_cli_strings() -> None:
    objective = build_objective("triplet", 16, 4, margin="0.3", mining="batch_hard")
    assert getattr(objective, "margin", None) == pytest.approx(0.3)
    assert getattr(objective, "mining", None) == "batch_hard"
    assert resolve_hparams("intra-batch", num_heads="4")["num_heads"] == 4
    assert resolve_hparams("normsoftmax") == {"temperature": 0.05}


def test_unknown_method_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="normsoftmax") as err:
        build_objective("softtriple", 16, 4)
    assert "multisimilarity-das" in str(err.value)


def test_unknown_or_mistyped_hyperparameter_raises() -> None:
    with pytest.raises(ValueError, match="temperature"):
        build_objective("normsoftmax", 16, 4, temprature=0.1)
    with pytest.raises(ValueError, match="float"):
        build_objective("normsoftmax", 16, 4, temperature="warm")
    with pytest.raises(ValueError, match="int"):
        build_objective("intra-batch", 16, 4, num_heads=1.5)
    with pytest.raises(ValueError):
        build_objective("triplet", 16, 4, mining="hardest")


def test_bad_nested_dims_raise() -> None:
    with pytest.raises(ValueError):
        build_objective("normsoftmax", 16, 4, nested_dims=[8, 32])
    with pytest.raises(ValueError):
        build_objective("normsoftmax", 16, 4, nested_dims=[])
