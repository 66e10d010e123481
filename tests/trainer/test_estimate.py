"""The run-time estimate: candidate epochs as trainer.fit scores them, and the parts of a run it adds up."""

from __future__ import annotations

import pytest

import trainer.fit as fit_module
from trainer.config import FitConfig
from trainer.estimate import RunShape, candidate_epochs, estimate_seconds


@pytest.mark.parametrize(("epochs", "warmup"), [(10, 1), (25, 1), (6, 1), (3, 0), (1, 0)])
def test_candidate_epochs_are_the_ones_fit_scores(epochs: int, warmup: int) -> None:
    config = FitConfig(epochs=epochs, warmup_epochs=warmup)
    trainer = object.__new__(fit_module._Trainer)
    trainer.config = config
    scored = [e for e in range(epochs + 1) if fit_module._Trainer.is_candidate(trainer, e)]
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
