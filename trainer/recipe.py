"""The default training recipe for a folder, without torch: `trainer fit` and the fine-tune wizard both ask here.

One meaning of "epoch" everywhere: one pass over the training images (`images // batch` steps). The recipe adapts
to the folder and the device:

* batches: up to 25 classes per batch (the paper's), and more images per class when there are few classes, so
  that a batch holds about 24 images (3 x 3 = 9 images made every step a coin toss on a 6-class folder);
* epochs: enough passes to see about 2,400 images on a CPU (about a minute at 160 px) and 60,000 on a GPU, at
  least 6 and at most 30;
* what trains: a training part of fewer than 2,000 images on a CPU (1,000 on a GPU) changes only the embedding
  layer, on the backbone's
  features computed once per image at the model's input size: with NormSoftmax, stretched along the directions
  that separate the folder's class proxies (trainer.class_stretch: one "epoch", no steps), whether that beats the
  start judged on folds of the training images; with another method, by SGD (lr 0.02, the proxies' 3.0, no
  warm-up, about 150 steps, the epoch chosen on the folds). On the small folders of bench/finetune_small.py (15-60
  images a class) every stage of the backbone that trained memorised the training images and lost held-out
  Recall@1 (cars, 8 classes x 30, my classes: 87.5 -> 60-70 with 6 stages training, the loss near 0.05); the
  embedding layer by SGD gained a median +2.8, the stretch +5.6 (bench/results/finetune_small.md). On a CPU
  the stretch also beat training the backbone on parts of 1,200-1,900 images (HEAD_ONLY_BELOW_CPU says how much).
  Larger parts train the backbone: on a CPU the last 6 of its 9 stages at 160 px crops
  (bench/cars_finetune.py: the first 3 stages cost most of the backward pass), on a GPU all of it at the model's
  input size, as the paper; lr 0.01 for the new layers and the proxies, a tenth of it for the backbone
  (trainer.config says why), and one warm-up epoch with the backbone frozen.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from trainer.config import FitConfig
from trainer.folders import LabelledFolder

CPU_STAGES = 6
CPU_CROP = 160
CPU_IMAGES = 2_400
GPU_IMAGES = 60_000
TARGET_BATCH = 24
MIN_EPOCHS, MAX_EPOCHS = 6, 30
HEAD_ONLY_BELOW = 1_000
"""On a GPU, training parts smaller than this keep the backbone as it is (the module docstring says why)."""
HEAD_ONLY_BELOW_CPU = 2_000
"""On a CPU the stretch keeps its lead above 1,000 images. Held-out Recall@1 (my classes, float | binary) of the
stretch against the CPU's backbone recipe (6 stages at 160 px, 6 epochs) on training parts of 1,206-1,864 images
(bench/results/finetune_medium.md): clothing, 10 classes x 200: 74.5 -> 82.5 | 82.0 in 0.9 min against 82.0 | 80.1
in 3.6 min; birds, 40 species x 55: 85.1 -> 90.8 | 92.4 in 1.0 min against 91.1 | 87.2 in 3.7 min; birds, 50
species x 60: 85.1 -> 90.2 | 90.7 in 1.1 min against 87.6 | 85.7 in 4.8 min. Above the limit the backbone wins:
every clothing image, 2,421 training: 78.3 -> 81.0 | 81.5 in 2.0 min against 85.1 | 82.0 in 7.2 min. Under new
classes both kept the start (the backbone recipe after 3-8 minutes). Not measured on a GPU, where the backbone
trains whole at 224 px for many more epochs."""
HEAD_STEPS = 150
HEAD_LR = 0.02
HEAD_PROXY_LR_MULT = 150.0
"""The embedding layer learns at HEAD_LR and the proxies at 150 x that, 3.0 (Proxy-Anchor's proxies learn 100 x
faster than the network). Each of the 6 nested prefixes adds its loss's gradient to the embedding layer, while each
proxy gets only its own prefix's: at one rate for both, the layer moves 6 x further than the proxies, and the layer
rather than the classes' places absorbs the training. Measured on every training image of the 9 small folders of
bench/finetune_small.py (my classes, 180 steps, two seeds averaged; median / worst held-out Recall@1 gain, float |
binary): 0.1 for both +1.7 / -4.2 | +5.2 / -2.1; 0.1 and 1.0 +2.0 / -1.0 | +6.3 / -13.5; 0.02 and 1.0
+3.7 / +0.0 | +4.2 / -0.5; 0.02 and 3.0 +4.2 / +0.0 | +6.2 / +0.0; 0.01 and 1.0 +2.1 / +0.0 | +2.5 / +0.0. Random
resized crops as extra cached views lost up to 9 points on cars (a head on frozen features learns the crops)."""
STRETCH_FACTOR = 10.0
"""How much the directions that separate the classes' proxies are stretched (trainer.class_stretch says why 10)."""
CHOICE_FOLDS = 5
"""The epoch kept is chosen on 5 folds of the training images, and every training image trains (trainer.fold_choice)."""


@dataclass(frozen=True)
class FolderShape:
    """What the recipe depends on: the training part's classes and images."""

    classes: int
    images: int
    smallest_class: int

    @classmethod
    def of(cls, folder: LabelledFolder) -> FolderShape:
        counts = list(folder.counts().values()) or [0]
        return cls(len(folder.classes), len(folder.samples), min(counts))


