"""What a run trains on and what chooses its epoch (trainer.epoch_choice.run_parts), as the wizard and the CLI ask."""

from __future__ import annotations

from pathlib import Path

from trainer.epoch_choice import run_parts
from trainer.folders import LabelledFolder
from trainer.recipe import FolderShape, default_recipe


def folder(classes: list[str], per_class: int, tag: str) -> LabelledFolder:
    samples = [(Path(f"/x/{c}/{tag}{i}.jpg"), k) for k, c in enumerate(classes) for i in range(per_class)]
    return LabelledFolder(Path("/x"), classes, samples)


def test_the_stretch_trains_on_the_part_set_aside_too_and_is_judged_on_folds() -> None:
    fitted, chooser = folder(["a", "b", "c"], 24, "t"), folder(["a", "b", "c"], 6, "s")
    config = default_recipe(FolderShape.of(fitted), "cpu")
    parts = run_parts(fitted, chooser, config)
    assert config.stretch and parts.stretch and parts.folds == 5 and parts.selection is None
    assert len(parts.train.samples) == 90  # every training image, the part set aside included
    assert parts.text() == "the stretch kept if it beats the start on 5 folds of the 90 training images"


def test_a_run_by_steps_says_it_chooses_an_epoch_and_a_backbone_run_keeps_its_part_set_aside() -> None:
    fitted, chooser = folder(["a", "b", "c"], 24, "t"), folder(["a", "b", "c"], 6, "s")
    by_steps = run_parts(fitted, chooser, default_recipe(FolderShape.of(fitted), "cpu", stretch=0.0))
    assert not by_steps.stretch and by_steps.text().startswith("the epoch chosen on 5 folds")
    backbone = run_parts(fitted, chooser, default_recipe(FolderShape.of(fitted), "cpu", trainable_stages=6))
    assert (backbone.train, backbone.selection, backbone.folds) == (fitted, chooser, 0)
    assert backbone.text() == "18 set aside to choose the epoch"


def test_new_classes_set_aside_are_never_folded_into_the_training_part() -> None:
    fitted, chooser = folder(["a", "b", "c"], 24, "t"), folder(["d", "e"], 10, "s")
    parts = run_parts(fitted, chooser, default_recipe(FolderShape.of(fitted), "cpu"))
    assert (parts.train, parts.selection, parts.folds) == (fitted, chooser, 0)


def test_a_stretch_judged_on_new_classes_set_aside_says_so() -> None:
    fitted, chooser = folder(["a", "b", "c", "d"], 24, "t"), folder(["e", "f"], 10, "s")
    parts = run_parts(fitted, chooser, default_recipe(FolderShape.of(fitted), "cpu"))
    assert parts.stretch and parts.text() == "20 set aside to judge the stretch"
