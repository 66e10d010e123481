"""Choosing the epoch to keep by folds of the training images, then training on all of them.

When the whole backbone stays frozen (trainer.recipe's small-folder recipe), an epoch costs milliseconds: the
embedding layer and the proxies train on feature maps cached once per image. There, setting a fifth of the
training images aside to choose the epoch (trainer.folders.carve_validation) costs more than it buys: the model
learns from 20 % fewer images of each class, and a part of a few dozen images is a noisy judge, which kept the
starting model on 5 of 9 small folders where training on every image gained up to 6 points (bench/finetune_small,
my classes). So each of `folds` parts of every class's images judges a copy trained on the rest, from the same
start and with the same schedule; their scores are averaged per epoch, the epoch that beats the start on the
average (by trainer.epoch_choice.replaces_best's rule) is chosen, and the model that is kept is that epoch of a run on
every training image. No image ever judges a model that trained on it; the held-out part shown to the person is
never used. On those 9 folders (with trainer.recipe's rates): median held-out gain +0.0 with the part set aside,
+2.8 with folds, and no folder lost Recall@1 either way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from trainer.card import ModelCard
from trainer.config import FitConfig
from trainer.epoch_choice import fold_of_each_image, fold_scores, replaces_best, selection_score
from trainer.folders import LabelledFolder
from trainer.progress import Cancelled, Progress
from trainer.samplers import ClassBalancedSampler


class FoldTrainer(Protocol):
    """What of trainer.fit's run the folds use: its model, proxies and cached features, and its training step."""

    trunk_cache: torch.Tensor | None
    train_set: LabelledFolder
    config: FitConfig
    card: ModelCard
    model: Any  # trainer.model.EmbeddingModel
    objective: nn.Module
    optimizer: torch.optim.Optimizer
    steps_per_epoch: int
    device: torch.device
    cb: Any  # trainer.fit.FitCallbacks
    cancel: Callable[[], bool]

    def is_candidate(self, epoch: int) -> bool: ...
    def pooled_training_features(self) -> torch.Tensor: ...
    def reset_proxies(self, pooled: torch.Tensor, labels: torch.Tensor) -> None: ...
    def _build_optimizer(self) -> torch.optim.Optimizer: ...
    def _set_epoch_lr(self, epoch: int) -> None: ...
    def _set_train_mode(self, warm: bool) -> None: ...
    def _step(self, images: torch.Tensor, labels: torch.Tensor, from_cache: bool, warm: bool) -> float | None: ...


@dataclass(frozen=True)
class FoldChoice:
    """The epoch chosen (0: the starting model) and the folds' mean selection scores of every candidate epoch."""

    epoch: int
    scores: dict[int, dict[str, float]]
    folds: int

    def to_json(self) -> dict[str, object]:
        return {"epoch": self.epoch, "folds": self.folds, "scores": {str(k): v for k, v in self.scores.items()}}

    @classmethod
    def from_json(cls, data: dict[str, object]) -> FoldChoice:
        scores = data["scores"]
        assert isinstance(scores, dict)
        return cls(int(str(data["epoch"])), {int(k): dict(v) for k, v in scores.items()}, int(str(data["folds"])))


def choose_epoch_by_folds(trainer: FoldTrainer, folds: int) -> FoldChoice:
    """Train a copy from the trainer's current (starting) state on each fold's rest, judge it on the fold after
    every candidate epoch, and choose the epoch with the best mean score; the trainer's model, proxies and
    optimizer are as they were when it returns. `folds`: trainer.epoch_choice.usable_folds's count."""
    cache = trainer.trunk_cache
    assert cache is not None, "fold choice needs the cached feature maps of a fully frozen backbone"
    labels = np.asarray(trainer.train_set.labels, dtype=np.int64)
    k, cfg = folds, trainer.config
    fold = fold_of_each_image(labels, k, cfg.seed)
    start_model = {n: t.detach().clone() for n, t in trainer.model.state_dict().items()}
    start_objective = {n: t.detach().clone() for n, t in trainer.objective.state_dict().items()}
    pooled = trainer.pooled_training_features()
    candidates = [e for e in range(cfg.epochs + 1) if trainer.is_candidate(e)]
    per_epoch: dict[int, list[dict[str, float]]] = {e: [] for e in candidates}
    total = k * cfg.epochs * trainer.steps_per_epoch
    done = 0
    label_tensor = torch.from_numpy(labels)
    for f in range(k):
        rest, judge = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
        trainer.model.load_state_dict(start_model)
        trainer.objective.load_state_dict(start_objective)
        trainer.reset_proxies(pooled[rest], label_tensor[rest])  # the fold's own images never place a proxy
        trainer.optimizer = trainer._build_optimizer()
        sampler = ClassBalancedSampler(
            labels[rest], min(cfg.classes_per_batch, len(np.unique(labels[rest]))), cfg.per_class,
            trainer.steps_per_epoch, seed=cfg.seed + 1 + f,
        )  # fmt: skip
        gen = torch.Generator().manual_seed(cfg.seed * 1000 + 7 + f)
        per_epoch[0].append(_judge(trainer, pooled, labels, judge, rest))
        for epoch in range(cfg.epochs):
            sampler.set_epoch(epoch)
            trainer._set_epoch_lr(epoch)
            trainer._set_train_mode(False)
            for idx in sampler:
                if trainer.cancel():
                    raise Cancelled(f"training cancelled while choosing the epoch (fold {f + 1} of {k})")
                index = torch.from_numpy(rest[np.asarray(idx)])
                views = torch.randint(0, cache.shape[1], (len(index),), generator=gen)
                trainer._step(cache[index, views], label_tensor[index].to(trainer.device), True, False)
                done += 1
                if trainer.cb.on_progress:
                    trainer.cb.on_progress(Progress(done, total, 0.0, f"choosing the epoch (fold {f + 1} of {k})"))
            if epoch + 1 in per_epoch:
                per_epoch[epoch + 1].append(_judge(trainer, pooled, labels, judge, rest))
    trainer.model.load_state_dict(start_model)
    trainer.objective.load_state_dict(start_objective)
    trainer.optimizer = trainer._build_optimizer()
    means = {e: {key: float(np.mean([s[key] for s in runs])) for key in runs[0]} for e, runs in per_epoch.items()}
    chosen, best = 0, selection_score(means[0])
    for epoch in candidates[1:]:
        if replaces_best(means[epoch], means[0], best):
            chosen, best = epoch, selection_score(means[epoch])
    return FoldChoice(chosen, means, k)


def _judge(
    trainer: FoldTrainer,
    pooled: torch.Tensor,
    labels: npt.NDArray[np.int64],
    judge: npt.NDArray[np.int64],
    rest: npt.NDArray[np.int64],
) -> dict[str, float]:
    """The fold's images searched among the images its copy trained on, as a person searches for more of their
    labelled categories: Recall@1 and MAP@R, float and binary, keyed as trainer.fit's selection scores."""
    trainer.model.eval()
    with torch.inference_mode():
        emb = trainer.model.embedding(pooled.to(trainer.device)).float().cpu().numpy()
    return fold_scores(emb[:, : (trainer.card.dim // 8) * 8], labels, judge, rest)
