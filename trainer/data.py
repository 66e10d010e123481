"""Labelled folders (one sub-folder per class) -> checked samples, class splits, and datasets.

Metric learning is judged on classes never seen in training, so splits are by class: the convention of
../shared/datasets/README.md (sorted class names, the first half trains) or a seeded shuffle, or explicit
train/test folders. Folders that cannot train are refused up front with the reason spelled out, instead of
failing an hour into a run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
from PIL import Image
from torch.utils.data import Dataset

from trainer.folders import (  # noqa: F401  (re-exported: torch-free, but long imported from here)
    MIN_IMAGES_PER_CLASS,
    DatasetError,
    LabelledFolder,
    require_trainable,
    split_by_class,
    trainability_problems,
)
from trainer.images import ImageLoadError, Skipped, load_rgb, preprocess_pil, scan_images
from trainer.progress import CancelCheck, Cancelled, ProgressCallback, RateMeter, never_cancelled

VERIFY_STAGE = "checking"  # Progress.stage while every image is decoded once
_VERIFY_CHUNK = 64  # images decoded between two looks at `cancel` and two progress reports


def scan_labelled_folder(
    root: Path,
    verify: bool = True,
    workers: int = 4,
    progress: ProgressCallback | None = None,
    cancel: CancelCheck = never_cancelled,
    follow_outside: bool = False,
) -> LabelledFolder:
    """Classes are the first-level sub-folders (images deeper inside count for that class).

    With `verify`, every image is decoded once at a tiny draft size (cheap for JPEG) so that unreadable
    files are reported now rather than breaking a batch mid-training. That takes minutes for a large
    collection, so it reports progress (the scan's, then stage `VERIFY_STAGE` with a total) and stops with
    `Cancelled` when asked.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"not a folder: {root}")
    images, skipped = scan_images(root, progress, cancel, follow_outside=follow_outside)
    by_class: dict[str, list[Path]] = {}
    for path in images:
        rel = path.relative_to(root)
        if len(rel.parts) < 2:
            skipped.append(Skipped(path, "not in a class sub-folder"))
            continue
        by_class.setdefault(rel.parts[0], []).append(path)
    if verify:
        flat = [p for paths in by_class.values() for p in paths]
        meter = RateMeter(len(flat), VERIFY_STAGE)
        reasons: list[str | None] = []
        with ThreadPoolExecutor(workers) as pool:
            for start in range(0, len(flat), _VERIFY_CHUNK):
                if cancel():
                    raise Cancelled(f"check of {root} cancelled after {start:,} of {len(flat):,} images")
                chunk = flat[start : start + _VERIFY_CHUNK]
                reasons.extend(pool.map(_unreadable_reason, chunk))
                if progress is not None:
                    progress(meter.advance(len(chunk)))
        bad = {p: r for p, r in zip(flat, reasons, strict=True) if r is not None}
        skipped.extend(Skipped(p, r) for p, r in bad.items())
        by_class = {c: [p for p in ps if p not in bad] for c, ps in by_class.items()}
    classes = sorted(c for c, ps in by_class.items() if ps)
    samples = [(p, i) for i, c in enumerate(classes) for p in by_class[c]]
    return LabelledFolder(root, classes, samples, sorted(skipped, key=lambda s: str(s.path)))


def _unreadable_reason(path: Path) -> str | None:
    try:
        load_rgb(path, min_side=16)
    except ImageLoadError as exc:
        return str(exc)
    return None


Transform = Callable[[Image.Image], npt.NDArray[np.uint8]]


def eval_transform(resize: int, crop: int) -> Transform:
    return lambda img: preprocess_pil(img, resize, crop)


def train_transform(crop: int, scale: tuple[float, float] = (0.2, 1.0)) -> Transform:
    """Random resized crop + horizontal flip (the reference recipe), as uint8 HWC like the eval path."""
    from torchvision.transforms import v2

    tf = v2.Compose([v2.RandomResizedCrop(crop, scale=scale, antialias=True), v2.RandomHorizontalFlip()])

    def apply(img: Image.Image) -> npt.NDArray[np.uint8]:
        return np.asarray(tf(img), dtype=np.uint8).copy()

    return apply


class ImageDataset(Dataset[tuple[torch.Tensor, int]]):
    """Samples -> (uint8 HWC tensor, label); normalisation happens on the batch, on the model's device.

    An item is asked for by its index, or by `(index, seed)`: then the random transform draws from a generator
    seeded with `seed` alone (the caller's random state is left as it was), so the same image gets the same crop
    whichever process decodes it and whatever was decoded before it.
    """

    def __init__(self, samples: Sequence[tuple[Path, int]], transform: Transform, min_side: int) -> None:
        self.samples = list(samples)
        self.transform = transform
        self.min_side = min_side

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, item: int | tuple[int, int]) -> tuple[torch.Tensor, int]:
        index, seed = item if isinstance(item, tuple) else (item, None)
        path, label = self.samples[index]
        try:
            img = load_rgb(path, min_side=self.min_side)
        except ImageLoadError:
            # Verified at scan time; a file that broke since then is replaced by a grey image rather than
            # killing a long run. Its label stays, so the batch composition holds.
            img = Image.new("RGB", (self.min_side, self.min_side), (128, 128, 128))
        if seed is None:
            return torch.from_numpy(self.transform(img)), label
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return torch.from_numpy(self.transform(img)), label


def collate_uint8(batch: Sequence[tuple[torch.Tensor, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.stack([b[0] for b in batch])
    labels = torch.tensor([b[1] for b in batch], dtype=torch.int64)
    return images, labels
