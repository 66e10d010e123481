"""The default recipe: adapts to the folder and the device, is the same for the CLI and the wizard, warns."""

from __future__ import annotations

import argparse
from pathlib import Path

from trainer.cli import _parser, recipe_from_args
from trainer.folders import LabelledFolder
from trainer.recipe import (
    CPU_IMAGES,
    HEAD_LR,
    HEAD_ONLY_BELOW,
    HEAD_ONLY_BELOW_CPU,
    HEAD_STEPS,
    STRETCH_FACTOR,
    FolderShape,
    default_recipe,
    recipe_warnings,
)  # fmt: skip


def test_a_folder_with_few_classes_gets_bigger_batches_and_more_passes() -> None:
    few = default_recipe(FolderShape(classes=3, images=2400, smallest_class=800))
    many = default_recipe(FolderShape(classes=50, images=5000, smallest_class=60))
    assert few.classes_per_batch * few.per_class >= 24  # not 3 x 3
    assert (many.classes_per_batch, many.per_class) == (25, 3)  # the paper's batches when there are classes
    assert few.epochs >= many.epochs >= 6
    seen = few.epochs * (2400 // (few.classes_per_batch * few.per_class)) * few.classes_per_batch * few.per_class
    assert seen >= CPU_IMAGES  # at least the CPU budget of images, and at least 6 passes
    assert few.backbone_lr_mult == 0.1 and few.warmup_epochs == 1


def test_a_small_folder_keeps_the_backbone_and_stretches_the_embedding_layer_on_features_computed_once() -> None:
    """bench/finetune_small.py: with backbone stages training, 8 car models x 30 images lost 17-27 points of held-out
    Recall@1 (memorised); the embedding layer alone lost on no folder of the suite, and stretched (one pass) it
    gained more than trained by steps. Asking for more epochs, or --stretch 0, trains it by ~150 steps."""
    for device in ("cpu", "cuda"):
        small = default_recipe(FolderShape(classes=6, images=192, smallest_class=32), device)
        assert (small.trainable_stages, small.cache_trunk, small.cache_views, small.crop_size) == (0, True, 1, None)
        assert (small.stretch, small.epochs, small.warmup_epochs) == (STRETCH_FACTOR, 1, 0)
        for asked in ({"stretch": 0.0}, {"epochs": 10}):
            steps = default_recipe(FolderShape(classes=6, images=192, smallest_class=32), device, **asked)
            assert (steps.stretch, steps.lr, steps.warmup_epochs) == (0.0, HEAD_LR, 0)
        by_steps = default_recipe(FolderShape(classes=6, images=192, smallest_class=32), device, stretch=0.0)
        steps = by_steps.epochs * (192 // (by_steps.classes_per_batch * by_steps.per_class))
        assert abs(steps - HEAD_STEPS) / HEAD_STEPS < 0.2


def test_the_device_decides_what_trains_in_a_large_folder() -> None:
    shape = FolderShape(classes=10, images=2400, smallest_class=240)
    cpu, gpu = default_recipe(shape, "cpu"), default_recipe(shape, "cuda")
    assert (cpu.trainable_stages, cpu.crop_size) == (6, 160)
    assert (gpu.trainable_stages, gpu.crop_size) == (None, None) and gpu.epochs > cpu.epochs


def test_between_the_thresholds_a_cpu_stretches_where_a_gpu_trains_the_backbone() -> None:
    """1,500 training images: on a CPU the stretch beat its 6-stage backbone recipe on parts of 1,200-1,900 images
    (trainer.recipe.HEAD_ONLY_BELOW_CPU); a GPU's whole-backbone recipe was not measured against it there."""
    shape = FolderShape(classes=20, images=1500, smallest_class=60)
    cpu, gpu = default_recipe(shape, "cpu"), default_recipe(shape, "cuda")
    assert (cpu.trainable_stages, cpu.stretch, cpu.epochs) == (0, STRETCH_FACTOR, 1)
    assert (gpu.trainable_stages, gpu.stretch) == (None, 0.0)
    assert HEAD_ONLY_BELOW < shape.images < HEAD_ONLY_BELOW_CPU


def test_a_tiny_folder_is_warned_about_with_what_would_help() -> None:
    assert recipe_warnings(FolderShape(classes=10, images=600, smallest_class=40), "images") == []
    warnings = recipe_warnings(FolderShape(classes=3, images=24, smallest_class=8), "classes")
    assert len(warnings) == 3 and "20 or more per class" in warnings[0] and "my-classes" in warnings[2]


def test_trainer_fit_without_recipe_flags_is_the_default_recipe() -> None:
    train = LabelledFolder(Path("/x"), ["a", "b", "c"], [(Path(f"/x/{i}"), i % 3) for i in range(96)])
    args = _parser().parse_args(["fit", "/x", "--out", "/m"])
    assert isinstance(args, argparse.Namespace)
    assert recipe_from_args(args, train, "cpu") == default_recipe(FolderShape.of(train), "cpu", device="auto")
    assert recipe_from_args(args, train, "cpu").trainable_stages == 0  # 96 images: the backbone stays
    args = _parser().parse_args(["fit", "/x", "--out", "/m", "--epochs", "3", "--trainable-stages", "6"])
    tuned = recipe_from_args(args, train, "cpu")  # stages asked for: that family's rates and warm-up
    assert (tuned.epochs, tuned.trainable_stages, tuned.lr, tuned.warmup_epochs) == (3, 6, 0.01, 1)
    assert not tuned.cache_trunk


def test_a_small_folder_trains_every_image_chooses_on_folds_and_only_normsoftmax_proxies_learn_faster() -> None:
    small = FolderShape(classes=6, images=192, smallest_class=32)
    assert default_recipe(small).choice_folds == 5  # the stretch is judged on folds too
    recipe = default_recipe(small, stretch=0.0)
    assert (recipe.trainable_stages, recipe.choice_folds, recipe.lr, recipe.proxy_lr_mult) == (0, 5, 0.02, 150.0)
    assert default_recipe(small, method="arcface").proxy_lr_mult == 1.0  # measured for NormSoftmax only
    large = default_recipe(FolderShape(classes=20, images=2400, smallest_class=120))
    assert (large.choice_folds, large.proxy_lr_mult) == (0, 1.0)  # a backbone run is too costly to repeat per fold
