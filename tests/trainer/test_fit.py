"""The training loop on tiny generated data: it learns, resumes exactly, exports a usable model, guards NaNs.

Speed: 64 px images and crops, only the last backbone stage trains (`trainable_stages=1`) and the frozen
stages are cached (`cache_trunk=True`), so a run is a second or two on a CPU. Retrieval is measured at the
training resolution (the model card is told to embed 64 px centre crops), on the training images.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from imagegen import make_labelled_folder
from safetensors.torch import load_file
from torch import nn

import trainer.checkpoint_file as checkpoint_file
import trainer.fit as fit_module
from trainer import epoch_choice
from trainer.backbones import backbone_stages
from trainer.card import ModelCard, model_paths
from trainer.data import ImageDataset, LabelledFolder, scan_labelled_folder
from trainer.evaluation import embed_folder
from trainer.fit import FitCallbacks, FitConfig, FitError, fit
from trainer.images import load_rgb, preprocess_pil
from trainer.methods import NestedObjective
from trainer.metrics import cosine_distance_matrix, recall_at_k
from trainer.model import EmbeddingModel, load_model
from trainer.progress import Cancelled

BUNDLED_MODEL = Path(__file__).resolve().parents[2] / "resources" / "models" / "default"
CROP = 64
RESIZE = round(CROP * 256 / 224)  # what fit uses for crop_size=64 on EfficientNet-Lite0 (resize 256 @ 224)
CLASSES, PER_CLASS = 4, 8


@pytest.fixture(scope="module")
def train_folder(tmp_path_factory: pytest.TempPathFactory) -> LabelledFolder:
    return scan_labelled_folder(make_labelled_folder(tmp_path_factory.mktemp("fit") / "train", CLASSES, PER_CLASS))


def config(**overrides: Any) -> FitConfig:
    base: dict[str, Any] = dict(
        dim=64, epochs=2, warmup_epochs=0, classes_per_batch=4, per_class=4, batches_per_epoch=8, lr=0.05,
        trainable_stages=1, cache_trunk=True, crop_size=CROP, num_workers=0, device="cpu",
    )  # fmt: skip
    base.update(overrides)
    return FitConfig(**base)


def run_dir(out: Path) -> Path:
    return out.with_name(out.name + ".run")


def recall_at_1(model_path: Path, folder: LabelledFolder) -> float:
    """R@1 of the exported model on `folder`, embedding 64 px centre crops (the training resolution)."""
    model = load_model(model_path)
    model.card.input_size, model.card.resize_size = CROP, RESIZE
    _paths, labels, emb = embed_folder(model, folder, "cpu")
    assert len(labels) == len(folder.samples)
    return recall_at_k(cosine_distance_matrix(emb), labels, [1])[1]


def embedding_weight(model: EmbeddingModel) -> torch.Tensor:
    assert isinstance(model.embedding, nn.Linear)
    return model.embedding.weight.detach()


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(model_paths(path)[0]))


class Recorder:
    """FitCallbacks that remember every call."""

    def __init__(self) -> None:
        self.steps: list[int] = []
        self.losses: list[float] = []
        self.epochs: list[tuple[int, dict[str, float]]] = []
        self.messages: list[str] = []

    def on_batch(self, step: int, _epoch: int, loss: float, _lr: float) -> None:
        self.steps.append(step)
        self.losses.append(loss)

    def callbacks(self) -> FitCallbacks:
        return FitCallbacks(
            on_batch=self.on_batch,
            on_epoch=lambda epoch, metrics: self.epochs.append((epoch, metrics)),
            on_message=self.messages.append,
        )


# -- learning -------------------------------------------------------------------------------------------


def test_two_epochs_raise_recall_on_the_training_images(train_folder: LabelledFolder, tmp_path: Path) -> None:
    start = fit(train_folder, tmp_path / "start", config(epochs=0))  # the starting model: PCA-initialised
    # The control is the same run with lr=0. It is not the starting model: the trainable stage's batch-norm
    # statistics still adapt to the data, which alone lifts R@1 a little; only the gradient steps differ.
    control = fit(train_folder, tmp_path / "control", config(lr=0.0, batches_per_epoch=16))
    trained = fit(train_folder, tmp_path / "trained", config(batches_per_epoch=16))

    before = recall_at_1(start.model_path, train_folder)
    after_control = recall_at_1(control.model_path, train_folder)
    after = recall_at_1(trained.model_path, train_folder)
    chance = (PER_CLASS - 1) / (CLASSES * PER_CLASS - 1)
    assert chance < before < 0.6  # ImageNet features alone are far from solving it ...
    assert after >= before + 0.4  # ... two epochs of training nearly do (about 0.97 over seeds 0-3) ...
    assert after >= after_control + 0.25  # ... and it is the learning that does it (control at most 0.66)
    losses = [h["loss"] for h in trained.history if h["epoch"]]
    assert losses[-1] < losses[0]


def test_warm_up_trains_only_the_new_layers(train_folder: LabelledFolder, tmp_path: Path) -> None:
    start = fit(train_folder, tmp_path / "start", config(epochs=0))
    warm = fit(train_folder, tmp_path / "warm", config(epochs=1, warmup_epochs=1, batches_per_epoch=3))
    before, after = weights(start.model_path), weights(warm.model_path)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"embedding.weight"}


def test_fit_without_the_trunk_cache(train_folder: LabelledFolder, tmp_path: Path) -> None:
    rec = Recorder()
    cfg = config(cache_trunk=False, epochs=1, batches_per_epoch=2, classes_per_batch=2, per_class=2)
    result = fit(train_folder, tmp_path / "m", cfg, callbacks=rec.callbacks())
    assert rec.steps == [1, 2]
    assert all(math.isfinite(x) for x in rec.losses)
    assert not list(run_dir(tmp_path / "m").glob("trunk-cache*"))

    torch.manual_seed(0)
    pretrained = EmbeddingModel(ModelCard.for_backbone("p", "efficientnet_lite0", 64), pretrained=True)
    trained = load_model(result.model_path)
    stages_before = backbone_stages(pretrained.backbone)
    stages_after = backbone_stages(trained.backbone)
    for frozen_before, frozen_after in zip(stages_before[:-1], stages_after[:-1], strict=True):
        for (name, a), b in zip(frozen_before.state_dict().items(), frozen_after.state_dict().values(), strict=True):
            assert torch.equal(a, b), f"frozen parameter {name} changed"
    last_before, last_after = stages_before[-1].state_dict(), stages_after[-1].state_dict()
    assert any(not torch.equal(last_before[k], last_after[k]) for k in last_before)
    # PCA initialisation from the full pipeline's pooled features, then two steps: rows still near-orthonormal.
    w = embedding_weight(trained)
    torch.testing.assert_close(w @ w.T, torch.eye(64), atol=0.1, rtol=0)  # a default init is far off (0.7)


# -- PCA initialisation ---------------------------------------------------------------------------------


def pooled_features(model: EmbeddingModel, folder: LabelledFolder) -> torch.Tensor:
    arrays = np.stack([preprocess_pil(load_rgb(p, min_side=RESIZE), RESIZE, CROP) for p, _ in folder.samples])
    with torch.inference_mode():
        return model.pooled_features(model.normalize_uint8(torch.from_numpy(arrays))).double()


def test_pca_init_is_a_rotation_ordered_by_variance(train_folder: LabelledFolder, tmp_path: Path) -> None:
    result = fit(train_folder, tmp_path / "m", config(epochs=0, dim=None))
    model = load_model(result.model_path)
    assert model.card.dim == model.card.feature_dim == 1280 and model.card.has_embedding_layer
    w = embedding_weight(model).double()
    torch.testing.assert_close(w @ w.T, torch.eye(1280, dtype=torch.float64), atol=1e-4, rtol=0)

    x = pooled_features(model, train_folder)
    projected = (x - x.mean(0)) @ w.T
    var = projected.var(0)
    n_informative = len(train_folder.samples) - 1  # the rank of the centred sample
    top = var[:n_informative]
    assert torch.all(top[1:] <= top[:-1] * 1.01 + 1e-6), "components not ordered by variance"
    assert var[n_informative:].sum() < 1e-3 * var.sum()
    # At full width the rotation keeps cosine retrieval of the pretrained backbone exactly.
    emb = x @ w.T
    np.testing.assert_allclose(cosine_distance_matrix(emb.numpy()), cosine_distance_matrix(x.numpy()), atol=1e-4)


def test_pca_init_at_a_smaller_width_keeps_orthonormal_rows(train_folder: LabelledFolder, tmp_path: Path) -> None:
    result = fit(train_folder, tmp_path / "m", config(epochs=0, dim=64))
    w = embedding_weight(load_model(result.model_path)).double()
    assert w.shape == (64, 1280)
    torch.testing.assert_close(w @ w.T, torch.eye(64, dtype=torch.float64), atol=1e-4, rtol=0)


def test_without_pca_init_the_layer_keeps_its_seeded_initialisation(
    train_folder: LabelledFolder, tmp_path: Path
) -> None:
    result = fit(train_folder, tmp_path / "m", config(epochs=0, pca_init=False, seed=3))
    w = embedding_weight(load_model(result.model_path))
    torch.manual_seed(3)
    fresh = EmbeddingModel(ModelCard.for_backbone("x", "efficientnet_lite0", 64), pretrained=True)
    assert torch.equal(w, embedding_weight(fresh))
    assert (w @ w.T).diagonal().max() < 0.5  # default Linear init: rows far from unit length, unlike PCA


# -- checkpoints and resume ------------------------------------------------------------------------------


def test_cancelled_run_resumes_at_the_next_step_and_matches_an_uninterrupted_run(
    train_folder: LabelledFolder, tmp_path: Path
) -> None:
    cfg = config(epochs=2, batches_per_epoch=3)
    reference = fit(train_folder, tmp_path / "reference", cfg)

    out = tmp_path / "model"
    first = Recorder()
    with pytest.raises(Cancelled):
        fit(train_folder, out, cfg, callbacks=first.callbacks(), cancel=lambda: len(first.steps) >= 4)
    assert first.steps == [1, 2, 3, 4]
    assert not model_paths(out)[0].exists()  # nothing exported yet
    state = checkpoint_file.read_checked(run_dir(out) / "checkpoint.pt")
    assert (state["global_step"], state["epoch"], state["step_in_epoch"]) == (4, 1, 1)

    second = Recorder()
    result = fit(train_folder, out, cfg, callbacks=second.callbacks())
    assert second.steps == [5, 6]
    assert result.resumed_from_step == 4
    assert any("resuming at epoch 2, batch 2 (step 4)" in m for m in second.messages)
    assert result.card.recipe["steps"] == cfg.epochs * 3 == 6
    assert [h["epoch"] for h in result.history] == [1, 2]
    assert [e for e, _ in second.epochs] == [2]  # epoch 1 finished in the first run

    # Same seed, same batches, same augmentation and optimizer state: the resumed model is the reference one.
    expected, got = weights(reference.model_path), weights(result.model_path)
    assert expected.keys() == got.keys()
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], msg=key)


def test_checkpoint_of_other_settings_is_not_resumed(train_folder: LabelledFolder, tmp_path: Path) -> None:
    out = tmp_path / "model"
    first = Recorder()
    with pytest.raises(Cancelled):
        fit(
            train_folder,
            out,
            config(batches_per_epoch=3),
            callbacks=first.callbacks(),
            cancel=lambda: len(first.steps) >= 2,
        )
    assert (run_dir(out) / "checkpoint.pt").exists()

    second = Recorder()
    result = fit(train_folder, out, config(batches_per_epoch=3, lr=0.02), callbacks=second.callbacks())
    assert any("other settings" in m for m in second.messages)
    assert result.resumed_from_step == 0
    assert second.steps == [1, 2, 3, 4, 5, 6]
    assert result.card.recipe["steps"] == 6 and result.card.recipe["lr"] == 0.02


def test_a_checkpoint_of_other_images_is_not_resumed(train_folder: LabelledFolder, tmp_path: Path) -> None:
    """The same settings on other data (another folder, or this one with a class removed) train afresh: resuming
    would export the other data's model as if it had been trained on these images."""
    out = tmp_path / "model"
    fit(train_folder, out, config(epochs=1, batches_per_epoch=2))
    fewer = train_folder.subset(train_folder.classes[:3])
    second = Recorder()
    result = fit(fewer, out, config(epochs=1, batches_per_epoch=2), callbacks=second.callbacks())
    assert any("other images or classes" in m for m in second.messages)
    assert result.resumed_from_step == 0 and second.steps == [1, 2]
    assert "3 classes" in result.card.trained_on[0]


