"""The cars98 protocol shared by bench/paper_tables.py and bench/compare_methods.py.

Both scripts train many short runs on the same data with the same frozen trunk, so they share three things:

* the data: cars98 split by class (first 49 sorted classes train, last 49 test), never touched by the runs'
  own per-epoch validation (`validation=None`: it would embed the test half at full cost every epoch);
* the schedule: one `Schedule` turned into `FitConfig`s so that every run of a table differs only in what the
  table varies, with the image budget (images seen per epoch) fixed across batch shapes;
* the cheap evaluation: every run freezes the same first backbone stages, still at their ImageNet weights, so
  the frozen stages' output for the centre-cropped test images is the same for every model. It is computed once
  (`FrozenTestSet`, cached on disk next to the training trunk caches) and each model then runs only its
  trainable stages + pool + LayerNorm + embedding layer on it: seconds per model instead of minutes.
  Evaluation uses the training crop size so the trainable stages see maps of the size they were trained on.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from trainer.backbones import backbone_stages
from trainer.card import ModelCard
from trainer.data import LabelledFolder, scan_labelled_folder, split_by_class
from trainer.devices import pick_device
from trainer.fit import FitCallbacks, FitConfig, fit
from trainer.metrics import evaluate
from trainer.model import EmbeddingModel, load_model
from trainer.trunk_cache import compute_trunk_cache, load_cache, save_cache

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ROOT.parent / "shared" / "datasets"
CARS = DATASETS / "cars98"
CACHE_DIR = ROOT / "runs" / "bench-cache"
BACKBONE = "efficientnet_lite0"
NUM_STAGES = 9  # EfficientNet-Lite0 as trainer.backbones splits it: stem, 7 block stages, head conv

Metrics = dict[str, dict[int, dict[str, float]]]


def cars_available() -> bool:
    """False (with a message on stderr) where ../shared/datasets/cars98 is absent: the scripts then exit 0."""
    if CARS.is_dir():
        return True
    print(f"skipped: the cars98 dataset is not at {CARS} (see ../shared/datasets/README.md)", file=sys.stderr)
    return False


def cars_split() -> tuple[LabelledFolder, LabelledFolder]:
    """(train, test): the datasets README's split by class, 49 / 49 classes."""
    return split_by_class(scan_labelled_folder(CARS))


@dataclass(frozen=True)
class Schedule:
    """Everything a table keeps fixed. `images_per_epoch` makes batch shapes comparable: every run sees the
    same number of images (up to one batch of rounding), whatever its batch size."""

    crop_size: int = 160
    trainable_stages: int | None = 2  # None: the whole backbone trains (no trunk cache; the GPU schedule)
    cache_views: int = 2
    dim: int = 512
    epochs: int = 4
    warmup_epochs: int = 1
    images_per_epoch: int = 2025
    lr: float = 0.01
    backbone_lr_mult: float = 1.0
    seed: int = 0
    device: str = "auto"

    @property
    def n_frozen(self) -> int:
        return 0 if self.trainable_stages is None else max(0, NUM_STAGES - self.trainable_stages)

    def batches_per_epoch(self, batch_size: int) -> int:
        return max(1, round(self.images_per_epoch / batch_size))

    def config(
        self,
        method: str = "normsoftmax",
        classes_per_batch: int = 25,
        per_class: int = 3,
        dim: int | None = None,
        nested: bool = True,
        lr: float | None = None,
        epochs: int | None = None,
        method_params: dict[str, Any] | None = None,
    ) -> FitConfig:
        head_lr = self.lr if lr is None else lr  # `lr` changes the new layers' rate only; the backbone's stays
        return FitConfig(
            method=method, method_params=dict(method_params or {}), dim=dim or self.dim, nested=nested,
            epochs=self.epochs if epochs is None else epochs, warmup_epochs=self.warmup_epochs,
            classes_per_batch=classes_per_batch, per_class=per_class,
            batches_per_epoch=self.batches_per_epoch(classes_per_batch * per_class),
            lr=head_lr, backbone_lr_mult=self.backbone_lr_mult if lr is None else self.lr * self.backbone_lr_mult / lr,
            trainable_stages=self.trainable_stages, cache_trunk=self.trainable_stages is not None,
            cache_views=self.cache_views, cache_dir=str(CACHE_DIR), crop_size=self.crop_size, seed=self.seed,
            device=self.device, num_workers=2,
        )  # fmt: skip

    def describe(self) -> str:
        trained = (
            "the whole backbone"
            if self.trainable_stages is None
            else f"the last {self.trainable_stages} of {NUM_STAGES} backbone stages (the first {self.n_frozen} "
            f"frozen, computed once per image for {self.cache_views} random views, flipped at random)"
        )
        return (
            f"EfficientNet-Lite0 (ImageNet), {self.crop_size} px crops for training and for the (centre-crop) "
            f"evaluation; trains {trained} + embedding layer; {self.epochs} epochs of ~{self.images_per_epoch} "
            f"images (the first {self.warmup_epochs} with the backbone frozen), SGD momentum 0.9, weight decay "
            f"1e-4, lr {self.lr:g} (backbone x{self.backbone_lr_mult:g}), x0.1 at 60% and 85% of the fine-tuning "
            f"epochs; batch-norm statistics kept at ImageNet's (FitConfig.freeze_batchnorm); seed {self.seed}"
        )


