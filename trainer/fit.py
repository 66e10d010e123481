"""The training loop: warm-up with the backbone frozen, then fine-tuning; checkpoints, resume, callbacks.

Recipe (Zhai & Wu's reference code): SGD with momentum 0.9 and weight decay 1e-4, class-balanced batches,
step decay of the learning rate, the first epoch(s) training only the new layers (embedding layer and the
objective's own parameters, e.g. NormSoftmax proxies) so that random proxies do not wreck the pretrained
backbone. bf16 autocast and channels_last on a GPU; a non-finite loss skips its step instead of poisoning the
weights. Checkpoints are written atomically every few steps and at every epoch end, loaded with
`weights_only=True` (no unpickling), and a run resumes at the exact batch where it stopped: the sampler's
order depends only on (seed, epoch).

Under torchrun every process trains on its own classes of the global batch and rank 0 alone evaluates, writes
and exports (trainer.distributed says how the result stays the one-process run's).

On a CPU, `trainable_stages` + `cache_trunk` fine-tune only the last backbone stages and compute the frozen
ones once per image (trainer.trunk_cache): the recipe the bundled model was trained with.

The run's parts live beside it: where it starts (trainer.warm_start), what it trains on (trainer.training_batches),
its checkpoint (trainer.run_checkpoint), how an epoch is judged (trainer.epoch_judge) and chosen
(trainer.epoch_choice, trainer.fold_choice), the small-folder stretch (trainer.class_stretch) and the card of the
kept model (trainer.run_card). This module is the loop that ties them together.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from trainer.backbones import backbone_stages
from trainer.card import ModelCard, model_paths, nested_dims
from trainer.class_stretch import choose_by_folds, stretched_weight
from trainer.config import FitConfig
from trainer.data import LabelledFolder, require_trainable
from trainer.devices import autocast_for, pick_device, uses_channels_last
from trainer.distributed import current_world, distributed_problem
from trainer.epoch_choice import replaces_best, run_parts, selection_score
from trainer.epoch_judge import Best, EpochJudge
from trainer.fold_choice import FoldChoice, choose_epoch_by_folds
from trainer.methods import build_objective
from trainer.model import EmbeddingModel, load_model, save_model
from trainer.progress import CancelCheck, Cancelled, Progress, never_cancelled
from trainer.run_card import KeptChoice, trained_card
from trainer.run_checkpoint import load_checkpoint, save_checkpoint
from trainer.samplers import DistributedClassBalancedSampler
from trainer.training_batches import cached_batches, loader_batches, trunk_cache_key
from trainer.trunk_cache import compute_trunk_cache, load_cache, save_cache
from trainer.warm_start import pca_rotation, proxies_to_class_means


@dataclass
class FitCallbacks:
    on_batch: Callable[[int, int, float, float], None] | None = None  # (global step, epoch, loss, lr)
    on_epoch: Callable[[int, dict[str, float]], None] | None = None  # (epoch, metrics such as R@1)
    on_progress: Callable[[Progress], None] | None = None
    on_message: Callable[[str], None] | None = None

    def message(self, text: str) -> None:
        if self.on_message:
            self.on_message(text)


@dataclass
class FitResult:
    model_path: Path
    card: ModelCard
    history: list[dict[str, float]]
    resumed_from_step: int = 0
    skipped_steps: int = 0
    kept_epoch: int | None = None  # the exported epoch (0: the starting model); None: the last, nothing chose


class FitError(RuntimeError):
    pass


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


class _Trainer:
    """One run: built from the config, then `run()`; state is what a checkpoint holds."""

    def __init__(
        self,
        train: LabelledFolder,
        out: Path,
        config: FitConfig,
        base: Path | None,
        backbone: str,
        validation: LabelledFolder | None,
        callbacks: FitCallbacks,
        cancel: CancelCheck,
        backbone_weights: Path | None = None,
        selection: LabelledFolder | None = None,
    ) -> None:
        require_trainable(train)
        parts = run_parts(train, selection, config)
        train, selection, self.folds = parts.train, parts.selection, parts.folds
        """With the backbone frozen, the images set aside to choose the epoch train too, and folds of all the training
        images choose (trainer.fold_choice says why)."""
        self.fold_choice: FoldChoice | None = None
        self.selection_set = selection if selection is not None and len(selection.classes) >= 2 else None
        self.unjudged = selection is not None and self.selection_set is None
        """A selection part was asked for but holds nothing that can judge (trainer.folders.carve_validation's
        empty part): the starting model is what is exported."""
        self.train_set, self.val_set, self.config, self.cb, self.cancel = (
            train,
            validation,
            config,
            callbacks,
            cancel,
        )
        self.out = Path(out)
        self.run_dir = self.out.with_name(self.out.name + ".run")
        self.device = pick_device(config.device)
        self.world = current_world(self.device)
        shared = replace(config, classes_per_batch=min(config.classes_per_batch, len(train.classes)))
        problem = distributed_problem(shared, self.world.size)
        if problem:
            raise FitError(problem)
        _seed_everything(config.seed)
        self.model, self.base_card = self._build_model(base, backbone, backbone_weights)
        if not config.nested:
            self.model.card = ModelCard(**{**asdict(self.model.card), "nested_dims": [self.model.card.dim]})
        self.card = self.model.card
        dims = self.card.nested_dims
        self.objective = build_objective(config.method, self.card.dim, len(train.classes), dims, **config.method_params)
        self.stages = backbone_stages(self.model.backbone)
        k = config.trainable_stages
        self.n_frozen = 0 if k is None else max(0, len(self.stages) - k)
        if config.cache_trunk and k is None:
            raise FitError("cache_trunk needs trainable_stages (the number of last backbone stages to train)")
        if config.stretch and (k != 0 or not config.cache_trunk or not isinstance(self.model.embedding, nn.Linear)):
            raise FitError(
                "stretching the embedding layer needs the backbone frozen (--trainable-stages 0, --cache-trunk) and "
                "a model with an embedding layer; give --stretch 0 to train by steps"
            )
        for stage in self.stages[: self.n_frozen]:
            stage.requires_grad_(False)
        self.crop = config.crop_size or self.card.input_size
        self.resize = round(self.crop * self.card.resize_size / self.card.input_size)
        self.model.to(self.device)
        self.objective.to(self.device)
        if uses_channels_last(self.device):
            self.model.to(memory_format=torch.channels_last)
        self.sampler = DistributedClassBalancedSampler(
            train.labels, shared.classes_per_batch, config.per_class, config.batches_per_epoch, seed=config.seed,
            rank=self.world.rank, world_size=self.world.size,
        )  # fmt: skip
        self.steps_per_epoch = len(self.sampler)
        self.optimizer = self._build_optimizer()
        self.global_step = 0
        self.history: list[dict[str, float]] = []
        self.skipped_steps = 0
        self.trunk_cache: torch.Tensor | None = None
        self.best: Best | None = None
        self.start_scores: dict[str, float] = {}  # the selection scores of epoch 0 (resumed runs: from the history)
        self.judge = EpochJudge(self.model, self.device, config.seed, backbone_frozen=self.n_frozen == len(self.stages))

    # -- building ---------------------------------------------------------------------------------------
    def _build_model(
        self, base: Path | None, backbone: str, weights: Path | None
    ) -> tuple[EmbeddingModel, ModelCard | None]:
        cfg = self.config
        if base is not None:
            start = load_model(base)
            base_card = start.card
            dim = cfg.dim or base_card.dim
            if base_card.has_embedding_layer and base_card.dim == dim:
                start.card = ModelCard(**{**asdict(base_card), "nested_dims": nested_dims(dim)})
                return start, base_card
            card = ModelCard.for_backbone(self.out.name, base_card.backbone, dim)
            model = EmbeddingModel(card, pretrained=False)
            model.backbone.load_state_dict(start.backbone.state_dict())
            return model, base_card
        card = ModelCard.for_backbone(self.out.name, backbone, cfg.dim or None)
        if not card.has_embedding_layer:
            card = ModelCard.for_backbone(self.out.name, backbone, card.feature_dim)
        return EmbeddingModel(card, pretrained=True, backbone_weights=weights), None

    def _build_optimizer(self) -> torch.optim.Optimizer:
        cfg = self.config
        backbone = [p for s in self.stages[self.n_frozen :] for p in s.parameters() if p.requires_grad]
        groups = [{"params": list(self.model.new_layer_parameters()), "lr": cfg.lr, "base_lr": cfg.lr}]
        objective = list(self.objective.parameters())
        if objective:
            lr = cfg.lr * cfg.proxy_lr_mult
            groups.append({"params": objective, "lr": lr, "base_lr": lr})
        if backbone:
            lr = cfg.lr * cfg.backbone_lr_mult
            groups.append({"params": backbone, "lr": lr, "base_lr": lr, "backbone": True})
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)

    def _set_epoch_lr(self, epoch: int) -> None:
        factor = self.config.lr_factor(epoch)
        warm = epoch < self.config.warmup_epochs
        for group in self.optimizer.param_groups:
            # During warm-up the backbone group gets lr 0: only the new layers learn.
            group["lr"] = 0.0 if (warm and group.get("backbone")) else group["base_lr"] * factor

    # -- forward ----------------------------------------------------------------------------------------
    def _trunk(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.stages[: self.n_frozen]:
            x = stage(x)
        return x

    def _head(self, maps: torch.Tensor) -> torch.Tensor:
        for stage in self.stages[self.n_frozen :]:
            maps = stage(maps)
        return self.model.embedding(self.model.norm(self.model.pool(maps).flatten(1)))

    def _set_train_mode(self, warm: bool) -> None:
        self.model.train()
        for stage in self.stages[: self.n_frozen]:
            stage.eval()  # frozen stages keep their batch-norm statistics
        if warm:
            for stage in self.stages:
                stage.eval()
        if self.config.freeze_batchnorm:
            # ImageNet statistics transfer to unseen classes better than ones re-estimated on a few training
            # classes: with lr 0, updating them alone cost 3.5 Recall@1 points on cars98 (bench/paper_tables).
            for module in self.model.backbone.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()

    def _embed_batch(self, batch: torch.Tensor, from_cache: bool, warm: bool) -> torch.Tensor:
        """Frozen stages (or, during warm-up, the whole backbone) run without building a graph."""
        if from_cache:
            maps = batch.to(self.device, non_blocking=True).float()
            # Drawn on the CPU: its generator is in the checkpoint, so a resumed run flips the same maps
            # (a CUDA draw would come from a generator that no checkpoint holds).
            flip = (torch.rand(maps.shape[0]) < 0.5).to(maps.device)
            x = torch.where(flip[:, None, None, None], maps.flip(3), maps)
        else:
            x = self.model.normalize_uint8(batch.to(self.device, non_blocking=True))
            if uses_channels_last(self.device):
                x = x.contiguous(memory_format=torch.channels_last)
            if self.n_frozen:
                with torch.no_grad():
                    x = self._trunk(x)
        if warm:
            with torch.no_grad():
                for stage in self.stages[self.n_frozen :]:
                    x = stage(x)
            return self.model.embedding(self.model.norm(self.model.pool(x).flatten(1)))
        return self._head(x)

    # -- data -------------------------------------------------------------------------------------------
    def _prepare_cache(self) -> None:
        """The frozen stages' outputs of every training image's views, computed once (or read back) for the run."""
        cfg = self.config
        frozen = self.stages[: self.n_frozen]
        key = trunk_cache_key(self.train_set.samples, frozen, cfg.cache_views, self.crop, self.card.backbone, cfg.seed)
        path = (Path(cfg.cache_dir) if cfg.cache_dir else self.run_dir) / f"trunk-cache-{key}.safetensors"
        cache = load_cache(path, key)
        if cache is None:
            self.cb.message(f"caching the {self.n_frozen} frozen stages for {len(self.train_set.samples)} images")
            cache = compute_trunk_cache(
                nn.Sequential(*frozen), self.model.normalize_uint8, self.train_set.samples, self.crop, self.resize,
                cfg.cache_views, self.device, seed=cfg.seed, progress=self.cb.on_progress, cancel=self.cancel,
            )  # fmt: skip
            save_cache(cache, path, key)
        self.trunk_cache = cache

    def data_key(self) -> str:
        """What the run trains on (every image and its class): the same settings on another folder, or on the
        same folder after images were added, must not resume this run's checkpoint."""
        samples = [[str(p), self.train_set.classes[y]] for p, y in self.train_set.samples]
        return hashlib.sha256(json.dumps(samples).encode()).hexdigest()[:16]

    # -- the loop ---------------------------------------------------------------------------------------
    def _warm_start(self) -> None:
        """PCA-initialise a new embedding layer and put each class proxy at its class's mean embedding.

        Random proxies make the first steps pull the embedding layer (and, after warm-up, the backbone) towards
        arbitrary directions, which costs the pretrained features some of their generality; proxies that start
        where the classes already are leave the loss only the genuinely useful work.
        """
        cfg = self.config
        layer = self.model.embedding
        continuing = self.base_card is not None and self.base_card.has_embedding_layer
        want_pca = cfg.pca_init and isinstance(layer, nn.Linear) and not continuing
        if not (want_pca or cfg.proxy_init):
            return
        feats, labels = self._sample_pooled_features()
        if feats.shape[0] < 2:
            return
        with torch.no_grad():
            if want_pca:
                assert isinstance(layer, nn.Linear)
                rotation = pca_rotation(feats, min(self.card.dim, feats.shape[1]))
                layer.weight.zero_()
                layer.weight[: rotation.shape[0]] = rotation.to(layer.weight.device)
            if cfg.proxy_init:
                emb = self.model.embedding(feats.to(self.device)).float()
                proxies_to_class_means(self.objective, emb, labels.to(self.device))

    def _sample_pooled_features(self) -> tuple[torch.Tensor, torch.Tensor]:
        """LayerNorm'd pooled backbone features of up to 2,000 training images (centre crops), with labels."""
        if self.trunk_cache is None:
            from trainer.evaluation import embed_folder

            _, labels, feats = embed_folder(
                self.model, self.train_set, self.device, 2000, self.config.seed, pooled_features=True
            )
            return torch.from_numpy(feats), torch.from_numpy(labels)
        rng = np.random.default_rng(self.config.seed)
        n = len(self.train_set.samples)
        pick = torch.from_numpy(np.sort(rng.choice(n, size=min(n, 2000), replace=False)))
        return self._pooled_from_cache(pick), torch.from_numpy(self.train_set.labels)[pick]

    def _pooled_from_cache(self, pick: torch.Tensor) -> torch.Tensor:
        """LayerNorm'd pooled features of these training images' centre crops (view 0 of the cache)."""
        assert self.trunk_cache is not None
        out = []
        self.model.eval()
        with torch.inference_mode(), autocast_for(self.device):
            for i in range(0, len(pick), 64):
                maps = self.trunk_cache[pick[i : i + 64], 0].to(self.device).float()
                for stage in self.stages[self.n_frozen :]:
                    maps = stage(maps)
                out.append(self.model.norm(self.model.pool(maps).flatten(1)).float().cpu())
        return torch.cat(out)

    def pooled_training_features(self) -> torch.Tensor:
        """The pooled features of every training image, in the training part's order (trainer.fold_choice)."""
        return self._pooled_from_cache(torch.arange(len(self.train_set.samples)))

    def reset_proxies(self, pooled: torch.Tensor, labels: torch.Tensor) -> None:
        """Put each class proxy at the mean embedding of these images (when the recipe starts proxies there)."""
        if not self.config.proxy_init:
            return
        with torch.no_grad():
            emb = self.model.embedding(pooled.to(self.device)).float()
            proxies_to_class_means(self.objective, emb, labels.to(self.device))

    def run(self) -> FitResult:
        cfg = self.config
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if not self.world.agree(self.config.key() + self.data_key()):
            raise FitError("the processes see other images or settings: give each the same folder and command")
        if cfg.cache_trunk:
            self._prepare_cache()
        resumed = load_checkpoint(self)
        start_epoch, skip = resumed if resumed else (0, 0)
        resumed_from = self.global_step
        if resumed:
            self.cb.message(f"resuming at epoch {start_epoch + 1}, batch {skip + 1} (step {self.global_step})")
        else:
            self._warm_start()
            self.world.broadcast_state(self.model)  # one start everywhere, whatever each machine's rounding
            self.world.broadcast_state(self.objective)
            if self.folds:
                self.fold_choice = self._stretch_choice() if cfg.stretch else choose_epoch_by_folds(self, self.folds)
                what = "the stretched embedding" if cfg.stretch else f"epoch {self.fold_choice.epoch}"
                self.cb.message(
                    f"{what} chosen on {self.folds} folds of the training images"
                    if self.fold_choice.epoch
                    else f"no {'stretch' if cfg.stretch else 'epoch'} beat the starting model on {self.folds} "
                    "folds of the training images"
                )
            start = {**self._validate(), **self._choose(0)} if self.world.is_main else {}
            if self.unjudged:
                self.best = Best.of(self.model, 0, 0.0)
            if start:
                # Epoch 0: the starting point (no training loss yet), so curves, the result page and the choice
                # of the epoch to keep compare against it.
                self.history.append({"epoch": 0, **start})
                if self.cb.on_epoch:
                    self.cb.on_epoch(0, self.history[-1])
        loader = None
        if self.trunk_cache is None:
            epochs = range(start_epoch, cfg.epochs)
            loader = loader_batches(
                self.train_set, self.sampler, self.crop, self.resize, cfg.seed, epochs, skip, cfg.num_workers,
                self.device,
            )  # fmt: skip
        try:
            return self._epochs(start_epoch, skip, loader, resumed_from)
        finally:
            shutdown = getattr(loader, "_shutdown_workers", None)
            if shutdown is not None:
                shutdown()  # now, not whenever a cancelled run's traceback lets go of the loader

    def _stretch_choice(self) -> FoldChoice:
        """Whether the stretch (trainer.class_stretch) beats the start on folds of the training images, as a
        FoldChoice between epoch 0 (the start) and epoch 1 (stretched)."""
        assert isinstance(self.model.embedding, nn.Linear)
        self.cb.message(f"judging the stretch on {self.folds} folds of the training images")
        stretch, start, stretched = choose_by_folds(
            self.model.embedding.weight, self.pooled_training_features(), self.train_set.labels, self.folds,
            self.config.stretch, self.config.seed, self.cancel,
        )  # fmt: skip
        return FoldChoice(1 if stretch else 0, {0: start, 1: stretched}, self.folds)

    def _stretch_epoch(self, resumed_from: int) -> FitResult:
        """The one "epoch" of the small-folder recipe: the embedding layer stretched on every training image."""
        layer = self.model.embedding
        assert isinstance(layer, nn.Linear)
        labels = torch.from_numpy(self.train_set.labels)
        weight, loss = stretched_weight(layer.weight, self.pooled_training_features(), labels, self.config.stretch)
        with torch.no_grad():
            layer.weight.copy_(weight.to(layer.weight))
        self.cb.message(
            f"embedding layer stretched {self.config.stretch:g}x along the {len(self.train_set.classes) - 1} "
            "directions that separate the classes' proxies"
        )
        self.global_step += 1
        record = {"epoch": 1, "loss": loss}
        if self.world.is_main:
            record.update(self._validate())
            record.update(self._choose(1))
        self.history.append(record)
        if self.cb.on_epoch:
            self.cb.on_epoch(1, record)
        return self._export(resumed_from)

    def _epochs(self, start_epoch: int, skip: int, loader: Any, resumed_from: int) -> FitResult:
        cfg = self.config
        if cfg.stretch:
            return self._stretch_epoch(resumed_from)
        total_steps = cfg.epochs * self.steps_per_epoch
        started, steps_this_run = time.perf_counter(), 0
        for epoch in range(start_epoch, cfg.epochs):
            self.sampler.set_epoch(epoch)
            self._set_epoch_lr(epoch)
            warm = epoch < cfg.warmup_epochs
            self._set_train_mode(warm)
            batches = (
                itertools.islice(loader, self.steps_per_epoch - skip)
                if self.trunk_cache is None
                else cached_batches(self.trunk_cache, self.sampler, self.train_set.labels, cfg.seed, epoch, skip)
            )
            losses = []
            step_in_epoch = skip
            for images, labels in batches:
                if self.world.any(self.cancel()):
                    save_checkpoint(self, epoch, step_in_epoch)
                    raise Cancelled(f"training cancelled at epoch {epoch + 1}, step {self.global_step}")
                loss = self._step(images, labels.to(self.device), self.trunk_cache is not None, warm)
                step_in_epoch += 1
                self.global_step += 1
                steps_this_run += 1
                if loss is not None:
                    losses.append(loss)
                    if self.cb.on_batch:
                        self.cb.on_batch(self.global_step, epoch, loss, self.optimizer.param_groups[0]["lr"])
                if self.cb.on_progress:
                    rate = steps_this_run / max(time.perf_counter() - started, 1e-9)
                    self.cb.on_progress(Progress(self.global_step, total_steps, rate, "training"))
                if self.global_step % cfg.checkpoint_every == 0:
                    save_checkpoint(self, epoch, step_in_epoch)
            skip = 0
            record = {"epoch": epoch + 1, "loss": float(np.mean(losses)) if losses else math.nan}
            if self.world.is_main:  # the others wait for it at their next step
                record.update(self._validate())
                record.update(self._choose(epoch + 1))
            self.history.append(record)
            save_checkpoint(self, epoch + 1, 0)
            if self.cb.on_epoch:
                self.cb.on_epoch(epoch + 1, record)
        return self._export(resumed_from)

    def _step(self, images: torch.Tensor, labels: torch.Tensor, from_cache: bool, warm: bool) -> float | None:
        with autocast_for(self.device):
            emb, labels = self.world.gather_batch(self._embed_batch(images, from_cache, warm), labels)
            loss = self.objective(emb.float(), labels)  # the global batch's loss, on every process
        if not torch.isfinite(loss):
            self.skipped_steps += 1
            self.optimizer.zero_grad(set_to_none=True)
            self.cb.message(f"non-finite loss at step {self.global_step + 1}: step skipped")
            return None
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        params = [p for g in self.optimizer.param_groups for p in g["params"] if p.grad is not None]
        self.world.average_gradients(params)
        norm = torch.nn.utils.clip_grad_norm_(params, 10.0)
        if not torch.isfinite(norm):
            self.skipped_steps += 1
            self.optimizer.zero_grad(set_to_none=True)
            return None
        self.optimizer.step()
        return float(loss.detach())

    def _validate(self) -> dict[str, float]:
        """Recall@1 at full dimension, float and binary, on the held-out classes (a capped sample)."""
        if self.val_set is None or len(self.val_set.classes) < 2:
            return {}
        return self.judge.held_out(self.val_set, self.config.eval_max_images)

    def is_candidate(self, epoch: int) -> bool:
        return self.config.is_candidate(epoch)

    def _choose(self, epoch: int) -> dict[str, float]:
        """Score the model on the selection part (carved from the training data; trainer.epoch_judge says how) and
        remember it if it is the best so far, the starting model (epoch 0) included: ties keep the earlier epoch."""
        if self.fold_choice is not None:
            return self._choose_by_folds(epoch)
        if self.selection_set is None or not self.is_candidate(epoch):
            return {}
        scores = self.judge.selection(self.selection_set, self.train_set, self.config.eval_max_images)
        score = selection_score(scores)
        if epoch == 0:
            self.start_scores = scores
        # A trained epoch must also find a same-class neighbour as often as the start, float and binary alike: a
        # better average bought with worse binary codes (clothing, 6 classes: binary Recall@1 79 -> 67 on the
        # held-out images) is not a better model for a window that searches with both.
        if self.best is None or replaces_best(scores, self.start_scores, self.best.score):
            self.best = Best.of(self.model, epoch, score)
        return scores

    def _choose_by_folds(self, epoch: int) -> dict[str, float]:
        """The folds' mean scores of this epoch (for the history); the chosen epoch is the one kept."""
        assert self.fold_choice is not None
        scores = self.fold_choice.scores.get(epoch, {})
        if epoch == self.fold_choice.epoch:
            self.best = Best.of(self.model, epoch, selection_score(scores))
        return scores

    def _export(self, resumed_from: int) -> FitResult:
        cfg = self.config
        if not self.world.is_main:  # rank 0 exports; the result names its files, its card tells the rest
            self.world.barrier()
            return FitResult(model_paths(self.out)[0], self.card, self.history, resumed_from, self.skipped_steps)
        self.model.eval()
        kept = KeptChoice(
            self.best.epoch if self.best is not None else None, bool(cfg.stretch), self.unjudged,
            self.fold_choice.folds if self.fold_choice is not None else None, self.selection_set,
        )  # fmt: skip
        if self.best is not None:
            self.model.load_state_dict(self.best.state)
            self.cb.message(kept.message(cfg.epochs))
        run_facts = {
            "device": str(self.device),
            "processes": self.world.size,
            "steps": self.global_step,
            "skipped_steps": self.skipped_steps,
            "history": self.history,
        }
        base = self.base_card.name if self.base_card else f"{self.card.backbone} ImageNet"
        self.card = trained_card(self.card, self.out.name, cfg, self.train_set, kept, base, run_facts)
        self.model.card = self.card
        path, _ = save_model(self.model.cpu(), self.out, self.card)
        from trainer.onnx_export import export_beside

        self.cb.message(export_beside(path))
        self.world.barrier()
        return FitResult(path, self.card, self.history, resumed_from, self.skipped_steps, kept.epoch)


def fit(
    train: LabelledFolder,
    out: Path,
    config: FitConfig | None = None,
    base: Path | None = None,
    backbone: str = "efficientnet_lite0",
    validation: LabelledFolder | None = None,
    callbacks: FitCallbacks | None = None,
    cancel: CancelCheck = never_cancelled,
    backbone_weights: Path | None = None,
    selection: LabelledFolder | None = None,
) -> FitResult:
    """Train on `train` (resuming `out`'s checkpoint if one matches), export the model to `out`.

    `validation` is the held-out part shown to the person (its Recall@1 goes into the history, nothing else);
    `selection`, carved from the training data (trainer.folders.carve_validation), chooses the epoch that is
    exported: the best on it, the starting model included. Without it the last epoch is exported.
    """
    trainer = _Trainer(
        train, out, config or FitConfig(), base, backbone, validation, callbacks or FitCallbacks(), cancel,
        backbone_weights, selection,
    )  # fmt: skip
    return trainer.run()
