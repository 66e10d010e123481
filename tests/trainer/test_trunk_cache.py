"""The frozen-trunk cache: what it stores, that it reproduces, and how it is saved and found again."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from imagegen import make_image
from torch import nn

import trainer.trunk_cache as trunk_cache
from trainer.backbones import backbone_stages
from trainer.card import ModelCard
from trainer.images import load_rgb, preprocess_pil
from trainer.model import EmbeddingModel
from trainer.progress import Cancelled, Progress
from trainer.trunk_cache import compute_trunk_cache, load_cache, save_cache

CROP, RESIZE = 64, 73
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def model() -> EmbeddingModel:
    torch.manual_seed(0)
    return EmbeddingModel(ModelCard.for_backbone("t", "efficientnet_lite0", 64), pretrained=False).eval()


@pytest.fixture(scope="module")
def trunk(model: EmbeddingModel) -> nn.Module:
    return nn.Sequential(*backbone_stages(model.backbone)[:4])


@pytest.fixture
def samples(tmp_path: Path) -> list[tuple[Path, int]]:
    """Five small pictures of two labels; narrow blobs, so that crops and flips of one picture differ."""
    return [(make_image(tmp_path / "imgs" / f"{i}.png", i, size=(80, 72), radius=(6, 20)), i % 2) for i in range(5)]


def test_view_zero_is_the_trunk_output_on_the_centre_crop(
    model: EmbeddingModel, trunk: nn.Module, samples: list[tuple[Path, int]]
) -> None:
    cache = compute_trunk_cache(trunk, model.normalize_uint8, samples, CROP, RESIZE, 3, CPU, batch_size=4)
    assert cache.dtype == torch.float16
    with torch.inference_mode():
        arrays = np.stack([preprocess_pil(load_rgb(p, min_side=RESIZE), RESIZE, CROP) for p, _ in samples])
        expected = trunk(model.normalize_uint8(torch.from_numpy(arrays)))
    assert cache.shape == (len(samples), 3, *expected.shape[1:])
    torch.testing.assert_close(cache[:, 0].float(), expected, rtol=2e-3, atol=2e-3)
    # The other views are random crops: not the centre crop, and not each other.
    for v in (1, 2):
        assert (cache[:, v].float() - expected).abs().mean() > 0.05 * expected.abs().mean()
    assert not torch.equal(cache[:, 1], cache[:, 2])


def test_the_seed_reproduces_every_view(
    model: EmbeddingModel, trunk: nn.Module, samples: list[tuple[Path, int]]
) -> None:
    def compute(seed: int) -> torch.Tensor:
        return compute_trunk_cache(trunk, model.normalize_uint8, samples, CROP, RESIZE, 3, CPU, batch_size=4, seed=seed)

    first = compute(7)
    for _ in range(2):  # the augmented views must not depend on which decoding thread ran first
        assert torch.equal(compute(7), first)
    other = compute(8)
    assert torch.equal(other[:, 0], first[:, 0])
    assert not torch.equal(other[:, 1:], first[:, 1:])


def test_unreadable_image_is_cached_as_grey(
    model: EmbeddingModel, trunk: nn.Module, samples: list[tuple[Path, int]]
) -> None:
    samples[1][0].write_bytes(b"broken")
    cache = compute_trunk_cache(trunk, model.normalize_uint8, samples, CROP, RESIZE, 2, CPU)
    grey = torch.full((1, CROP, CROP, 3), 128, dtype=torch.uint8)
    with torch.inference_mode():
        expected = trunk(model.normalize_uint8(grey))[0]
    for v in range(2):
        torch.testing.assert_close(cache[1, v].float(), expected, rtol=2e-3, atol=2e-3)


def test_progress_and_cancel(model: EmbeddingModel, trunk: nn.Module, samples: list[tuple[Path, int]]) -> None:
    reports: list[Progress] = []
    compute_trunk_cache(
        trunk, model.normalize_uint8, samples, CROP, RESIZE, 2, CPU, batch_size=4, progress=reports.append
    )
    assert [r.done for r in reports] == [4, 8, 10]
    assert all(r.total == 10 for r in reports)
    with pytest.raises(Cancelled):
        compute_trunk_cache(trunk, model.normalize_uint8, samples, CROP, RESIZE, 2, CPU, cancel=lambda: True)


def test_save_and_load_by_key(tmp_path: Path) -> None:
    cache = torch.randn(3, 2, 4, 5, 5).to(torch.float16)
    path = tmp_path / "run" / "trunk-cache.safetensors"
    assert load_cache(path, "abc") is None  # nothing saved yet
    save_cache(cache, path, "abc")
    loaded = load_cache(path, "abc")
    assert loaded is not None and loaded.dtype == torch.float16
    assert torch.equal(loaded, cache)
    assert load_cache(path, "another key") is None
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary files left behind


def test_a_corrupt_cache_is_not_used(tmp_path: Path) -> None:
    path = tmp_path / "trunk-cache.safetensors"
    path.write_bytes(b"\x00" * 64)
    assert load_cache(path, "abc") is None


def test_a_failed_save_leaves_the_previous_cache_and_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "trunk-cache.safetensors"
    old = torch.ones(2, 1, 3, 2, 2, dtype=torch.float16)
    save_cache(old, path, "old")

    def broken_save(tensors: dict[str, torch.Tensor], filename: str, metadata: dict[str, str]) -> None:
        Path(filename).write_bytes(b"half written")
        raise OSError("disk full")

    monkeypatch.setattr(trunk_cache, "save_file", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_cache(torch.zeros(2, 1, 3, 2, 2, dtype=torch.float16), path, "new")
    assert [p.name for p in tmp_path.iterdir()] == [path.name]
    loaded = load_cache(path, "old")
    assert loaded is not None and torch.equal(loaded, old)
