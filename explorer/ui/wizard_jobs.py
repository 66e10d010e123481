"""The fine-tune wizard's work, without Qt: folder checks, the training plan, time estimates, saving.

Everything here runs on a worker thread (`explorer.ui.workers.Job`) or is cheap arithmetic, so the wizard's
pages stay a thin layer of widgets. torch and the trainer are imported inside the functions: this module is
imported on the GUI thread, which must never pay for importing torch.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from platformdirs import user_data_dir

from trainer.progress import CancelCheck, ProgressCallback, never_cancelled  # torch-free

if TYPE_CHECKING:
    from trainer.data import LabelledFolder
    from trainer.fit import FitCallbacks, FitConfig, FitResult

APP_NAME = "retrieval-explorer"
BUNDLED_MODEL = Path(__file__).resolve().parents[2] / "resources" / "models" / "default"
DEFAULT_BACKBONE = "efficientnet_lite0"
MIN_SPLIT_CLASSES = 4  # trainer.data.split_by_class: 2 classes to train, 2 to test
TRAIN_SUBFOLDERS = ("train", "training")
TEST_SUBFOLDERS = ("test", "val", "validation")
BACKWARD_FACTOR = 3.0
"""A training step costs about three forward passes (forward + backward through activations and weights):
the usual rule of thumb, used to turn the measured forward time into a training time."""


def data_root() -> Path:
    """`$RETRIEVAL_EXPLORER_DATA` when set (tests, portable installs), else the platform's user data folder."""
    override = os.environ.get("RETRIEVAL_EXPLORER_DATA")
    return Path(override) if override else Path(user_data_dir(APP_NAME))


def models_dir() -> Path:
    """Where fine-tuned models are saved by name."""
    return data_root() / "models"


def runs_dir() -> Path:
    """Where training runs keep their checkpoints and trunk caches until the model is saved."""
    return data_root() / "training-runs"


def safe_name(name: str) -> str:
    """A model name usable as a file name on every platform ('' when nothing usable is left)."""
    return re.sub(r"[^\w.-]+", "-", name.strip()).strip("-.")[:80]


# -- folders ---------------------------------------------------------------------------------------------


@dataclass
class FolderReport:
    """A scanned labelled folder and every reason it cannot train (empty when it can)."""

    path: Path  # what the person chose
    folder: LabelledFolder  # what was scanned: `path`, or its train/ sub-folder
    problems: list[str]
    test_folder: Path | None = None  # a test/ beside the train/ sub-folder, when the chosen folder has both

    @property
    def can_train(self) -> bool:
        return not self.problems

    @property
    def counts(self) -> dict[str, int]:
        return self.folder.counts()


def _subfolder(root: Path, names: tuple[str, ...]) -> Path | None:
    """The first of `names` (any case) that is a folder of class folders under `root`."""
    try:
        children = {c.name.lower(): c for c in root.iterdir() if c.is_dir()}
    except OSError:
        return None
    for name in names:
        child = children.get(name)
        if child is not None and any(g.is_dir() and not g.name.startswith(".") for g in child.iterdir()):
            return child
    return None


def check_folder(
    path: Path, progress: ProgressCallback | None = None, cancel: CancelCheck = never_cancelled
) -> FolderReport:
    """Scan `path` (decoding every image once) and say whether it can train.

    A dataset laid out as `root/train/<class>` + `root/test/<class>` would otherwise look like a folder
    with two classes named "train" and "test"; it is recognised, and its train/ part is what gets checked.
    """
    from trainer.data import scan_labelled_folder, trainability_problems

    path = Path(path)
    train_sub = _subfolder(path, TRAIN_SUBFOLDERS) if path.is_dir() else None
    test_sub = _subfolder(path, TEST_SUBFOLDERS) if train_sub is not None else None
    scanned = train_sub if (train_sub is not None and test_sub is not None) else path
    folder = scan_labelled_folder(scanned, verify=True, progress=progress, cancel=cancel)
    return FolderReport(path, folder, trainability_problems(folder), test_sub if scanned != path else None)


def evaluation_problems(folder: LabelledFolder) -> list[str]:
    """Why a folder cannot serve as the held-out test set (Recall@1 needs two classes, each with a pair)."""
    from trainer.data import trainability_problems

    return [p.replace("metric learning needs", "Recall@1 needs") for p in trainability_problems(folder)]


# -- the machine -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Environment:
    """What the settings page offers: the methods, and the GPU if there is one."""

    methods: list[tuple[str, str]]  # (name, one-line summary)
    gpu: str | None  # "cuda" or "mps" when trainer.devices.pick_device finds one
    gpu_name: str
    cpu_threads: int


