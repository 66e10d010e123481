"""The small-folder recipe's stretch of the embedding layer (trainer.class_stretch), on generated features and
through trainer.fit on a tiny generated folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from imagegen import make_labelled_folder
from safetensors.torch import load_file

from trainer.card import model_paths
from trainer.class_stretch import choose_by_folds, stretch_matrix, stretched_weight
from trainer.data import LabelledFolder, scan_labelled_folder
from trainer.fit import FitConfig, FitError, fit
from trainer.folders import carve_validation
from trainer.metrics import query_gallery_metrics


def nuisance_features(n_per_class: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 32) features of 4 classes whose class signal is faint beside a strong shared nuisance: as photos of
    one species on different backgrounds, the nearest neighbour is often another class's picture."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.zeros(4, 32)
    centres[:, :4] = torch.eye(4) * 1.5
    labels = torch.arange(4).repeat_interleave(n_per_class)
    nuisance = torch.randn(len(labels), 32, generator=g)
    nuisance[:, :4] *= 0.3  # small noise along the class directions, large along the rest
    return centres[labels] + nuisance * torch.cat([torch.full((4,), 1.0), torch.full((28,), 2.0)]), labels


def held_out_recall(weight: torch.Tensor, feats: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    emb = (feats @ weight.T).numpy()
    y = labels.numpy()
    found = query_gallery_metrics(emb[::2], y[::2], emb[1::2], y[1::2])
    return found["R@1"], found["binary R@1"]


def test_the_stretch_scales_the_span_of_the_centred_proxies_and_leaves_the_rest() -> None:
    proxies = torch.nn.functional.normalize(torch.randn(5, 16, generator=torch.Generator().manual_seed(0)), dim=1)
    a = stretch_matrix(proxies, 10.0)
    centred = proxies - proxies.mean(0)
    torch.testing.assert_close(a @ centred.T, 10.0 * centred.T, atol=1e-4, rtol=1e-4)
    other = torch.linalg.svd(centred.T, full_matrices=True)[0][:, 4:]  # the 12 directions the classes leave alone
    torch.testing.assert_close(a @ other, other, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(a, a.T)  # symmetric: a stretch, no rotation


def test_a_faint_class_signal_under_a_strong_nuisance_is_found_after_the_stretch() -> None:
    train, train_labels = nuisance_features(20, seed=1)
    held, held_labels = nuisance_features(20, seed=2)
    # an embedding layer that rotates (as the PCA-started one does): binary codes are the signs of its coordinates
    start = torch.linalg.qr(torch.randn(32, 32, generator=torch.Generator().manual_seed(0)))[0]
    weight, loss = stretched_weight(start, train, train_labels, 10.0)
    before, after = held_out_recall(start, held, held_labels), held_out_recall(weight, held, held_labels)
    assert before[0] < 0.6 and after[0] > before[0] + 0.25, (before, after)  # float
    assert after[1] > before[1] + 0.25, (before, after)  # binary codes gain too
    assert 0 <= loss < 1.0
    stretch, start_scores, stretched_scores = choose_by_folds(start, train, train_labels.numpy(), 5, 10.0)
    assert stretch and stretched_scores["chosen on R@1"] > start_scores["chosen on R@1"]


def test_labels_that_say_nothing_keep_the_start() -> None:
    """Shuffled labels: a stretch fitted on some images' labels does not help on other images, and folds see it."""
    feats, labels = nuisance_features(20, seed=3)
    shuffled = labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(4))]
    stretch, start, stretched = choose_by_folds(torch.eye(32), feats, shuffled.numpy(), 5, 10.0)
    assert not stretch, (start, stretched)


def test_one_class_leaves_the_weight_as_it_was() -> None:
    feats, _ = nuisance_features(5, seed=5)
    weight, _loss = stretched_weight(torch.eye(32), feats, torch.zeros(len(feats), dtype=torch.long), 10.0)
    torch.testing.assert_close(weight, torch.eye(32))


# -- through trainer.fit ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> LabelledFolder:
    return scan_labelled_folder(make_labelled_folder(tmp_path_factory.mktemp("stretch") / "f", 4, 10))


def stretch_config(**overrides: object) -> FitConfig:
    fields: dict[str, object] = dict(
        dim=64, epochs=1, warmup_epochs=0, classes_per_batch=4, per_class=3, trainable_stages=0, cache_trunk=True,
        cache_views=1, crop_size=64, num_workers=0, device="cpu", choice_folds=3, stretch=10.0,
    )  # fmt: skip
    fields.update(overrides)
    return FitConfig(**fields)  # type: ignore[arg-type]


def test_fit_stretches_in_one_epoch_and_keeps_it_only_when_the_folds_say_so(
    folder: LabelledFolder, tmp_path: Path
) -> None:
    start = fit(folder, tmp_path / "start", stretch_config(epochs=0, stretch=0.0), selection=None)
    fitted, chooser = carve_validation(folder, "images")
    messages: list[str] = []
    from trainer.fit import FitCallbacks

    result = fit(fitted, tmp_path / "m", stretch_config(), selection=chooser,
                 callbacks=FitCallbacks(on_message=messages.append))  # fmt: skip
    assert [h["epoch"] for h in result.history] == [0, 1]
    assert np.isfinite(result.history[1]["loss"]) and "chosen on R@1" in result.history[1]
    assert any("stretched 10x along the 3 directions" in m for m in messages), messages
    assert result.card.recipe["stretch"] == 10.0 and "stretched" in " ".join(messages)
    before = load_file(str(model_paths(start.model_path)[0]))["embedding.weight"]
    after = load_file(str(model_paths(result.model_path)[0]))["embedding.weight"]
    if result.kept_epoch == 1:
        # the exported layer is the start's, stretched: (I + 9 Q Q^T) W, so W' - W has rank C - 1 = 3
        assert torch.linalg.matrix_rank(after - before, atol=1e-4) == 3
    else:
        torch.testing.assert_close(after, before)
    # the backbone is the start's, bit for bit
    for name, tensor in load_file(str(model_paths(start.model_path)[0])).items():
        if name != "embedding.weight":
            torch.testing.assert_close(load_file(str(model_paths(result.model_path)[0]))[name], tensor)


def test_a_stretch_with_the_backbone_training_is_refused_with_what_to_do(
    folder: LabelledFolder, tmp_path: Path
) -> None:
    with pytest.raises(FitError, match="give --stretch 0"):
        fit(folder, tmp_path / "m", stretch_config(trainable_stages=1))
