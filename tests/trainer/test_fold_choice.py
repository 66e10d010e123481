"""Choosing the epoch on folds of the training images (trainer.fold_choice), on tiny generated data.

The small-folder recipe freezes the whole backbone (`trainable_stages=0`, its feature maps cached): there the
images set aside to choose the epoch train as well, and folds of every training image choose.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from imagegen import make_labelled_folder
from safetensors.torch import load_file

import trainer.fold_choice as fold_module
from trainer import epoch_choice
from trainer.card import model_paths
from trainer.data import LabelledFolder, scan_labelled_folder
from trainer.fit import FitCallbacks, FitConfig, _Trainer, fit
from trainer.folders import carve_validation
from trainer.progress import Cancelled

CLASSES, PER_CLASS = 4, 10


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> LabelledFolder:
    return scan_labelled_folder(make_labelled_folder(tmp_path_factory.mktemp("folds") / "f", CLASSES, PER_CLASS))


def head_only(**overrides: Any) -> FitConfig:
    base: dict[str, Any] = dict(
        dim=64, epochs=3, warmup_epochs=0, classes_per_batch=4, per_class=3, lr=0.05, proxy_lr_mult=10.0,
        trainable_stages=0, cache_trunk=True, cache_views=1, crop_size=64, num_workers=0, device="cpu",
        choice_folds=3,
    )  # fmt: skip
    base.update(overrides)
    return FitConfig(**base)


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(model_paths(path)[0]))


def test_the_images_set_aside_train_too_and_folds_choose(folder: LabelledFolder, tmp_path: Path) -> None:
    fitted, chooser = carve_validation(folder, "images")
    assert chooser is not None and len(fitted.samples) < len(folder.samples)
    messages: list[str] = []
    result = fit(fitted, tmp_path / "m", head_only(epochs=5), selection=chooser,
                 callbacks=FitCallbacks(on_message=messages.append))  # fmt: skip
    assert f"{len(folder.samples)} images" in result.card.trained_on[0]
    assert "3 folds" in result.card.recipe["chosen_on"]
    assert any("folds of the training images" in m for m in messages), messages
    scored = [h["epoch"] for h in result.history if "chosen on R@1" in h]
    assert scored == [0, 4, 5]  # the start, and the epochs after the first drop of the rate (60 % of 5 epochs)
    assert result.kept_epoch in scored


def test_every_fold_judges_a_copy_that_never_trained_on_its_images(
    folder: LabelledFolder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    judged: list[tuple[set[int], set[int]]] = []
    trained: list[set[int]] = []
    real_judge, real_step = fold_module._judge, _Trainer._step

    def judge(trainer: Any, pooled: Any, labels: Any, fold: Any, rest: Any) -> dict[str, float]:
        judged.append((set(fold.tolist()), set(rest.tolist())))
        return real_judge(trainer, pooled, labels, fold, rest)

    def step(self: Any, images: torch.Tensor, labels: torch.Tensor, from_cache: bool, warm: bool) -> float | None:
        # Each cached image is its own feature maps: find which training images this batch holds.
        assert self.trunk_cache is not None
        flat = self.trunk_cache[:, 0].flatten(1).float()
        for row in images.flatten(1).float():
            trained[-1].add(int(torch.cdist(row[None], flat).argmin()))
        return real_step(self, images, labels, from_cache, warm)

    monkeypatch.setattr(fold_module, "_judge", judge)
    monkeypatch.setattr(_Trainer, "_step", step)
    monkeypatch.setattr(fold_module.ClassBalancedSampler, "set_epoch", _new_fold_on_epoch_zero(trained))
    fitted, chooser = carve_validation(folder, "images")
    fit(fitted, tmp_path / "m", head_only(epochs=1), selection=chooser)
    every = set(range(len(folder.samples)))
    fold_sets: list[set[int]] = []
    for fold, rest in judged:  # each fold judges its copy at the start and after the epoch
        assert fold.isdisjoint(rest) and fold | rest == every
        if fold not in fold_sets:
            fold_sets.append(fold)
    assert len(fold_sets) == 3 and sum(len(f) for f in fold_sets) == len(every)
    for images, fold in zip(trained[:3], fold_sets, strict=True):
        assert images and images.isdisjoint(fold), "a fold's copy trained on an image that judges it"


def _new_fold_on_epoch_zero(trained: list[set[int]]) -> Any:
    real = fold_module.ClassBalancedSampler.set_epoch

    def set_epoch(self: Any, epoch: int) -> None:
        if epoch == 0:
            trained.append(set())
        real(self, epoch)

    return set_epoch


def test_the_start_is_kept_when_training_only_hurts(folder: LabelledFolder, tmp_path: Path) -> None:
    start = fit(folder, tmp_path / "start", head_only(epochs=0), selection=None)
    fitted, chooser = carve_validation(folder, "images")
    result = fit(fitted, tmp_path / "m", head_only(lr=100.0, proxy_lr_mult=1.0), selection=chooser)
    assert result.kept_epoch == 0
    assert "chosen on R@1" in result.history[0]
    expected, got = weights(start.model_path), weights(result.model_path)
    torch.testing.assert_close(got["embedding.weight"], expected["embedding.weight"])


def test_a_resumed_run_keeps_the_fold_choice_without_choosing_again(
    folder: LabelledFolder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fitted, chooser = carve_validation(folder, "images")
    reference = fit(fitted, tmp_path / "reference", head_only(), selection=chooser)
    steps: list[int] = []
    with pytest.raises(Cancelled):
        fit(fitted, tmp_path / "m", head_only(checkpoint_every=1), selection=chooser,
            callbacks=FitCallbacks(on_batch=lambda s, *_: steps.append(s)), cancel=lambda: len(steps) >= 4)  # fmt: skip
    calls: list[int] = []
    real = fold_module.choose_epoch_by_folds
    monkeypatch.setattr("trainer.fit.choose_epoch_by_folds", lambda *a: calls.append(1) or real(*a))
    result = fit(fitted, tmp_path / "m", head_only(checkpoint_every=1), selection=chooser)
    assert calls == []
    assert result.kept_epoch == reference.kept_epoch


def test_folds_need_three_images_in_every_class() -> None:
    labels = np.array([0] * 10 + [1] * 2)
    assert epoch_choice.usable_folds(labels, 5) == 0
    assert epoch_choice.usable_folds(np.array([0] * 10 + [1] * 3), 5) == 5


def test_the_proxies_learn_at_their_own_rate(folder: LabelledFolder, tmp_path: Path) -> None:
    trainer = _Trainer(folder, tmp_path / "m", head_only(lr=0.1, proxy_lr_mult=10.0), None, "efficientnet_lite0",
                       None, FitCallbacks(), lambda: False)  # fmt: skip
    rates = {id(p): g["lr"] for g in trainer.optimizer.param_groups for p in g["params"]}
    assert all(rates[id(p)] == pytest.approx(1.0) for p in trainer.objective.parameters())
    assert all(rates[id(p)] == pytest.approx(0.1) for p in trainer.model.new_layer_parameters())