def test_a_finished_run_is_not_trained_again(train_folder: LabelledFolder, tmp_path: Path) -> None:
    cfg = config(epochs=1, batches_per_epoch=2)
    first = fit(train_folder, tmp_path / "m", cfg)
    rec = Recorder()
    again = fit(train_folder, tmp_path / "m", cfg, callbacks=rec.callbacks())
    assert rec.steps == []
    assert again.history == first.history and again.card.recipe["steps"] == 2


# -- export ---------------------------------------------------------------------------------------------


def test_exported_model_loads_and_its_card_tells_how_it_was_trained(
    train_folder: LabelledFolder, tmp_path: Path
) -> None:
    validation = scan_labelled_folder(make_labelled_folder(tmp_path / "val", classes=2, per_class=4, offset=10))
    rec = Recorder()
    cfg = config(epochs=1, batches_per_epoch=2, method_params={"temperature": 0.1})
    result = fit(train_folder, tmp_path / "my-model", cfg, validation=validation, callbacks=rec.callbacks())

    weights_path, card_path = model_paths(tmp_path / "my-model")
    assert result.model_path == weights_path and card_path.exists()
    model = load_model(result.model_path)
    card = model.card
    assert card.trained is True
    assert card.name == "my-model" and card.dim == 64 and card.backbone == "efficientnet_lite0"
    assert card.recipe["method"] == "normsoftmax" and card.recipe["method_params"] == {"temperature": 0.1}
    assert card.recipe["steps"] == 2 and card.recipe["skipped_steps"] == 0
    assert card.recipe["trainable_stages"] == 1 and card.recipe["crop_size"] == CROP
    assert card.recipe["device"] == "cpu" and "num_workers" not in card.recipe
    assert json.dumps(card.recipe["history"]) == json.dumps(result.history)  # NaN-aware equality
    assert str(train_folder.root) in card.trained_on[0] and "4 classes, 32 images" in card.trained_on[0]

    # With a validation set, the history starts at the untrained model (epoch 0) and records R@1 per epoch.
    assert [h["epoch"] for h in result.history] == [0, 1]
    assert "loss" not in result.history[0] and math.isfinite(result.history[1]["loss"])  # no loss before training
    for record in result.history:
        assert 0.0 <= record["R@1"] <= 1.0 and 0.0 <= record["binary R@1"] <= 1.0
    assert [e for e, _ in rec.epochs] == [0, 1]

    # The loaded model embeds like the model the card describes.
    x = torch.randn(2, 3, CROP, CROP)
    with torch.inference_mode():
        assert model(x).shape == (2, 64)