def default_recipe(shape: FolderShape, device_type: str = "cpu", **overrides: object) -> FitConfig:
    """The recipe for a training part of this shape on this device ("cpu", "cuda" or "mps"); `overrides` win.

    >>> r = default_recipe(FolderShape(classes=3, images=96, smallest_class=32))  # small: the embedding layer only
    >>> (r.epochs, r.trainable_stages, r.cache_trunk, r.stretch, r.warmup_epochs)
    (1, 0, True, 10.0, 0)
    >>> r = default_recipe(FolderShape(classes=3, images=96, smallest_class=32), method="triplet")  # SGD steps
    >>> (r.classes_per_batch, r.per_class, r.epochs, r.lr, r.stretch)
    (3, 8, 38, 0.02, 0.0)
    >>> r = default_recipe(FolderShape(classes=20, images=2400, smallest_class=120))
    >>> (r.classes_per_batch, r.per_class, r.epochs, r.trainable_stages, r.crop_size, r.backbone_lr_mult)
    (20, 3, 6, 6, 160, 0.1)
    >>> r = default_recipe(FolderShape(classes=98, images=4052, smallest_class=24), "cuda")
    >>> (r.classes_per_batch, r.per_class, r.epochs, r.trainable_stages, r.crop_size)
    (25, 3, 15, None, None)
    """
    gpu = device_type in ("cuda", "mps")
    classes_per_batch = max(2, min(25, shape.classes))
    per_class = max(3, min(8, math.ceil(TARGET_BATCH / classes_per_batch), max(2, shape.smallest_class // 2)))
    batch = classes_per_batch * per_class
    steps_per_epoch = max(1, shape.images // batch)
    stages = overrides.get("trainable_stages", default_trainable_stages(shape, device_type))
    if stages == 0:  # the embedding layer and the proxies alone, on features computed once
        if stretches(overrides):
            config = FitConfig(
                epochs=1, warmup_epochs=0, classes_per_batch=classes_per_batch, per_class=per_class,
                trainable_stages=0, choice_folds=CHOICE_FOLDS, cache_trunk=True, cache_views=1,
                stretch=STRETCH_FACTOR, device=device_type,
            )  # fmt: skip
            return replace(config, **overrides)  # type: ignore[arg-type]
        config = FitConfig(
            epochs=max(MIN_EPOCHS, min(4 * MAX_EPOCHS, round(HEAD_STEPS / steps_per_epoch))),
            warmup_epochs=0,
            classes_per_batch=classes_per_batch,
            per_class=per_class,
            lr=HEAD_LR,
            # measured for NormSoftmax's proxies; other methods' own parameters keep the layer's rate
            proxy_lr_mult=HEAD_PROXY_LR_MULT if overrides.get("method", "normsoftmax") == "normsoftmax" else 1.0,
            trainable_stages=0,
            choice_folds=CHOICE_FOLDS,
            cache_trunk=True,
            cache_views=1,
            device=device_type,
        )
        return replace(config, **overrides)  # type: ignore[arg-type]
    seen = GPU_IMAGES if gpu else CPU_IMAGES
    epochs = max(MIN_EPOCHS, min(MAX_EPOCHS, round(seen / (steps_per_epoch * batch))))
    config = FitConfig(
        epochs=epochs,
        warmup_epochs=1,
        classes_per_batch=classes_per_batch,
        per_class=per_class,
        trainable_stages=None if gpu else CPU_STAGES,
        crop_size=None if gpu else CPU_CROP,
        device=device_type,
    )
    return replace(config, **overrides)  # type: ignore[arg-type]


def stretches(overrides: dict[str, object]) -> bool:
    """Whether a small folder's embedding layer is stretched (trainer.class_stretch) rather than trained by steps:
    with NormSoftmax, unless the settings ask for steps (`stretch` 0, or more than one epoch).

    >>> stretches({}), stretches({"epochs": 1}), stretches({"epochs": 10}), stretches({"method": "arcface"})
    (True, True, False, False)
    """
    epochs = overrides.get("epochs")
    asks_for_steps = overrides.get("stretch") == 0 or (isinstance(epochs, int) and epochs > 1)
    return overrides.get("method", "normsoftmax") == "normsoftmax" and not asks_for_steps


def head_only_below(device_type: str) -> int:
    """Training parts smaller than this keep the backbone as it is on this device ("cpu", "cuda" or "mps")."""
    return HEAD_ONLY_BELOW if device_type in ("cuda", "mps") else HEAD_ONLY_BELOW_CPU


def default_trainable_stages(shape: FolderShape, device_type: str = "cpu") -> int | None:
    """How many of the backbone's last stages train by default: 0 (the embedding layer alone) below
    head_only_below(device) training images, else the last CPU_STAGES on a CPU and all of them (None) on a GPU.

    >>> default_trainable_stages(FolderShape(20, 1500, 60)), default_trainable_stages(FolderShape(20, 1500, 60), "cuda")
    (0, None)
    """
    if shape.images < head_only_below(device_type):
        return 0
    return None if device_type in ("cuda", "mps") else CPU_STAGES


def recipe_warnings(shape: FolderShape, protocol: str) -> list[str]:
    """Why this folder may be too small to learn from, each with what would help (empty when it looks fine)."""
    warnings = []
    if shape.smallest_class < 10:
        warnings.append(
            f"the smallest class has {shape.smallest_class} images to train on: with fewer than 10 per class the "
            "model mostly memorises them; 20 or more per class help"
        )
    if shape.images < 60:
        warnings.append(
            f"{shape.images} training images are very few: the result may not beat the starting model (it is then "
            "kept); add images, or train on everything (split none) once the settings are known to help"
        )
    if protocol == "classes" and shape.classes < 4:
        warnings.append(
            f"only {shape.classes} classes train under the new-classes protocol: what the model learns about so few "
            "classes rarely carries over to others; the my-classes protocol (split by images) fits such a folder"
        )
    return warnings
