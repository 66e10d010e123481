"""Densely-Anchored Sampling: shapes, DFS scaling bounds, FIFO memories, gradients, eval identity."""

from __future__ import annotations

import pytest
import torch

from trainer.das import DASObjective, DenselyAnchoredSampling
from trainer.losses.triplet import TripletLoss


def batch(seed: int = 0, classes: int = 3, per_class: int = 2, dim: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(classes * per_class, dim, generator=g), torch.arange(classes).repeat_interleave(per_class)


def test_output_is_batch_plus_produced_with_anchor_labels() -> None:
    x, labels = batch()
    das = DenselyAnchoredSampling(8, produced_per_anchor=3)
    out, out_labels = das(x, labels)
    assert out.shape == (6 + 6 * 3, 8)
    assert out_labels.tolist() == labels.tolist() * 4
    # The real rows come first, unchanged up to the L2 normalisation the authors apply.
    assert torch.allclose(out[:6], torch.nn.functional.normalize(x, dim=1))
    assert torch.allclose(out.norm(dim=1), torch.ones(24), atol=1e-6)


def test_discriminative_channels_are_the_most_frequent_top_k() -> None:
    das = DenselyAnchoredSampling(6, topk_channels=2, normalize=False)
    x = torch.tensor(
        [
            [0.0, 5.0, 0.0, 0.0, 0.0, 4.0],  # class 0: dims 1, 5
            [0.0, 3.0, 0.0, 2.0, 0.0, 4.0],  # class 0: dims 1, 5
            [6.0, 0.0, 5.0, 0.0, 0.0, 0.0],  # class 1: dims 0, 2
            [6.0, 0.0, 0.0, 0.0, 5.0, 0.0],  # class 1: dims 0, 4
        ]
    )
    das(x, torch.tensor([0, 0, 1, 1]))
    assert das.frequency(0).tolist() == [0, 2, 0, 0, 0, 2]
    assert das.frequency(1).tolist() == [2, 0, 1, 0, 1, 0]
    assert sorted(das.discriminative_channels(0).tolist()) == [1, 5]
    # counts accumulate over batches: a second batch moves class 1's second channel from a tie to dim 4
    das(torch.tensor([[4.0, 0.0, 0.0, 0.0, 5.0, 0.0]]), torch.tensor([1]))
    assert das.frequency(1).tolist() == [3, 0, 1, 0, 2, 0]
    assert sorted(das.discriminative_channels(1).tolist()) == [0, 4]


def test_scaling_stays_in_range_on_class_channels_and_leaves_the_rest() -> None:
    low, high = 0.5, 2.0
    das = DenselyAnchoredSampling(
        8, topk_channels=3, produced_per_anchor=4, scale_range=(low, high), shift_scale=0.0, normalize=False
    )
    x, labels = batch(seed=1)
    out, _ = das(x, labels)
    produced = out[6:].reshape(4, 6, 8)
    for b in range(6):
        channels = das.discriminative_channels(int(labels[b])).tolist()
        others = [d for d in range(8) if d not in channels]
        ratio = produced[:, b, channels] / x[b, channels]
        assert ((ratio >= low - 1e-6) & (ratio <= high + 1e-6)).all()
        assert not torch.allclose(ratio, torch.ones_like(ratio))  # actually scaled
        assert torch.equal(produced[:, b, others], x[b, others].expand(4, -1))


def test_memory_is_fifo_per_class() -> None:
    das = DenselyAnchoredSampling(2, topk_channels=0, memory_per_class=3, normalize=False)
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0])
    c, d = torch.tensor([3.0, 3.0]), torch.tensor([5.0, 1.0])
    other = torch.tensor([[9.0, 9.0], [8.0, 9.0]])
    das(torch.stack([a, b, *other]), torch.tensor([0, 0, 1, 1]))
    assert das.memory(0).tolist() == [(a - b).tolist(), (b - a).tolist()]
    das(torch.stack([c, d]), torch.tensor([0, 0]))
    # four differences pushed into a memory of three: the oldest (a - b) is gone, order is oldest first
    assert das.memory(0).tolist() == [(b - a).tolist(), (c - d).tolist(), (d - c).tolist()]
    # class 1 kept its own memory
    assert das.memory(1).tolist() == [[1.0, 0.0], [-1.0, 0.0]]


def test_shift_adds_a_scaled_difference_from_the_class_memory() -> None:
    das = DenselyAnchoredSampling(4, topk_channels=0, shift_scale=0.5, produced_per_anchor=2, normalize=False)
    x, labels = batch(dim=4)
    out, _ = das(x, labels)
    produced = out[6:].reshape(2, 6, 4)
    for b in range(6):
        memory = das.memory(int(labels[b]))
        for k in range(2):
            shift = (produced[k, b] - x[b]) / 0.5
            assert torch.isclose(memory, shift, atol=1e-5).all(dim=1).any()


def test_produced_embeddings_keep_the_gradient_to_their_anchor() -> None:
    x, labels = batch()
    x.requires_grad_(True)
    out, _ = DenselyAnchoredSampling(8)(x, labels)
    for row in range(6, 24):
        (grad,) = torch.autograd.grad(out[row].sum(), x, retain_graph=True)
        anchor = (row - 6) % 6
        assert grad[anchor].abs().sum() > 0
        assert grad[[b for b in range(6) if b != anchor]].abs().sum() == 0

    out, _ = DenselyAnchoredSampling(8, detach=True)(x, labels)
    (grad,) = torch.autograd.grad(out[6:].sum(), x)
    assert grad.abs().sum() == 0


def test_eval_mode_is_identity() -> None:
    x, labels = batch()
    das = DenselyAnchoredSampling(8).eval()
    out, out_labels = das(x, labels)
    assert out is x and out_labels is labels
    assert das.memory(0).numel() == 0  # statistics untouched


def test_same_seed_same_production() -> None:
    x, labels = batch()
    first = DenselyAnchoredSampling(8, seed=5)(x, labels)[0]
    second = DenselyAnchoredSampling(8, seed=5)(x, labels)[0]
    third = DenselyAnchoredSampling(8, seed=6)(x, labels)[0]
    assert torch.equal(first, second) and not torch.equal(first, third)


def test_das_objective_trains_a_pair_loss() -> None:
    x, labels = batch(classes=4, per_class=3)
    x.requires_grad_(True)
    objective = DASObjective(TripletLoss(margin=0.2), DenselyAnchoredSampling(8))
    loss = objective(x, labels)
    loss.backward()
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_rejects_bad_settings() -> None:
    with pytest.raises(ValueError):
        DenselyAnchoredSampling(4, topk_channels=5)
    with pytest.raises(ValueError):
        DenselyAnchoredSampling(4, scale_range=(2.0, 0.5))
    with pytest.raises(ValueError):
        DenselyAnchoredSampling(4)(torch.zeros(2, 3), torch.tensor([0, 1]))
