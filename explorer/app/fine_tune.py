"""The fine-tune wizard's work, without Qt: folder checks, the training plan, time estimates, saving.

Everything here runs on a worker thread (`explorer.ui.workers.Job`) or is cheap arithmetic, so the wizard's
pages stay a thin layer of widgets. torch and the trainer are imported inside the functions: this module is
imported on the GUI thread, which must never pay for importing torch.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainer.backbone_specs import BACKBONE_INFO
from trainer.card import load_card
from trainer.progress import CancelCheck, ProgressCallback, never_cancelled  # torch-free

if TYPE_CHECKING:
    from trainer.data import LabelledFolder
    from trainer.fit import FitCallbacks, FitConfig, FitResult

DEFAULT_BACKBONE = "efficientnet_lite0"
MIN_SPLIT_CLASSES = 4  # trainer.data.split_by_class: 2 classes to train, 2 to test
TRAIN_SUBFOLDERS = ("train", "training")
TEST_SUBFOLDERS = ("test", "val", "validation")


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
        spec = BACKBONE_INFO[DEFAULT_BACKBONE]
        return {"name": f"{DEFAULT_BACKBONE} ImageNet", "backbone": DEFAULT_BACKBONE, "dim": spec.feature_dim,
                "input_size": spec.input_size, "trained": False}  # fmt: skip
    card = load_card(model)  # checked: a crafted card is refused here with its reason (trainer.card.ModelFileError)
    return {k: getattr(card, k) for k in ("name", "backbone", "dim", "input_size", "trained", "description")}


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

    train: LabelledFolder  # what trains (the selection part already set aside)
    test: LabelledFolder | None  # the held-out part shown to the person; None when training on everything
    config: FitConfig
    base: Path | None  # a model to start from; None: the ImageNet backbone
    backbone: str
    runs: Path  # the folder that holds training runs (runs_dir())
    selection: LabelledFolder | None = None  # set aside from the training data: chooses the epoch to keep
    protocol: str = "images"  # trainer.folders.PROTOCOLS, or "existing" (a test folder of the person's)

    @property
    def out(self) -> Path:
        """Where fit exports the model (`<out>.safetensors` / `.json`); its checkpoints go to `<out>.run/`."""
        return self.runs / self.run_name()

    def run_name(self) -> str:
        test = self.test
        key = json.dumps(
            [str(self.train.root), self.train.classes, len(self.train.samples),
             str(test.root) if test else None, test.classes if test else None, len(test.samples) if test else 0,
             len(self.selection.samples) if self.selection else 0, self.protocol, self.config.key(), str(self.base),
             self.backbone]
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
        callbacks=callbacks, cancel=cancel, selection=plan.selection,
    )  # fmt: skip


def held_out_recall(
    history: list[dict[str, float]], kept_epoch: int | None = None
) -> dict[str, tuple[float, float]] | None:
    """{'R@1': (start, kept), 'binary R@1': (start, kept)} from a fit history (epoch 0 = the starting model);
    `kept_epoch` is the epoch that was exported (None: the last)."""
    if not history or history[0].get("epoch") != 0 or "R@1" not in history[0]:
        return None
    first = history[0]
    kept = history[-1] if kept_epoch is None else next((h for h in history if h.get("epoch") == kept_epoch), None)
    if kept is None or "R@1" not in kept:
        return None
    return {k: (float(first[k]), float(kept[k])) for k in ("R@1", "binary R@1") if k in first and k in kept}


def is_worse(recall: dict[str, tuple[float, float]] | None) -> bool:
    """True when the kept model is below the starting one on the held-out part, float or binary."""
    return bool(recall) and any(end < start for start, end in (recall or {}).values())


def save_model_as(source: Path, target: Path, name: str, notes: dict[str, Any], cleanup: Path | None) -> Path:
    """Copy the exported model to `target` (weights, card and its Markdown, atomically) under `name`; returns
    `target` without a suffix.

    The card gets the new name and `notes` under metrics. `cleanup` (the run's checkpoint folder, with its
    trunk cache, often far larger than the model) is removed once the copy is safely written.
    """
    from dataclasses import replace

    from trainer.atomic import atomic_write
    from trainer.card import model_paths, save_card
    from trainer.onnx_runtime import onnx_paths_beside

    src_weights, _src_card = model_paths(source)
    card = load_card(source)
    card = replace(card, name=name, metrics={**card.metrics, **notes})
    weights, _card_path = model_paths(target)
    atomic_write(weights, lambda p: shutil.copyfile(src_weights, p))
    save_card(card, weights.with_suffix(""))
    target = weights.with_suffix("")
    # The runtime file and its record go along: same weights, same input contract, so the same fingerprint.
    for src, dst in zip(onnx_paths_beside(source), onnx_paths_beside(target), strict=True):
        if src.exists():
            atomic_write(dst, lambda p, src=src: shutil.copyfile(src, p))  # type: ignore[misc]
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

    from trainer.card import ModelCard
    from trainer.evaluation import evaluate_model
    from trainer.model import EmbeddingModel, load_model

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