# -- guards ---------------------------------------------------------------------------------------------


class NanOnce(nn.Module):
    """Wraps the real objective; its `nan_at`-th call returns NaN."""

    def __init__(self, inner: nn.Module, nan_at: int) -> None:
        super().__init__()
        self.inner = inner
        self.nan_at = nan_at
        self.calls = 0

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        loss = self.inner(embeddings, labels)
        return loss * float("nan") if self.calls == self.nan_at else loss


def test_non_finite_loss_skips_the_step(
    train_folder: LabelledFolder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = fit_module.build_objective
    built: list[NanOnce] = []

    def build(*args: Any, **kwargs: Any) -> nn.Module:
        built.append(NanOnce(real(*args, **kwargs), nan_at=2))
        return built[-1]

    monkeypatch.setattr(fit_module, "build_objective", build)
    rec = Recorder()
    result = fit(train_folder, tmp_path / "m", config(epochs=1, batches_per_epoch=4), callbacks=rec.callbacks())

    assert built[0].calls == 4
    assert result.skipped_steps == 1 and result.card.recipe["skipped_steps"] == 1
    assert result.card.recipe["steps"] == 4
    assert rec.steps == [1, 3, 4]  # step 2 was skipped, the others trained
    assert any("non-finite loss at step 2" in m for m in rec.messages)
    assert math.isfinite(result.history[-1]["loss"])
    for name, tensor in weights(result.model_path).items():
        assert torch.isfinite(tensor).all(), name


def test_cache_trunk_needs_trainable_stages(train_folder: LabelledFolder, tmp_path: Path) -> None:
    with pytest.raises(FitError, match="trainable_stages"):
        fit(train_folder, tmp_path / "m", config(trainable_stages=None, cache_trunk=True))
    assert not run_dir(tmp_path / "m").exists()


# -- nested dimensions ----------------------------------------------------------------------------------


def test_every_nested_prefix_is_trained(
    train_folder: LabelledFolder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = fit_module.build_objective
    built: list[tuple[nn.Module, dict[str, torch.Tensor]]] = []

    def build(*args: Any, **kwargs: Any) -> nn.Module:
        objective = real(*args, **kwargs)
        built.append((objective, {k: v.detach().clone() for k, v in objective.state_dict().items()}))
        return objective

    monkeypatch.setattr(fit_module, "build_objective", build)
    result = fit(train_folder, tmp_path / "nested", config(epochs=1, batches_per_epoch=3, dim=256))
    objective, initial = built[0]
    assert result.card.nested_dims == [64, 128, 256]
    assert isinstance(objective, NestedObjective)
    assert list(objective.dims) == result.card.nested_dims
    for d in objective.dims:
        assert d in result.card.nested_dims
        proxies = objective[d].get_parameter("proxies").detach()
        assert proxies.shape == (CLASSES, d)
        assert not torch.equal(proxies, initial[f"objectives.{d}.proxies"]), f"prefix {d} was not trained"

    fit(train_folder, tmp_path / "flat", config(epochs=1, batches_per_epoch=1, dim=256, nested=False))
    flat, _ = built[1]
    assert not isinstance(flat, NestedObjective)
    assert flat.get_parameter("proxies").shape == (CLASSES, 256)


def test_config_key_ignores_only_the_volatile_settings() -> None:
    cfg = config()
    assert dataclasses.replace(cfg, device="cuda", num_workers=7, checkpoint_every=3).key() == cfg.key()
    assert dataclasses.replace(cfg, lr=0.02).key() != cfg.key()
    assert dataclasses.replace(cfg, seed=1).key() != cfg.key()


def test_frozen_batchnorm_keeps_the_imagenet_statistics(train_folder: LabelledFolder, tmp_path: Path) -> None:
    start = weights(fit(train_folder, tmp_path / "start", config(epochs=0)).model_path)
    frozen = weights(fit(train_folder, tmp_path / "frozen", config(lr=0.0, epochs=1)).model_path)
    updated = weights(
        fit(train_folder, tmp_path / "updated", config(lr=0.0, epochs=1, freeze_batchnorm=False)).model_path
    )
    stats = [k for k in start if k.endswith(("running_mean", "running_var"))]
    assert stats and all(torch.equal(start[k], frozen[k]) for k in stats)  # the default keeps them
    assert any(not torch.equal(start[k], updated[k]) for k in stats)  # the option re-estimates them


def test_a_resumed_run_without_the_cache_decodes_only_the_batches_left(
    train_folder: LabelledFolder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = config(cache_trunk=False, epochs=1, batches_per_epoch=4, classes_per_batch=2, per_class=2)
    out = tmp_path / "m"
    steps = [0]

    def cancel_after_two() -> bool:
        return steps[0] >= 2

    first = Recorder()
    first_on_batch = first.on_batch

    def count(step: int, epoch: int, loss: float, lr: float) -> None:
        steps[0] = step
        first_on_batch(step, epoch, loss, lr)

    first.on_batch = count  # type: ignore[method-assign]
    with pytest.raises(Cancelled):
        fit(train_folder, out, cfg, callbacks=first.callbacks(), cancel=cancel_after_two)

    decoded: list[int] = []
    real_getitem = ImageDataset.__getitem__

    def counting_getitem(self: Any, index: int) -> Any:
        decoded.append(index)
        return real_getitem(self, index)

    monkeypatch.setattr(ImageDataset, "__getitem__", counting_getitem)
    second = Recorder()
    fit(train_folder, out, cfg, callbacks=second.callbacks())
    assert second.steps == [3, 4]
    assert len(decoded) == 2 * 2 * 2  # the two batches left, 2 classes x 2 images each; none of the first two


def test_a_resumed_run_without_the_cache_matches_an_uninterrupted_one_with_worker_processes(
    train_folder: LabelledFolder, tmp_path: Path
) -> None:
    """Random crops come from per-image seeds: neither the worker that decodes an image nor the batches a resumed
    run skips change them (they used to: each epoch's loader drew its workers' seeds from the random state, which
    a resumed run restores at another point)."""
    cfg = config(cache_trunk=False, epochs=2, batches_per_epoch=3, classes_per_batch=2, per_class=2, num_workers=2)
    reference = fit(train_folder, tmp_path / "reference", cfg)
    out = tmp_path / "model"
    first = Recorder()
    with pytest.raises(Cancelled):
        fit(train_folder, out, cfg, callbacks=first.callbacks(), cancel=lambda: len(first.steps) >= 4)
    result = fit(train_folder, out, cfg)
    assert result.resumed_from_step == 4
    expected, got = weights(reference.model_path), weights(result.model_path)
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], msg=key)


def test_unfreezing_the_backbone_after_warm_up_lowers_the_loss_with_the_default_rates(tmp_path: Path) -> None:
    """The cause of fine-tuning's collapse: with the backbone at the head's rate, the first steps after the warm-up
    break the pretrained features the head was just fitted to, and the loss rises at the unfreeze (here 1.44 ->
    1.58 mean per epoch, on real photos 1 -> 5-18). With the default rates it keeps falling."""
    folder = scan_labelled_folder(make_labelled_folder(tmp_path / "data", 4, 10))
    epochs: list[float] = []
    cfg = config(
        epochs=3, warmup_epochs=1, classes_per_batch=4, per_class=3, batches_per_epoch=8, trainable_stages=6,
        cache_trunk=False, lr=FitConfig().lr, backbone_lr_mult=FitConfig().backbone_lr_mult,
    )  # fmt: skip
    callbacks = FitCallbacks(on_epoch=lambda e, m: epochs.append(m["loss"]) if e else None)
    fit(folder, tmp_path / "m", cfg, base=BUNDLED_MODEL, callbacks=callbacks)
    warm_up, fine_tuning = epochs[0], epochs[1:]
    assert float(np.mean(fine_tuning)) < warm_up, epochs


# -- the epoch that is kept ------------------------------------------------------------------------------


def test_the_best_epoch_on_the_selection_part_is_exported(
    train_folder: LabelledFolder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Scores are scripted (epoch 2 best): the exported weights are epoch 2's, not the last epoch's."""
    scores = iter([0.5, 0.6, 0.9, 0.7])
    snapshots: dict[int, dict[str, torch.Tensor]] = {}

    def scripted(self: Any, epoch: int) -> dict[str, float]:
        value = next(scores)
        snapshots[epoch] = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        if self.best is None or value > self.best.score:
            self.best = fit_module.Best(epoch, value, snapshots[epoch])
        return {"chosen on R@1": value, "chosen on binary R@1": value}

    monkeypatch.setattr(fit_module._Trainer, "_choose", scripted)
    result = fit(train_folder, tmp_path / "m", config(epochs=3), selection=train_folder)
    assert result.kept_epoch == 2 and result.card.recipe["kept_epoch"] == 2
    got = weights(result.model_path)
    assert torch.equal(got["embedding.weight"], snapshots[2]["embedding.weight"])
    assert not torch.equal(got["embedding.weight"], snapshots[3]["embedding.weight"])


def test_the_starting_model_is_kept_when_training_only_hurts(train_folder: LabelledFolder, tmp_path: Path) -> None:
    """A learning rate that wrecks the model: every epoch scores below the start, so the start is exported."""
    messages: list[str] = []
    start = fit(train_folder, tmp_path / "start", config(epochs=0))
    wrecked = config(epochs=2, lr=50.0, backbone_lr_mult=1.0)
    result = fit(
        train_folder, tmp_path / "m", wrecked, selection=train_folder,
        callbacks=FitCallbacks(on_message=messages.append),
    )  # fmt: skip
    scores = [epoch_choice.selection_score(h) for h in result.history if "chosen on R@1" in h]
    assert scores[0] > max(scores[1:]), scores
    assert result.kept_epoch == 0
    assert any("the starting model is kept" in m for m in messages)
    expected, got = weights(start.model_path), weights(result.model_path)
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], msg=key)


def test_the_best_epoch_survives_a_resume(train_folder: LabelledFolder, tmp_path: Path) -> None:
    cfg = config(epochs=2, batches_per_epoch=3)
    reference = fit(train_folder, tmp_path / "reference", cfg, selection=train_folder)
    out = tmp_path / "model"
    rec = Recorder()
    with pytest.raises(Cancelled):
        fit(
            train_folder,
            out,
            cfg,
            callbacks=rec.callbacks(),
            cancel=lambda: len(rec.steps) >= 4,
            selection=train_folder,
        )
    result = fit(train_folder, out, cfg, selection=train_folder)
    assert result.kept_epoch == reference.kept_epoch
    expected, got = weights(reference.model_path), weights(result.model_path)
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], msg=key)


def test_only_the_start_and_the_epochs_after_the_first_rate_drop_are_candidates(
    train_folder: LabelledFolder, tmp_path: Path
) -> None:
    from trainer.folders import split_by_images

    fitted, chooser = split_by_images(train_folder, share=0.2)
    result = fit(fitted, tmp_path / "m", config(epochs=5, warmup_epochs=1), selection=chooser)
    scored = [h["epoch"] for h in result.history if "chosen on R@1" in h]
    assert scored == [0, 5]  # the rate drops after 60 % of the 4 fine-tuning epochs: epoch 5 is the first after
    assert all("chosen on binary MAP@R" in h for h in result.history if h["epoch"] in scored)
    assert result.kept_epoch in (0, 5)


@pytest.mark.parametrize("damage", ["overwritten", "truncated"])
def test_a_damaged_checkpoint_falls_back_to_the_previous_one(
    train_folder: LabelledFolder, tmp_path: Path, damage: str
) -> None:
    """4 KB overwritten inside the checkpoint used to be loaded and exported as the model (weights up to 3.4e38);
    a truncated one was a traceback. Now its checksum fails and the previous checkpoint is resumed instead."""
    cfg = config(epochs=2, batches_per_epoch=3, checkpoint_every=1)
    out = tmp_path / "model"
    rec = Recorder()
    with pytest.raises(Cancelled):
        fit(train_folder, out, cfg, callbacks=rec.callbacks(), cancel=lambda: len(rec.steps) >= 4)
    path = run_dir(out) / "checkpoint.pt"
    assert (run_dir(out) / checkpoint_file.PREVIOUS).exists()
    data = bytearray(path.read_bytes())
    if damage == "overwritten":
        data[len(data) // 2 : len(data) // 2 + 4096] = np.random.default_rng(0).bytes(4096)
    else:
        data = data[: len(data) // 3]
    path.write_bytes(bytes(data))
    (run_dir(out) / ".checkpoint.pt.abc123.tmp").write_bytes(b"half a checkpoint")  # a write killed midway
    second = Recorder()
    result = fit(train_folder, out, cfg, callbacks=second.callbacks())
    assert any("is damaged" in m and "checksum does not match" in m for m in second.messages)
    assert result.resumed_from_step == 4  # the previous checkpoint (the cancel wrote step 4 twice)
    assert all(torch.isfinite(t).all() and t.abs().max() < 1e3 for t in weights(result.model_path).values())
    assert not list(run_dir(out).glob(".checkpoint.pt.*.tmp"))


def test_with_nothing_to_judge_new_classes_the_starting_model_is_kept(
    train_folder: LabelledFolder, tmp_path: Path
) -> None:
    from trainer.folders import carve_validation

    three = train_folder.subset(train_folder.classes[:3])
    fitted, chooser = carve_validation(three, "classes")
    start = fit(fitted, tmp_path / "start", config(epochs=0))
    messages: list[str] = []
    result = fit(fitted, tmp_path / "m", config(epochs=2), selection=chooser,
                 callbacks=FitCallbacks(on_message=messages.append))  # fmt: skip
    assert result.kept_epoch == 0 and any("too few training classes" in m for m in messages)
    expected, got = weights(start.model_path), weights(result.model_path)
    assert all(torch.equal(got[k], expected[k]) for k in expected)


def test_an_epoch_worse_than_the_start_in_float_or_binary_is_not_kept() -> None:
    start = {"chosen on R@1": 0.8, "chosen on binary R@1": 0.8, "chosen on MAP@R": 0.5, "chosen on binary MAP@R": 0.5}
    better = {**start, "chosen on R@1": 0.85, "chosen on MAP@R": 0.6}
    binary_worse = {**better, "chosen on binary R@1": 0.7, "chosen on MAP@R": 0.9}  # a higher mean, worse codes
    best = epoch_choice.selection_score(start)
    assert epoch_choice.replaces_best(better, start, best)
    assert epoch_choice.selection_score(binary_worse) > epoch_choice.selection_score(better)
    assert not epoch_choice.replaces_best(binary_worse, start, best)
    assert not epoch_choice.replaces_best(start, start, best)  # a tie keeps the earlier (the start)
