"""Frozen-trunk feature caching: the CPU recipe for fine-tuning only the last backbone stages.

When the first stages of the backbone are frozen, their output for an image depends only on the image and
its augmentation, so it can be computed once and reused every epoch: training then costs only the trainable
stages' forward and backward pass. On a laptop CPU this is the difference between minutes and hours per
epoch. Augmentation is kept by caching several random views per image and flipping the cached feature maps
(convolutional features are close to flip-equivariant).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from torch import nn

from trainer.atomic import atomic_write
from trainer.data import eval_transform, train_transform
from trainer.devices import autocast_for
from trainer.images import ImageLoadError, load_rgb
from trainer.progress import CancelCheck, Cancelled, ProgressCallback, RateMeter, never_cancelled


def compute_trunk_cache(
    trunk: nn.Module,
    normalize: Callable[[torch.Tensor], torch.Tensor],
    samples: Sequence[tuple[Path, int]],
    crop: int,
    resize: int,
    views: int,
    device: torch.device,
    batch_size: int = 64,
    seed: int = 0,
    progress: ProgressCallback | None = None,
    cancel: CancelCheck = never_cancelled,
) -> torch.Tensor:
    """(N, views, C, h, w) float16: view 0 is the centre crop, the others random resized crops with flips."""
    centre = eval_transform(resize, crop)
    torch.manual_seed(seed)
    augment = train_transform(crop)
    out: torch.Tensor | None = None
    meter = RateMeter(len(samples) * views, "caching frozen stages")
    trunk.eval().to(device)

    def load(i_view: tuple[int, int]) -> npt.NDArray[np.uint8] | Image.Image:
        i, view = i_view
        try:
            img = load_rgb(samples[i][0], min_side=resize)
        except ImageLoadError:
            return np.full((crop, crop, 3), 128, np.uint8)
        return centre(img) if view == 0 else img

    def augmented(item: npt.NDArray[np.uint8] | Image.Image) -> npt.NDArray[np.uint8]:
        # Random views are drawn here, in job order on this thread: drawn in the decoding threads, their
        # crops would depend on thread timing and the seed would not reproduce the cache.
        return item if isinstance(item, np.ndarray) else augment(item)

    jobs = [(i, v) for v in range(views) for i in range(len(samples))]
    with ThreadPoolExecutor(2) as pool:
        for start in range(0, len(jobs), batch_size):
            if cancel():
                raise Cancelled("trunk caching cancelled")
            chunk = jobs[start : start + batch_size]
            arrays = np.stack([augmented(item) for item in pool.map(load, chunk)])
            with torch.inference_mode(), autocast_for(device):
                x = normalize(torch.from_numpy(arrays).to(device))
                maps = trunk(x).to(torch.float16).cpu()
            if out is None:
                out = torch.empty((len(samples), views, *maps.shape[1:]), dtype=torch.float16)
            for (i, v), m in zip(chunk, maps, strict=True):
                out[i, v] = m
            report = meter.advance(len(chunk))
            if progress:
                progress(report)
    assert out is not None
    return out


def save_cache(cache: torch.Tensor, path: Path, key: str) -> None:
    atomic_write(path, lambda p: save_file({"maps": cache.contiguous()}, str(p), metadata={"key": key}))


def load_cache(path: Path, key: str) -> torch.Tensor | None:
    """The cache saved for exactly this (samples, trunk, views) key, or None."""
    if not path.exists():
        return None
    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt") as f:
            if (f.metadata() or {}).get("key") != key:
                return None
        return load_file(str(path))["maps"]
    except Exception:
        return None