CPU_SCHEDULE = Schedule()
FULL_SCHEDULE = Schedule(crop_size=224, trainable_stages=None, epochs=30, warmup_epochs=1, device="auto")


def add_schedule_arguments(parser: Any, default: Schedule = CPU_SCHEDULE) -> None:
    """The options both scripts share; `schedule_from_args` reads them back."""
    parser.add_argument("--full", action="store_true", help="the fuller GPU schedule (whole backbone, 224 px)")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--warmup-epochs", type=int, default=None)
    parser.add_argument("--crop-size", type=int, default=None)
    parser.add_argument(
        "--trainable-stages", type=int, default=None, help=f"last stages to train (0 or {NUM_STAGES}+: all)"
    )
    parser.add_argument("--cache-views", type=int, default=None)
    parser.add_argument("--images-per-epoch", type=int, default=None)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--backbone-lr-mult", type=float, default=None)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--device", default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--work", type=Path, default=None, help="where the runs' models go")


def schedule_from_args(args: Any) -> Schedule:
    base = FULL_SCHEDULE if args.full else CPU_SCHEDULE
    changes: dict[str, Any] = {}
    for name in (
        "epochs", "warmup_epochs", "crop_size", "cache_views", "images_per_epoch", "lr", "backbone_lr_mult", "seed",
        "device",
    ):  # fmt: skip
        value = getattr(args, name)
        if value is not None:
            changes[name] = value
    if args.trainable_stages is not None:
        k = args.trainable_stages
        changes["trainable_stages"] = None if k <= 0 or k >= NUM_STAGES else k
    if args.threads:
        torch.set_num_threads(args.threads)
    return replace(base, **changes)


# -- the cheap evaluation ----------------------------------------------------------------------------------


