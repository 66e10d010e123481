"""The default recipe: adapts to the folder and the device, is the same for the CLI and the wizard, warns."""

from __future__ import annotations

import argparse
from pathlib import Path

from trainer.cli import _parser, recipe_from_args
from trainer.folders import LabelledFolder
from trainer.recipe import CPU_IMAGES, FolderShape, default_recipe, recipe_warnings


def test_a_small_folder_gets_bigger_batches_and_more_passes() -> None:
    small = default_recipe(FolderShape(classes=3, images=90, smallest_class=30))
    large = default_recipe(FolderShape(classes=50, images=5000, smallest_class=60))
    assert small.classes_per_batch * small.per_class >= 24  # not 3 x 3
    assert (large.classes_per_batch, large.per_class) == (25, 3)  # the paper's batches when there are classes
    assert small.epochs > large.epochs >= 6
    seen = (
        small.epochs * (90 // (small.classes_per_batch * small.per_class)) * small.classes_per_batch * small.per_class
    )
    assert abs(seen - CPU_IMAGES) / CPU_IMAGES < 0.25
    assert small.backbone_lr_mult == 0.1 and small.warmup_epochs == 1


def test_the_device_decides_what_trains() -> None:
    shape = FolderShape(classes=10, images=800, smallest_class=60)
    cpu, gpu = default_recipe(shape, "cpu"), default_recipe(shape, "cuda")
    assert (cpu.trainable_stages, cpu.crop_size) == (6, 160)
    assert (gpu.trainable_stages, gpu.crop_size) == (None, None) and gpu.epochs > cpu.epochs


def test_a_tiny_folder_is_warned_about_with_what_would_help() -> None:
    assert recipe_warnings(FolderShape(classes=10, images=600, smallest_class=40), "images") == []
    warnings = recipe_warnings(FolderShape(classes=3, images=24, smallest_class=8), "classes")
    assert len(warnings) == 3 and "20 or more per class" in warnings[0] and "my-classes" in warnings[2]


def test_trainer_fit_without_recipe_flags_is_the_default_recipe() -> None:
    train = LabelledFolder(Path("/x"), ["a", "b", "c"], [(Path(f"/x/{i}"), i % 3) for i in range(96)])
    args = _parser().parse_args(["fit", "/x", "--out", "/m"])
    assert isinstance(args, argparse.Namespace)
    assert recipe_from_args(args, train, "cpu") == default_recipe(FolderShape.of(train), "cpu", device="auto")
    args = _parser().parse_args(["fit", "/x", "--out", "/m", "--epochs", "3", "--trainable-stages", "0"])
    tuned = recipe_from_args(args, train, "cpu")
    assert tuned.epochs == 3 and tuned.trainable_stages is None
