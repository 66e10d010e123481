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
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn
from torch.utils.data import DataLoader

from trainer.atomic import atomic_write
from trainer.backbones import backbone_stages
from trainer.card import ModelCard, model_paths, nested_dims
from trainer.checkpoint_file import PREVIOUS, CheckpointError, parse_checked, write_checked
from trainer.class_stretch import choose_by_folds, stretched_weight
from trainer.config import FitConfig
from trainer.data import (
    ImageDataset,
    LabelledFolder,
    collate_uint8,
    require_trainable,
    train_transform,
)
from trainer.devices import autocast_for, default_loader_workers, pick_device, uses_channels_last
from trainer.distributed import current_world, distributed_problem
from trainer.epoch_choice import replaces_best, run_parts, selection_score
from trainer.fold_choice import FoldChoice, choose_epoch_by_folds
from trainer.methods import build_objective
from trainer.model import EmbeddingModel, load_model, save_model
from trainer.progress import CancelCheck, Cancelled, Progress, never_cancelled
from trainer.samplers import DistributedClassBalancedSampler
from trainer.trunk_cache import compute_trunk_cache, load_cache, save_cache


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


@dataclass
class Best:
    """The best model so far on the selection part: its epoch (0 = the starting model), score and weights."""

    epoch: int
    score: float
    state: dict[str, torch.Tensor]


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def _pca_rotation(features: torch.Tensor, dim: int) -> torch.Tensor:
    """(dim, F) rows = principal directions of LayerNorm'd pooled features, largest variance first.

    Starting the embedding layer as this rotation keeps cosine retrieval of the pretrained backbone intact
    (at dim = F it is orthogonal), orders the dimensions so that every prefix is already a sensible smaller
    embedding, and decorrelates the coordinates before the sign is taken, which is what binarization needs.
    """
    x = features.double() - features.double().mean(0, keepdim=True)
    cov = x.T @ x / max(1, x.shape[0] - 1)
    _evals, evecs = torch.linalg.eigh(cov)
    return evecs.flip(1)[:, :dim].T.float().contiguous()


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
        self.pooled: dict[str, tuple[list[Path], npt.NDArray[np.int64], npt.NDArray[np.float32]]] = {}

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

    def _lr_factor(self, epoch: int) -> float:
        cfg = self.config
        if epoch < cfg.warmup_epochs:
            return 1.0
        tune_epochs = max(1, cfg.epochs - cfg.warmup_epochs)
        progress = (epoch - cfg.warmup_epochs) / tune_epochs
        return cfg.lr_gamma ** sum(progress >= m for m in cfg.lr_milestones)

    def _set_epoch_lr(self, epoch: int) -> None:
        factor = self._lr_factor(epoch)
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
        cfg = self.config
        key = hashlib.sha256(
            json.dumps(
                [[str(p) for p, _ in self.train_set.samples], self.n_frozen, cfg.cache_views, self.crop,
                 self.card.backbone, cfg.seed, _state_digest(self.stages[: self.n_frozen])]
            ).encode()
        ).hexdigest()[:16]  # fmt: skip
        folder = Path(cfg.cache_dir) if cfg.cache_dir else self.run_dir
        path = folder / f"trunk-cache-{key}.safetensors"
        cache = load_cache(path, key)
        if cache is None:
            self.cb.message(f"caching the {self.n_frozen} frozen stages for {len(self.train_set.samples)} images")
            trunk = nn.Sequential(*self.stages[: self.n_frozen])
            cache = compute_trunk_cache(
                trunk, self.model.normalize_uint8, self.train_set.samples, self.crop, self.resize,
                cfg.cache_views, self.device, seed=cfg.seed, progress=self.cb.on_progress, cancel=self.cancel,
            )  # fmt: skip
            save_cache(cache, path, key)
        self.trunk_cache = cache

    def _cached_batches(self, epoch: int, skip: int) -> Any:
        assert self.trunk_cache is not None
        gen = torch.Generator().manual_seed(self.config.seed * 1000 + epoch)
        labels = torch.from_numpy(self.train_set.labels)
        for i, idx in enumerate(self.sampler):
            views = torch.randint(0, self.trunk_cache.shape[1], (len(idx),), generator=gen)
            if i < skip:
                continue
            index = torch.tensor(idx)
            yield self.trunk_cache[index, views], labels[index]

    def _loader_batches(self, start_epoch: int, skip: int) -> Any:
        """Every batch from epoch `start_epoch`, batch `skip` on, through one DataLoader for the whole run.

        One loader (not one per epoch) starts its worker processes once and keeps decoding across epoch
        boundaries, so a GPU does not wait for workers to start at every epoch. The sampler's index lists are
        sliced, so a resumed run does not decode the images of the batches it already trained on.

        Every image carries its own augmentation seed (from the run's seed, the epoch and its place in the
        epoch), so its random crop and flip do not depend on which worker process decodes it or on how many
        batches a resumed run skipped: a resumed run sees exactly the crops the uninterrupted one would.
        """
        dataset = ImageDataset(self.train_set.samples, train_transform(self.crop), min_side=self.resize)
        batches = []
        first = self.sampler.first_position  # seeds come from places in the global batch
        for epoch in range(start_epoch, self.config.epochs):
            self.sampler.set_epoch(epoch)
            seeded = [
                [(index, augmentation_seed(self.config.seed, epoch, b, first + j)) for j, index in enumerate(batch)]
                for b, batch in enumerate(self.sampler)
            ]
            batches.extend(seeded[skip:] if epoch == start_epoch else seeded)
        workers = self.config.num_workers
        loader = DataLoader(
            dataset, batch_sampler=batches, collate_fn=collate_uint8,
            num_workers=default_loader_workers(self.device) if workers is None else workers,
            pin_memory=self.device.type == "cuda", persistent_workers=False,
        )  # fmt: skip
        return iter(loader)

    # -- checkpoints ------------------------------------------------------------------------------------
    def _checkpoint_path(self) -> Path:
        return self.run_dir / "checkpoint.pt"

    def save_checkpoint(self, epoch: int, step_in_epoch: int) -> None:
        if not self.world.is_main:
            return  # the processes hold the same weights: rank 0's checkpoint is everyone's
        state = {
            "config_key": self.config.key(),
            "data_key": self._data_key(),
            "epoch": epoch,
            "step_in_epoch": step_in_epoch,
            "global_step": self.global_step,
            "model": self.model.state_dict(),
            "objective": self.objective.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "history": json.dumps(self.history),
            "card": self.card.to_json(),
            "skipped_steps": self.skipped_steps,
        }
        if self.fold_choice is not None:
            state["fold_choice"] = json.dumps(self.fold_choice.to_json())
        if self.best is not None:
            state["best_model"] = self.best.state
            state["best_epoch"] = self.best.epoch
            state["best_score"] = self.best.score
        path = self._checkpoint_path()
        if path.exists():
            os.replace(path, path.with_name(PREVIOUS))  # the last good one stays until the new one is whole
        atomic_write(path, lambda p: write_checked(p, state))

    def _data_key(self) -> str:
        """What the run trains on (every image and its class): the same settings on another folder, or on the
        same folder after images were added, must not resume this run's checkpoint."""
        samples = [[str(p), self.train_set.classes[y]] for p, y in self.train_set.samples]
        return hashlib.sha256(json.dumps(samples).encode()).hexdigest()[:16]

    def load_checkpoint(self) -> tuple[int, int] | None:
        path = self._checkpoint_path()
        for stale in path.parent.glob(f".{path.name}.*.tmp") if self.world.is_main else ():  # of a killed write
            stale.unlink(missing_ok=True)
        state = None
        damaged = False
        for candidate in (path, path.with_name(PREVIOUS)):
            # Rank 0 reads, every process parses the same bytes: all resume from rank 0's checkpoint.
            mine = candidate.read_bytes() if self.world.is_main and candidate.exists() else None
            data = self.world.bytes_from_main(mine)
            if data is None:
                continue
            try:
                state = parse_checked(data)
                break
            except CheckpointError as exc:
                damaged = True
                self.cb.message(f"{candidate} is damaged ({exc}); trying the previous checkpoint")
        if state is None:
            if damaged:
                self.cb.message("no checkpoint of this run can be used; starting afresh")
            return None
        if state.get("config_key") != self.config.key():
            self.cb.message(f"{path} belongs to a run with other settings; starting afresh")
            return None
        if state.get("data_key") != self._data_key():
            self.cb.message(f"{path} belongs to a run on other images or classes; starting afresh")
            return None
        self.model.load_state_dict(state["model"])
        self.objective.load_state_dict(state["objective"])
        self.optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        self.history = json.loads(state["history"])
        self.global_step = int(state["global_step"])
        self.skipped_steps = int(state["skipped_steps"])
        if "fold_choice" in state:
            self.fold_choice = FoldChoice.from_json(json.loads(state["fold_choice"]))
        if "best_model" in state:
            self.best = Best(int(state["best_epoch"]), float(state["best_score"]), state["best_model"])
        start = next((h for h in self.history if h.get("epoch") == 0), {})
        self.start_scores = {k: float(v) for k, v in start.items() if k.startswith("chosen on")}
        return int(state["epoch"]), int(state["step_in_epoch"])

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
                rotation = _pca_rotation(feats, min(self.card.dim, feats.shape[1]))
                layer.weight.zero_()
                layer.weight[: rotation.shape[0]] = rotation.to(layer.weight.device)
            if cfg.proxy_init:
                emb = self.model.embedding(feats.to(self.device)).float()
                _proxies_to_class_means(self.objective, emb, labels.to(self.device))

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
            _proxies_to_class_means(self.objective, emb, labels.to(self.device))

    def run(self) -> FitResult:
        cfg = self.config
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if not self.world.agree(self.config.key() + self._data_key()):
            raise FitError("the processes see other images or settings: give each the same folder and command")
        if cfg.cache_trunk:
            self._prepare_cache()
        resumed = self.load_checkpoint()
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
                state = {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}
                self.best = Best(0, 0.0, state)
            if start:
                # Epoch 0: the starting point (no training loss yet), so curves, the result page and the choice
                # of the epoch to keep compare against it.
                self.history.append({"epoch": 0, **start})
                if self.cb.on_epoch:
                    self.cb.on_epoch(0, self.history[-1])
        loader = self._loader_batches(start_epoch, skip) if self.trunk_cache is None else None
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
                self._cached_batches(epoch, skip)
                if loader is None
                else itertools.islice(loader, self.steps_per_epoch - skip)
            )
            losses = []
            step_in_epoch = skip
            for images, labels in batches:
                if self.world.any(self.cancel()):
                    self.save_checkpoint(epoch, step_in_epoch)
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
                    self.save_checkpoint(epoch, step_in_epoch)
            skip = 0
            record = {"epoch": epoch + 1, "loss": float(np.mean(losses)) if losses else math.nan}
            if self.world.is_main:  # the others wait for it at their next step
                record.update(self._validate())
                record.update(self._choose(epoch + 1))
            self.history.append(record)
            self.save_checkpoint(epoch + 1, 0)
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

    def _embedded(
        self, part: str, folder: LabelledFolder, max_images: int
    ) -> tuple[list[Path], npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """Embeddings of a part for judging an epoch. With the whole backbone frozen its pooled features are computed
        once per part and only the embedding layer runs again: a 38-epoch run embedded its held-out images 39 times
        through the backbone, which took most of its time."""
        from trainer.evaluation import embed_folder

        self.model.eval()
        seed = self.config.seed
        if self.n_frozen < len(self.stages):
            return embed_folder(self.model, folder, self.device, max_images, seed)
        if part not in self.pooled:
            self.pooled[part] = embed_folder(self.model, folder, self.device, max_images, seed, pooled_features=True)
        paths, labels, feats = self.pooled[part]
        with torch.inference_mode():
            emb = self.model.embedding(torch.from_numpy(feats).to(self.device)).float().cpu().numpy()
        return paths, labels, emb

    def _validate(self) -> dict[str, float]:
        """Recall@1 at full dimension, float and binary, on the held-out classes (a capped sample)."""
        if self.val_set is None or len(self.val_set.classes) < 2:
            return {}
        from trainer.metrics import evaluate

        _paths, labels, emb = self._embedded("held out", self.val_set, self.config.eval_max_images)
        d = (self.card.dim // 8) * 8
        m = evaluate(emb, labels, [d], ks=(1,), with_clustering=False)
        return {"R@1": m["float"][d]["R@1"], "binary R@1": m["binary"][d]["R@1"]}

    def is_candidate(self, epoch: int) -> bool:
        """Epochs that may be kept: the start, and those after the learning rate first drops (before it, the
        weights are still in the noisy high-rate phase; choosing among fewer epochs also chases less noise)."""
        if epoch == 0 or epoch >= self.config.epochs:
            return True
        return epoch > self.config.warmup_epochs and self._lr_factor(epoch - 1) < 1.0

    def _choose(self, epoch: int) -> dict[str, float]:
        """Score the model on the selection part (carved from the training data) and remember it if it is the best
        so far, the starting model (epoch 0) included: ties keep the earlier epoch.

        When the selection part holds images of the training classes (my classes), its images are searched
        against up to 150 training images, as a person searches for more of their labelled categories; when it
        holds classes of its own (new classes), against each other.
        """
        if self.fold_choice is not None:
            return self._choose_by_folds(epoch)
        if self.selection_set is None or not self.is_candidate(epoch):
            return {}
        from trainer.metrics import evaluate, query_gallery_metrics

        cfg = self.config
        _paths, labels, emb = self._embedded("selection", self.selection_set, cfg.eval_max_images)
        d = (self.card.dim // 8) * 8
        chosen_on = {p for p, _ in self.selection_set.samples}
        others = [(p, y) for p, y in self.train_set.samples if p not in chosen_on]
        if self.selection_set.classes == self.train_set.classes and len(others) >= 2:
            gallery_set = LabelledFolder(self.train_set.root, self.train_set.classes, others)
            _g, gallery_labels, gallery = self._embedded("gallery", gallery_set, 150)
            found = query_gallery_metrics(emb[:, :d], labels, gallery[:, :d], gallery_labels)
            scores: dict[str, float] = {f"chosen on {k}": v for k, v in found.items()}
        else:
            # Classes of their own (new classes): Recall@1 alone. MAP@R rises as training tightens every class,
            # also where the nearest neighbour gets no better: on 8 bird species it chose an epoch 1.7 points
            # worse on the new species than a start that already found a same-class neighbour for every image.
            m = evaluate(emb, labels, [d], ks=(1,), with_clustering=False)
            scores = {"chosen on R@1": m["float"][d]["R@1"], "chosen on binary R@1": m["binary"][d]["R@1"]}
        score = selection_score(scores)
        if epoch == 0:
            self.start_scores = scores
        # A trained epoch must also find a same-class neighbour as often as the start, float and binary alike: a
        # better average bought with worse binary codes (clothing, 6 classes: binary Recall@1 79 -> 67 on the
        # held-out images) is not a better model for a window that searches with both.
        if self.best is None or replaces_best(scores, self.start_scores, self.best.score):
            state = {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}
            self.best = Best(epoch, score, state)
        return scores

    def _choose_by_folds(self, epoch: int) -> dict[str, float]:
        """The folds' mean scores of this epoch (for the history); the chosen epoch is the one kept."""
        assert self.fold_choice is not None
        scores = self.fold_choice.scores.get(epoch, {})
        if epoch == self.fold_choice.epoch:
            state = {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}
            self.best = Best(epoch, selection_score(scores), state)
        return scores

    def _export(self, resumed_from: int) -> FitResult:
        cfg = self.config
        if not self.world.is_main:  # rank 0 exports; the result names its files, its card tells the rest
            self.world.barrier()
            return FitResult(model_paths(self.out)[0], self.card, self.history, resumed_from, self.skipped_steps)
        self.model.eval()
        if self.best is not None:
            self.model.load_state_dict(self.best.state)
            self.cb.message(
                "kept the stretched embedding layer"
                if self.best.epoch and cfg.stretch
                else f"kept epoch {self.best.epoch} of {cfg.epochs}"
                if self.best.epoch
                else "too few training classes to judge training for new classes; the starting model is kept"
                if self.unjudged
                else f"no {'stretch' if cfg.stretch else 'epoch'} beat the starting model on folds of the training "
                "images; the starting model is kept"
                if self.fold_choice is not None
                else "no epoch beat the starting model on the images set aside to choose; the starting model is kept"
            )
        self.card = ModelCard(
            **{
                **asdict(self.card),
                "name": self.out.name,
                "trained": True,
                "trained_on": [f"{self.train_set.root} ({len(self.train_set.classes)} classes, "
                               f"{len(self.train_set.samples)} images)"],
                "recipe": {
                    **{k: v for k, v in asdict(cfg).items() if k not in ("device", "num_workers", "cache_dir")},
                    "device": str(self.device),
                    "processes": self.world.size,
                    "steps": self.global_step,
                    "skipped_steps": self.skipped_steps,
                    "history": self.history,
                    "kept_epoch": self.best.epoch if self.best is not None else cfg.epochs,
                    "chosen_on": (
                        f"{self.fold_choice.folds} folds of the {len(self.train_set.samples)} training images, each "
                        "judging a copy trained on the others (mean of Recall@1 and MAP@R, float and binary)"
                        if self.fold_choice is not None
                        else f"{len(self.selection_set.samples)} training images of {len(self.selection_set.classes)} "
                        "classes set aside (mean of Recall@1 and MAP@R, float and binary)"
                        if self.selection_set is not None
                        else "none could judge new classes (fewer than 4 training classes): the start is kept"
                        if self.unjudged
                        else "none: the last epoch is kept"
                    ),
                    "base": self.base_card.name if self.base_card else f"{self.card.backbone} ImageNet",
                },
            }
        )  # fmt: skip
        self.model.card = self.card
        path, _ = save_model(self.model.cpu(), self.out, self.card)
        from trainer.onnx_export import export_beside

        self.cb.message(export_beside(path))
        kept = self.best.epoch if self.best is not None else None
        self.world.barrier()
        return FitResult(path, self.card, self.history, resumed_from, self.skipped_steps, kept)


def _proxies_to_class_means(objective: nn.Module, emb: torch.Tensor, labels: torch.Tensor) -> None:
    """Every proxy matrix (one per nested prefix) gets the normalised class means of its prefix."""
    for module in objective.modules():
        proxies = getattr(module, "proxies", None)
        if proxies is None and module.__class__.__name__ == "ArcFaceLoss":
            proxies = getattr(module, "weight", None)
        if not isinstance(proxies, nn.Parameter) or proxies.dim() != 2:
            continue
        n_classes, d = proxies.shape
        x = torch.nn.functional.normalize(emb[:, :d], dim=1)
        sums = torch.zeros(n_classes, d, device=x.device).index_add_(0, labels, x)
        counts = torch.bincount(labels, minlength=n_classes)
        seen = counts > 0
        means = torch.nn.functional.normalize(sums[seen], dim=1)
        proxies.data[seen] = means.to(proxies.dtype) * proxies.data[seen].norm(dim=1, keepdim=True)


def augmentation_seed(seed: int, epoch: int, batch: int, position: int) -> int:
    """The seed of one image's random crop and flip: a function of where it is in the run, nothing else.

    >>> augmentation_seed(0, 1, 2, 3) == augmentation_seed(0, 1, 2, 3) != augmentation_seed(0, 1, 2, 4)
    True
    """
    digest = hashlib.blake2b(f"{seed}/{epoch}/{batch}/{position}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def _state_digest(modules: list[nn.Module]) -> str:
    """A cheap fingerprint of frozen weights, so a cache is never reused for another trunk."""
    h = hashlib.sha256()
    for m in modules:
        for name, t in m.state_dict().items():
            h.update(name.encode())
            h.update(t.detach().float().flatten()[:64].cpu().numpy().tobytes())
    return h.hexdigest()[:16]


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