def probe_environment() -> Environment:
    import torch

    from trainer.devices import pick_device
    from trainer.methods import METHODS

    device = pick_device("auto")
    gpu = device.type if device.type != "cpu" else None
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else ("Apple GPU" if gpu else "")
    return Environment([(m.name, m.summary) for m in METHODS.values()], gpu, name, torch.get_num_threads())


def card_summary(model: Path | None) -> dict[str, Any]:
    """The parts of a model card the settings page shows; the ImageNet backbone when `model` is None."""
    if model is None:
        return {"name": f"{DEFAULT_BACKBONE} ImageNet", "backbone": DEFAULT_BACKBONE, "dim": 1280,
                "input_size": 224, "trained": False}  # fmt: skip
    card = json.loads(Path(str(model) + ".json").read_text(encoding="utf-8"))
    return {k: card.get(k) for k in ("name", "backbone", "dim", "input_size", "trained", "description")}


def stage_seconds(backbone: str, crop: int, device: str, batch: int = 8) -> list[float]:
    """Seconds per image of each backbone stage's forward pass, measured on this machine (about a second).

    Untrained weights cost the same as trained ones, so nothing is loaded from disk. The best of two runs is
    kept: the first pays for memory allocation and kernel selection.
    """
    import torch

    from trainer.backbones import backbone_stages, get_backbone
    from trainer.devices import autocast_for, pick_device

    dev = pick_device(device)
    stages = backbone_stages(get_backbone(backbone).build(False, None).eval().to(dev))
    best = [float("inf")] * len(stages)
    with torch.inference_mode(), autocast_for(dev):
        for _ in range(2):
            x = torch.randn(batch, 3, crop, crop, device=dev)
            for i, stage in enumerate(stages):
                if dev.type == "cuda":
                    torch.cuda.synchronize()
                t = time.perf_counter()
                x = stage(x)
                if dev.type == "cuda":
                    torch.cuda.synchronize()
                best[i] = min(best[i], (time.perf_counter() - t) / batch)
    return best


