"""How long a fine-tuning run will take, from the recipe and the stage times measured on this machine.

torch-free except `stage_seconds` (which measures, on a worker thread): the wizard's settings page shows the
estimate as the settings change, and bench/finetune_small.py checks it against the measured runs.

What a run does, and what each part costs per image (stage times are forward passes per image):
* warm start: the pooled features of up to 2,000 training images (the whole network at the input size);
* each epoch: its steps (trainable stages forward + backward, frozen ones forward, plus decoding and
  augmenting the image), then the held-out part embedded once (whole network, decoding);
* the candidate epochs (trainer.fit: the start, those after the first rate drop, the last): the selection part
  embedded, and for my classes up to 150 training images it is searched against;
* the starting model is judged the same way before the first epoch;
* with the whole backbone frozen (the small-folder recipe), every part goes through it once: the frozen stages
  are cached, and each epoch is judged on the cached features; where folds of the training images choose the
  epoch (trainer.epoch_choice), each fold trains a copy on those features first.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from trainer.config import FitConfig
from trainer.epoch_choice import GALLERY_IMAGES, RunParts
from trainer.folders import LabelledFolder

BACKWARD_FACTOR = 3.0
"""A training step costs about three forward passes of the stages that train (forward, then gradients for the
activations and for the weights)."""
DECODE_SECONDS = 0.004
"""Decoding, resizing and augmenting one image on a CPU that is also training (measured on 2 cores)."""
EPOCH_SECONDS = 0.3
"""Each epoch's checkpoint (written atomically with a checksum) and bookkeeping: clothing, 6 classes, the
embedding layer alone, took 9 s for 1 epoch and 12 s for 10 on 2 cores, where images cost nothing per epoch."""
FOLD_EPOCH_SECONDS = 0.1
FOLD_SECONDS = 0.1
"""An epoch of one fold's copy (trainer.fold_choice), steps on cached features with no checkpoint, and each fold's
start (weights reset, judged once): clothing, 6 classes, 192 training images on 2 cores, 5 folds took 1.1 s for
1 epoch and 5.6 s for 10."""
STRETCH_FOLD_SECONDS = 0.00125
"""Judging the stretch (trainer.class_stretch), per fold and training image: fitting the fold's proxies and searching
its images among the others' at full width, float and binary. Birds, 50 species, 2,344 training images on 2 cores:
5 folds took 14.7 s (generated features: 9.4 s for 2,300 images, 1.8 s for 192); a constant per fold had left it
out of the estimate of that run (65 s against 93 s measured)."""
RUN_SECONDS = 2.5
"""Once per run: loading the starting model (1.7 s before the first image on 2 cores), saving the kept one and
writing its ONNX Runtime file beside it (0.9 s)."""
WARM_START_IMAGES = 2000


@dataclass(frozen=True)
class RunShape:
    """What a run processes, from its parts (trainer.folders)."""

    train_images: int
    train_classes: int
    selection_images: int
    test_images: int
    continuing: bool  # from a retrieval model of the same width (no PCA start of a new embedding layer)
    selection_by_images: bool = True  # the selection part holds images of the training classes (my classes)
    folds: int = 0  # the epoch is chosen on this many folds of the training images (trainer.epoch_choice)

    @classmethod
    def of(cls, parts: RunParts, test: LabelledFolder | None, continuing: bool) -> RunShape:
        """The shape of a run on these parts (trainer.epoch_choice.run_parts: what really trains and chooses)."""
        train, selection = parts.train, parts.selection
        return cls(
            len(train.samples), len(train.classes), len(selection.samples) if selection else 0,
            len(test.samples) if test else 0, continuing,
            selection is not None and selection.classes == train.classes, parts.folds,
        )  # fmt: skip


def estimate_seconds(
    shape: RunShape, config: Mapping[str, Any] | Any, train_stages: list[float], eval_stages: list[float] | None = None
) -> float:
    """Seconds the run should take. `train_stages`: forward seconds per image of each backbone stage at the
    training crop; `eval_stages`: the same at the model's input size (defaults to `train_stages`).

    >>> shape = RunShape(train_images=200, train_classes=4, selection_images=40, test_images=60, continuing=True)
    >>> cfg = {"epochs": 10, "warmup_epochs": 1, "classes_per_batch": 4, "per_class": 6, "trainable_stages": 6}
    >>> round(estimate_seconds(shape, cfg, [0.001] * 9))
    72
    """
    cfg: dict[str, Any] = dict(config) if isinstance(config, Mapping) else asdict(config)
    eval_stages = eval_stages or train_stages
    full_eval = sum(eval_stages) + DECODE_SECONDS
    k = cfg.get("trainable_stages")
    head = sum(train_stages) if k is None else sum(train_stages[len(train_stages) - k :])  # k = 0: none
    frozen = sum(train_stages) - head
    cached = bool(cfg.get("cache_trunk"))
    batch = min(cfg["classes_per_batch"], max(1, shape.train_classes)) * cfg["per_class"]
    steps = cfg.get("batches_per_epoch") or max(1, shape.train_images // batch)
    images_per_epoch = steps * batch
    epochs = cfg["epochs"]
    warm = min(cfg.get("warmup_epochs", 0), epochs)
    decode = 0.0 if cached else DECODE_SECONDS
    trunk = 0.0 if cached else frozen
    seconds = images_per_epoch * (
        warm * (head + trunk + decode) + (epochs - warm) * (BACKWARD_FACTOR * head + trunk + decode)
    )
    seconds += epochs * EPOCH_SECONDS
    if cfg.get("stretch"):
        seconds += shape.folds * shape.train_images * STRETCH_FOLD_SECONDS + RUN_SECONDS
    else:
        seconds += shape.folds * (epochs * FOLD_EPOCH_SECONDS + FOLD_SECONDS) + RUN_SECONDS
    if cached:
        seconds += shape.train_images * cfg.get("cache_views", 2) * (frozen + DECODE_SECONDS)
    seconds += min(shape.train_images, WARM_START_IMAGES) * (head if cached else full_eval)
    # With the whole backbone frozen, each part is embedded through it once (trainer.epoch_judge.EpochJudge.embedded).
    judged = 1 if k == 0 else None
    seconds += (judged or epochs + 1) * min(shape.test_images, cfg.get("eval_max_images", 2000)) * full_eval
    if shape.selection_images:
        gallery = min(GALLERY_IMAGES, shape.train_images) if shape.selection_by_images else 0
        seconds += (judged or candidate_epochs(cfg)) * (shape.selection_images + gallery) * full_eval
    return seconds


def candidate_epochs(cfg: Mapping[str, Any]) -> int:
    """How many times the selection part is judged: trainer.config.FitConfig.is_candidate's epochs.

    >>> candidate_epochs({"epochs": 10, "warmup_epochs": 1})  # the start, epochs 8 to 10
    4
    """
    schedule = ("epochs", "warmup_epochs", "lr_milestones", "lr_gamma")
    config = FitConfig(**{"warmup_epochs": 0, **{k: cfg[k] for k in schedule if k in cfg}})  # as estimate_seconds
    return sum(config.is_candidate(e) for e in range(config.epochs + 1))


def stage_seconds(backbone: str, crop: int, device: str, batch: int = 8) -> list[float]:
    """Seconds per image of each backbone stage's forward pass, measured on this machine (about a second).

    Untrained weights cost the same as trained ones, so nothing is loaded from disk. The best of two runs is
    kept: the first pays for memory allocation and kernel selection.
    """
    import torch

    from trainer.backbones import backbone_stages, get_backbone
    from trainer.devices import autocast_for, pick_device, uses_channels_last

    dev = pick_device(device)
    model = get_backbone(backbone).build(False, None).eval().to(dev)
    if uses_channels_last(dev):
        model = model.to(memory_format=torch.channels_last)
    stages = backbone_stages(model)
    best = [float("inf")] * len(stages)
    with torch.inference_mode(), autocast_for(dev):
        for _ in range(2):
            x = torch.randn(batch, 3, crop, crop, device=dev)
            if uses_channels_last(dev):
                x = x.contiguous(memory_format=torch.channels_last)
            for i, stage in enumerate(stages):
                if dev.type == "cuda":
                    torch.cuda.synchronize()
                t = time.perf_counter()
                x = stage(x)
                if dev.type == "cuda":
                    torch.cuda.synchronize()
                best[i] = min(best[i], (time.perf_counter() - t) / batch)
    return best