def _stage_digest(stages: Sequence[nn.Module]) -> str:
    """A fingerprint of the frozen weights (every tensor, whole): a model whose frozen stages differ from the
    ones the test maps were computed with must not be evaluated on them."""
    h = hashlib.sha256()
    for stage in stages:
        for name, t in stage.state_dict().items():
            h.update(name.encode())
            h.update(t.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def untrained_model() -> EmbeddingModel:
    """The ImageNet backbone + LayerNorm, no embedding layer: the starting point every method improves on."""
    return EmbeddingModel(ModelCard.for_backbone("untrained", BACKBONE), pretrained=True).eval()


@dataclass
class FrozenTestSet:
    """The test images after the frozen stages (centre crop at the training crop size), computed once."""

    maps: torch.Tensor  # (N, C, h, w) float16
    labels: npt.NDArray[np.int64]
    n_frozen: int
    digest: str
    seconds: float  # computing (or loading) it

    @classmethod
    def build(cls, test: LabelledFolder, schedule: Schedule, log: Any = print) -> FrozenTestSet:
        started = time.perf_counter()
        device = pick_device(schedule.device)
        reference = untrained_model().to(device)  # normalize_uint8's mean/std must sit on the batch's device
        spec = reference.card
        crop = schedule.crop_size
        resize = round(crop * spec.resize_size / spec.input_size)  # as trainer.fit does
        frozen = backbone_stages(reference.backbone)[: schedule.n_frozen]
        digest = _stage_digest(frozen)
        key = hashlib.sha256(
            json.dumps([[str(p) for p, _ in test.samples], schedule.n_frozen, crop, resize, BACKBONE, digest]).encode()
        ).hexdigest()[:16]
        path = CACHE_DIR / f"test-maps-{key}.safetensors"
        cache = load_cache(path, key)
        if cache is None:
            log(f"computing the {schedule.n_frozen} frozen stages for {len(test.samples)} test images (once)")
            cache = compute_trunk_cache(
                nn.Sequential(*frozen), reference.normalize_uint8, test.samples, crop, resize, views=1, device=device
            )
            save_cache(cache, path, key)
        return cls(cache[:, 0], test.labels, schedule.n_frozen, digest, time.perf_counter() - started)

    def embed(self, model: EmbeddingModel, device: str = "auto", batch_size: int = 256) -> npt.NDArray[np.float32]:
        """Embeddings of the test images: the model's trainable stages + pool + LayerNorm + embedding layer."""
        stages = backbone_stages(model.backbone)
        if _stage_digest(stages[: self.n_frozen]) != self.digest:
            raise RuntimeError(
                f"{model.card.name}: its first {self.n_frozen} stages are not the frozen ImageNet stages the test "
                "maps were computed with (was it trained with another trainable_stages?)"
            )
        dev = pick_device(device)
        model = model.eval().to(dev)
        out = []
        with torch.inference_mode():
            for i in range(0, len(self.maps), batch_size):
                x = self.maps[i : i + batch_size].to(dev).float()
                for stage in stages[self.n_frozen :]:
                    x = stage(x)
                out.append(model.embedding(model.norm(model.pool(x).flatten(1))).float().cpu())
        return torch.cat(out).numpy()

    def evaluate(
        self, model: EmbeddingModel, dims: Sequence[int] | None = None, clustering: bool = False, device: str = "auto"
    ) -> Metrics:
        """R@1/2/4/8 (+ NMI/F1 with `clustering`), float (cosine) and binary (Hamming), at each dim."""
        emb = self.embed(model, device)
        return evaluate(emb, self.labels, list(dims or [emb.shape[1]]), ks=(1, 2, 4, 8), with_clustering=clustering)


# -- training ------------------------------------------------------------------------------------------------


@dataclass
class Run:
    name: str
    model_path: Path
    seconds: float
    losses: list[float]
    skipped_steps: int


WORK_DIR = ROOT / "runs" / "bench" / "models"


def train(
    train_set: LabelledFolder,
    name: str,
    config: FitConfig,
    work: Path | None = None,
    log: Any = print,
    on_batch: Callable[[int, int, float, float], None] | None = None,
) -> Run:
    """One run, logging the mean loss of each epoch so that a run that does not learn shows it.

    The model goes to `<work>/<method>-<config key>` (`name` only labels the log): a run with exactly the same
    settings (Table 4's S = 3 row, the dimension figure's nested model and compare_methods' NormSoftmax row are
    one run) finds its finished checkpoint there and is only re-exported.
    """
    out = (work or WORK_DIR) / f"{config.method}-{config.key()}"
    timing = out.with_name(out.name + ".seconds")

    def on_epoch(epoch: int, record: dict[str, float]) -> None:
        log(f"  {name}: epoch {epoch}/{config.epochs} loss {record.get('loss', float('nan')):.4f}")

    callbacks = FitCallbacks(on_batch=on_batch, on_epoch=on_epoch, on_message=lambda m: log(f"  {name}: {m}"))
    started = time.perf_counter()
    result = fit(train_set, out, config, validation=None, callbacks=callbacks)
    seconds = time.perf_counter() - started
    if result.resumed_from_step >= config.epochs * (config.batches_per_epoch or 1) and timing.exists():
        seconds = float(timing.read_text())  # finished earlier: report the training time it took then
    else:
        timing.write_text(f"{seconds:.1f}\n")
    losses = [float(h.get("loss", float("nan"))) for h in result.history if h.get("epoch", 0) > 0]
    return Run(name, result.model_path, seconds, losses, result.skipped_steps)


def load(run: Run) -> EmbeddingModel:
    return load_model(run.model_path)


def write_report(text: str, out: Path) -> None:
    """Print the Markdown report and keep it under bench/results/."""
    print(text)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    print(f"written to {out}", file=sys.stderr)


def pct(x: float) -> str:
    return f"{100 * x:.1f}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]], align_left: int = 1) -> str:
    """A Markdown table; the first `align_left` columns are left-aligned, the rest (numbers) right-aligned."""
    lines = ["| " + " | ".join(header) + " |"]
    lines.append("|" + "|".join("---" if i < align_left else "---:" for i in range(len(header))) + "|")
    lines.extend("| " + " | ".join(row) + " |" for row in rows)
    return "\n".join(lines)


def machine_note() -> str:
    import os
    import platform

    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, torch "
        f"{torch.__version__} ({torch.get_num_threads()} threads), device {pick_device('auto')}"
    )