@dataclass(frozen=True)
class Workload:
    """What a run will process, from the settings (the same arithmetic as the trainer's sampler)."""

    train_images: int
    train_classes: int
    test_images: int
    epochs: int
    warmup_epochs: int
    classes_per_batch: int
    per_class: int
    batches_per_epoch: int | None
    trainable_stages: int | None
    cache_trunk: bool
    cache_views: int = 2
    eval_max_images: int = 2000

    @property
    def steps_per_epoch(self) -> int:
        if self.batches_per_epoch is not None:
            return self.batches_per_epoch
        return max(1, self.train_images // (self.batch_size or 1))

    @property
    def batch_size(self) -> int:
        return min(self.classes_per_batch, self.train_classes) * self.per_class


def estimate_seconds(work: Workload, per_stage: list[float]) -> float:
    """Seconds the run should take, given the measured forward time of each stage per image.

    Training steps cost BACKWARD_FACTOR forward passes of the stages that train, plus one forward pass of
    the frozen ones unless they are cached; warm-up epochs only run forward; every epoch (and the start)
    embeds the held-out images once.
    """
    total_fwd = sum(per_stage)
    k = work.trainable_stages
    head = total_fwd if k is None else sum(per_stage[-k:])
    frozen = total_fwd - head
    trunk = 0.0 if work.cache_trunk else frozen
    per_step_image_train = BACKWARD_FACTOR * head + trunk
    per_step_image_warm = head + trunk
    images_per_epoch = work.steps_per_epoch * work.batch_size
    warm = min(work.warmup_epochs, work.epochs)
    seconds = images_per_epoch * (warm * per_step_image_warm + (work.epochs - warm) * per_step_image_train)
    if work.cache_trunk:
        seconds += work.train_images * work.cache_views * frozen
    seconds += min(work.train_images, 2000) * (head if work.cache_trunk else total_fwd)  # warm start
    seconds += (work.epochs + 1) * min(work.test_images, work.eval_max_images) * total_fwd
    return seconds


def format_duration(seconds: float) -> str:
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min"
    hours = seconds / 3600
    return f"{hours:.1f} hours" if hours < 48 else f"{hours / 24:.0f} days"


# -- the run ---------------------------------------------------------------------------------------------


@dataclass
class TrainingPlan:
    """Everything `trainer.fit.fit` is called with; the same plan always trains into the same place.

    `out` is derived from the data and the settings, so running an interrupted plan again (Resume, or the
    wizard opened again with the same choices) finds its checkpoint and continues where it stopped.
    """

    train: LabelledFolder
    test: LabelledFolder
    config: FitConfig
    base: Path | None  # a model to start from; None: the ImageNet backbone
    backbone: str
    runs: Path  # the folder that holds training runs (runs_dir())

    @property
    def out(self) -> Path:
        """Where fit exports the model (`<out>.safetensors` / `.json`); its checkpoints go to `<out>.run/`."""
        return self.runs / self.run_name()

    def run_name(self) -> str:
        key = json.dumps(
            [str(self.train.root), self.train.classes, len(self.train.samples), str(self.test.root),
             self.test.classes, len(self.test.samples), self.config.key(), str(self.base), self.backbone]
        )  # fmt: skip
        slug = safe_name(self.train.root.name) or "folder"
        return f"{slug}-{self.config.method}-{hashlib.sha256(key.encode()).hexdigest()[:10]}"

    @property
    def run_dir(self) -> Path:
        """The trainer's checkpoint folder for `out` (trainer.fit names it `<out>.run`)."""
        return self.out.with_name(self.out.name + ".run")

    @property
    def checkpoint(self) -> Path:
        return self.run_dir / "checkpoint.pt"


def train(plan: TrainingPlan, callbacks: FitCallbacks, cancel: CancelCheck) -> FitResult:
    from trainer.fit import fit

    plan.out.parent.mkdir(parents=True, exist_ok=True)
    return fit(
        plan.train, plan.out, plan.config, base=plan.base, backbone=plan.backbone, validation=plan.test,
        callbacks=callbacks, cancel=cancel,
    )  # fmt: skip


def held_out_recall(history: list[dict[str, float]]) -> dict[str, tuple[float, float]] | None:
    """{'R@1': (start, end), 'binary R@1': (start, end)} from a fit history (epoch 0 = the starting model)."""
    if not history or history[0].get("epoch") != 0 or "R@1" not in history[0] or "R@1" not in history[-1]:
        return None
    first, last = history[0], history[-1]
    return {k: (float(first[k]), float(last[k])) for k in ("R@1", "binary R@1") if k in first and k in last}


def save_model_as(source: Path, target: Path, name: str, notes: dict[str, Any], cleanup: Path | None) -> Path:
    """Copy the exported model to `target` (weights + card, atomically) under `name`; returns `target`.

    The card gets the new name and `notes` under metrics. `cleanup` (the run's checkpoint folder, with its
    trunk cache, often far larger than the model) is removed once the copy is safely written.
    """
    from trainer.atomic import atomic_write

    target = Path(target)
    if target.suffix in (".safetensors", ".json"):
        target = target.with_suffix("")
    src_weights, src_card = Path(str(source) + ".safetensors"), Path(str(source) + ".json")
    card = json.loads(src_card.read_text(encoding="utf-8"))
    card["name"] = name
    card.setdefault("metrics", {}).update(notes)
    atomic_write(Path(str(target) + ".safetensors"), lambda p: shutil.copyfile(src_weights, p))
    atomic_write(Path(str(target) + ".json"), lambda p: p.write_text(json.dumps(card, indent=2) + "\n", "utf-8"))
    if cleanup is not None and cleanup.is_dir():
        shutil.rmtree(cleanup, ignore_errors=True)
    return target


# -- detailed evaluation ---------------------------------------------------------------------------------


def evaluate_both(
    start: Path | None, new: Path, test: LabelledFolder, device: str, max_images: int, cancel: CancelCheck
) -> dict[str, Any]:
    """Float and binary metrics of the starting and the fine-tuned model at every nested dimension.

    The starting model is judged at the new model's input size, so the two differ only by training.
    """
    from dataclasses import replace

    from trainer.evaluation import evaluate_model
    from trainer.model import EmbeddingModel, ModelCard, load_model

    new_model = load_model(new)
    if start is None:
        card = ModelCard.for_backbone(f"{DEFAULT_BACKBONE} ImageNet", DEFAULT_BACKBONE)
        start_model = EmbeddingModel(card, pretrained=True).eval()
    else:
        start_model = load_model(start)
    start_model.card = replace(
        start_model.card, input_size=new_model.card.input_size, resize_size=new_model.card.resize_size
    )
    out = {}
    for label, model in (("start", start_model), ("new", new_model)):
        out[label] = evaluate_model(
            model, test, device=device, with_clustering=False, max_images=max_images, cancel=cancel
        )
    return out
