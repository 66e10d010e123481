"""Shared fixtures: headless Qt, an isolated cache directory, and small generated images."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATASETS = PROJECT_ROOT.parent / "shared" / "datasets"


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread() -> None:
    """Tests run tiny batches, where torch's thread pool on 2 shared cores costs far more than it gains."""
    import torch

    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own cache directory so catalogs never leak between tests."""
    cache = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("RETRIEVAL_EXPLORER_CACHE", str(cache))
    return cache


def make_image(path: Path, seed: int, size: tuple[int, int] = (96, 80), fmt: str | None = None) -> Path:
    """A deterministic, textured RGB picture (smooth blobs) so that embeddings differ between seeds."""
    rng = np.random.default_rng(seed)
    h, w = size[1], size[0]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.zeros((h, w, 3), np.float32)
    for c in range(3):
        for _ in range(3):
            cx, cy = rng.uniform(0, w), rng.uniform(0, h)
            r = rng.uniform(8, 30)
            img[..., c] += rng.uniform(0.3, 1.0) * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r))
    img = (255 * img / max(img.max(), 1e-6)).clip(0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path, format=fmt)
    return path


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """A small folder of 12 generated JPEG/PNG photos in two sub-folders."""
    root = tmp_path / "photos"
    for i in range(12):
        sub = "a" if i < 6 else "b"
        ext = ".jpg" if i % 2 == 0 else ".png"
        make_image(root / sub / f"img_{i:02d}{ext}", seed=i)
    return root


@pytest.fixture
def shared_datasets() -> Path:
    if not SHARED_DATASETS.is_dir():
        pytest.skip("../shared/datasets is not present")
    return SHARED_DATASETS
