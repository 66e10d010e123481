"""The run-time estimate: candidate epochs as trainer.fit scores them, and the parts of a run it adds up."""

from __future__ import annotations

from pathlib import Path

import pytest
from imagegen import make_labelled_folder

from trainer.config import FitConfig
from trainer.data import scan_labelled_folder
from trainer.estimate import RunShape, candidate_epochs, estimate_seconds
from trainer.fit import fit


@pytest.mark.parametrize(("epochs", "warmup"), [(6, 1), (3, 0)])
def test_candidate_epochs_are_the_ones_fit_scores(epochs: int, warmup: int, tmp_path: Path) -> None:
    """A real run with a part set aside to choose: the epochs it scored are the ones the estimate counts."""
    folder = scan_labelled_folder(make_labelled_folder(tmp_path / "train", 4, 6))
    config = FitConfig(
        dim=64, epochs=epochs, warmup_epochs=warmup, classes_per_batch=4, per_class=2, batches_per_epoch=1,
        trainable_stages=1, cache_trunk=True, crop_size=64, num_workers=0, device="cpu",
    )  # fmt: skip
    result = fit(folder, tmp_path / "m", config, selection=folder)
    scored = [int(h["epoch"]) for h in result.history if "chosen on R@1" in h]
    assert 0 in scored and epochs in scored and len(scored) < epochs + 1
    assert candidate_epochs({"epochs": epochs, "warmup_epochs": warmup}) == len(scored)


def test_more_epochs_held_out_images_and_trainable_stages_cost_more() -> None:
    shape = RunShape(train_images=300, train_classes=6, selection_images=60, test_images=80, continuing=True)
    base = {"epochs": 10, "warmup_epochs": 1, "classes_per_batch": 6, "per_class": 4, "trainable_stages": 3}
    stages = [0.002] * 9
    seconds = estimate_seconds(shape, base, stages)
    assert estimate_seconds(shape, {**base, "epochs": 20}, stages) > 1.8 * seconds - 5
    assert estimate_seconds(RunShape(300, 6, 60, 800, True), base, stages) > seconds
    assert estimate_seconds(shape, {**base, "trainable_stages": 9}, stages) > seconds
    assert estimate_seconds(shape, FitConfig(**base), stages) == seconds  # a FitConfig or its fields
