"""What a training run is made of, without torch: the GUI thread builds, shows and compares these.

`FitConfig` is everything that shapes a run (`trainer.fit.fit` takes it); `key()` names the settings a checkpoint
must match to be resumed.

Why the backbone trains at a tenth of the head's learning rate (`backbone_lr_mult=0.1`): with the paper's single
rate (0.01 for everything) the first steps after the warm-up epoch move the pretrained EfficientNet-Lite weights
far enough to break the features the new layers were just fitted to. The loss jumps from about 1 to 5-18 within
three steps and the held-out Recall@1 falls 15-25 points (clothing, 6 classes x 40 images: 81.7 -> 67.5; on an
H100 with the paper's batches of 75 on cars98 the loss went 8.2 -> 13.3 at the unfreeze). Measured, not guessed:
the collapse stays with the batch-norm affine weights frozen (64.2), at 224 px crops (70.8) and without the proxy
initialisation (66.7); it goes with the backbone at x0.1 (88.3) or x0.03 (89.2). The backbone has no momentum or
weight-decay state to carry from the warm-up: it computes no gradient then.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class FitConfig:
    method: str = "normsoftmax"
    method_params: dict[str, Any] = field(default_factory=dict)
    dim: int | None = None  # None: the base model's dimension (or the backbone width)
    nested: bool = True  # train every nested prefix (64, 128, ... dim)
    epochs: int = 10
    warmup_epochs: int = 1
    classes_per_batch: int = 25
    per_class: int = 3
    batches_per_epoch: int | None = None
    lr: float = 0.01
    backbone_lr_mult: float = 0.1  # the backbone's lr is lr x this: at x1 the first steps after warm-up break it
    proxy_lr_mult: float = 1.0  # the objective's own parameters (NormSoftmax proxies) learn at lr x this
    momentum: float = 0.9
    weight_decay: float = 1e-4
    lr_milestones: tuple[float, ...] = (0.6, 0.85)  # fractions of the fine-tuning epochs
    lr_gamma: float = 0.1
    trainable_stages: int | None = None  # None: the whole backbone trains; k: only its last k stages (0: none)
    cache_trunk: bool = False  # compute the frozen stages once (needs trainable_stages)
    cache_views: int = 2
    cache_dir: str | None = None  # share trunk caches between runs (keyed by content); default: the run folder
    crop_size: int | None = None  # training resolution; default the model's input size
    freeze_batchnorm: bool = True  # keep the backbone's batch-norm statistics (its affine weights still train)
    pca_init: bool = True  # initialise the embedding layer as a PCA rotation of the pooled features
    proxy_init: bool = True  # start class proxies (NormSoftmax, ArcFace) at the class mean embeddings
    choice_folds: int = 0  # >0: with the backbone frozen, choose the epoch on this many folds (trainer.fold_choice)
    stretch: float = 0.0  # >0: with the backbone frozen, stretch the embedding layer (trainer.class_stretch), no steps
    seed: int = 0
    device: str = "auto"
    num_workers: int | None = None  # image-decoding processes; None: trainer.devices.default_loader_workers
    eval_max_images: int = 2000
    checkpoint_every: int = 50  # steps

    def lr_factor(self, epoch: int) -> float:
        """The learning rate of 0-based `epoch` as a share of `lr`: step decay by `lr_gamma` at each milestone
        (a fraction of the epochs after the warm-up).

        >>> [round(FitConfig(epochs=10, warmup_epochs=1).lr_factor(e), 3) for e in (0, 6, 7, 8, 9)]
        [1.0, 1.0, 0.1, 0.1, 0.01]
        """
        if epoch < self.warmup_epochs:
            return 1.0
        progress = (epoch - self.warmup_epochs) / max(1, self.epochs - self.warmup_epochs)
        return float(self.lr_gamma ** sum(progress >= m for m in self.lr_milestones))

    def is_candidate(self, epoch: int) -> bool:
        """Whether the model after `epoch` epochs may be kept: the start (0), the last, and those after the learning
        rate first drops (before it the weights are still in the noisy high-rate phase; choosing among fewer
        epochs also chases less noise). trainer.fit judges these; trainer.estimate counts them.

        >>> [e for e in range(11) if FitConfig(epochs=10, warmup_epochs=1).is_candidate(e)]
        [0, 8, 9, 10]
        """
        if epoch == 0 or epoch >= self.epochs:
            return True
        return epoch > self.warmup_epochs and self.lr_factor(epoch - 1) < 1.0

    def key(self) -> str:
        """What must match for a checkpoint to be resumed (everything that shapes the run)."""
        fields = asdict(self)
        for volatile in ("device", "num_workers", "checkpoint_every", "eval_max_images", "cache_dir"):
            fields.pop(volatile)
        return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()[:16]
