"""Generated test pictures, shared by every test directory.

Tests run with `--import-mode=importlib`, under which neither conftest files nor sibling test modules can be
imported; `tests/conftest.py` loads this module as `imagegen` so that test files can `from imagegen import ...`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image

FloatImage = npt.NDArray[np.float32]

# A faint colour cast per class on top of random blobs (`make_tinted_image`): ImageNet features mostly see the
# blobs (R@1 well below 1 before training), while the cast is easy to learn for a trainable last stage.
TINTS = np.array([[1, 0, -1], [-1, 1, 0], [0, -1, 1], [1, -1, 0]], np.float32) * 0.08


def blobs(
    rng: np.random.Generator,
    width: int,
    height: int,
    per_channel: int = 3,
    radius: tuple[float, float] = (8, 30),
    weighted: bool = True,
    grid: type[np.floating] = np.float32,
) -> FloatImage:
    """An (height, width, 3) float32 sum of Gaussian blobs: `per_channel` blobs in each channel, each drawn from
    `rng` as centre x, centre y, radius within `radius` and, when `weighted`, a brightness in [0.3, 1).

    `grid` is the precision the blobs are computed in before they are added up in float32.
    """
    yy, xx = np.mgrid[0:height, 0:width].astype(grid)
    img = np.zeros((height, width, 3), np.float32)
    for c in range(3):
        for _ in range(per_channel):
            cx, cy, r = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(*radius)
            blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r))
            img[..., c] += rng.uniform(0.3, 1.0) * blob if weighted else blob
    return img


def save(pixels: npt.NDArray[np.uint8], path: Path, fmt: str | None = None) -> Path:
    """Writes `pixels` to `path` (format from the suffix unless `fmt`), creating its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format=fmt)
    return path


def make_image(
    path: Path,
    seed: int,
    size: tuple[int, int] = (96, 80),
    fmt: str | None = None,
    radius: tuple[float, float] = (8, 30),
) -> Path:
    """A deterministic, textured RGB picture of `size` (width, height): smooth blobs, so that embeddings
    differ between seeds and crops or flips of one picture differ."""
    img = blobs(np.random.default_rng(seed), size[0], size[1], radius=radius)
    return save((255 * img / max(img.max(), 1e-6)).clip(0, 255).astype(np.uint8), path, fmt)


def make_tinted_image(path: Path, cls: int, seed: int, size: int = 64) -> Path:
    """A square of random blobs with the faint colour cast of class `cls` (`TINTS`, cycled)."""
    img = blobs(np.random.default_rng(seed), size, size, radius=(5, 20), grid=np.float64)
    img = (0.8 * img / img.max() + 0.1 + TINTS[cls % len(TINTS)]).clip(0, 1)
    return save((255 * img).astype(np.uint8), path)


def make_cast_image(path: Path, cls: int, seed: int, size: int = 64) -> Path:
    """A square with one unweighted blob per channel and a strong cast in channel `cls % 3`."""
    img = blobs(np.random.default_rng(seed), size, size, per_channel=1, radius=(5, 20), weighted=False)
    img[..., cls % 3] += 0.3
    return save((255 * img / img.max()).astype(np.uint8), path)


def make_labelled_folder(
    root: Path,
    classes: int,
    per_class: int,
    offset: int = 0,
    draw: Callable[[Path, int, int], Path] = make_tinted_image,
    name: str = "{i:02d}.png",
    seed_step: int = 1000,
) -> Path:
    """`root/class_{c + offset}/{name}` for `classes` classes of `per_class` pictures each, drawn by
    `draw(path, c, seed_step * (c + offset) + i)`; returns `root`."""
    for c in range(classes):
        for i in range(per_class):
            draw(root / f"class_{c + offset}" / name.format(i=i), c, seed_step * (c + offset) + i)
    return root
