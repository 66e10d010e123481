"""NormSoftmaxLoss: the value on a hand-worked example, gradient flow, and that it can be minimised."""

from __future__ import annotations

import math

import pytest
import torch

from trainer.losses.normsoftmax import NormSoftmaxLoss


def test_loss_equals_hand_computed_value() -> None:
    loss_fn = NormSoftmaxLoss(num_classes=3, dim=2, temperature=0.5)
    with torch.no_grad():
        # Unnormalised on purpose: only the directions (1,0), (0,1), (-1,-1)/sqrt2 may matter.
        loss_fn.proxies.copy_(torch.tensor([[2.0, 0.0], [0.0, 3.0], [-1.0, -1.0]]))
    embeddings = torch.tensor([[3.0, 4.0], [0.0, -2.0], [1.0, 1.0]])
    labels = torch.tensor([0, 1, 2])

    r = 1 / math.sqrt(2)
    # Cosines worked out by hand: (3,4)/5 = (0.6, 0.8); (0,-1); (1,1)/sqrt2.
    cosines = [
        [0.6, 0.8, -(0.6 + 0.8) * r],
        [0.0, -1.0, r],
        [r, r, -1.0],
    ]
    per_sample = []
    for row, y in zip(cosines, [0, 1, 2], strict=True):
        exps = [math.exp(c / 0.5) for c in row]
        per_sample.append(-math.log(exps[y] / sum(exps)))
    expected = sum(per_sample) / 3
    assert expected == pytest.approx(2.9037, abs=1e-4)  # (0.929 + 3.658 + 4.124) / 3

    assert loss_fn(embeddings, labels).item() == pytest.approx(expected, rel=1e-5)
    # The embedding scale is irrelevant too.
    assert loss_fn(7 * embeddings, labels).item() == pytest.approx(expected, rel=1e-5)
    logits = loss_fn.logits(embeddings)
    assert logits.shape == (3, 3)
    assert logits[0, 1].item() == pytest.approx(0.8 / 0.5, rel=1e-6)


def test_default_temperature_and_initialisation() -> None:
    torch.manual_seed(0)
    loss_fn = NormSoftmaxLoss(num_classes=10, dim=64)
    assert loss_fn.temperature == 0.05
    assert loss_fn.proxies.shape == (10, 64)
    bound = 1 / math.sqrt(64)
    assert loss_fn.proxies.abs().max().item() <= bound
    assert not any(name.endswith("bias") for name, _ in loss_fn.named_parameters())
    # Logits are cosines over the temperature, so bounded by 1 / 0.05.
    assert loss_fn.logits(torch.randn(5, 64)).abs().max().item() <= 20.0 + 1e-4


def test_gradients_reach_embeddings_and_proxies() -> None:
    torch.manual_seed(1)
    loss_fn = NormSoftmaxLoss(num_classes=4, dim=8)
    embeddings = torch.randn(6, 8, requires_grad=True)
    loss_fn(embeddings, torch.tensor([0, 1, 2, 3, 0, 1])).backward()
    assert embeddings.grad is not None and embeddings.grad.abs().sum() > 0
    assert loss_fn.proxies.grad is not None and loss_fn.proxies.grad.abs().sum() > 0


def test_sgd_on_separable_toy_data_drives_the_loss_down() -> None:
    torch.manual_seed(2)
    centres = torch.randn(4, 16)
    labels = torch.arange(4).repeat_interleave(8)
    inputs = centres[labels] + 0.1 * torch.randn(32, 16)
    model = torch.nn.Linear(16, 8)
    loss_fn = NormSoftmaxLoss(num_classes=4, dim=8)
    params = [*model.parameters(), *loss_fn.parameters()]
    losses = []
    for _ in range(30):
        loss = loss_fn(model(inputs), labels)
        grads = torch.autograd.grad(loss, params)
        # Plain SGD written out: torch.optim's first construction costs seconds of imports on a busy CPU.
        with torch.no_grad():
            for p, g in zip(params, grads, strict=True):
                p.sub_(0.05 * g)
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0]
    accuracy = (loss_fn.logits(model(inputs)).argmax(dim=1) == labels).float().mean().item()
    assert accuracy == 1.0


def test_rejects_bad_arguments_and_shapes() -> None:
    with pytest.raises(ValueError, match="temperature"):
        NormSoftmaxLoss(3, 4, temperature=0.0)
    with pytest.raises(ValueError, match="num_classes"):
        NormSoftmaxLoss(0, 4)
    with pytest.raises(ValueError, match="shape"):
        NormSoftmaxLoss(3, 4)(torch.randn(2, 5), torch.tensor([0, 1]))
