"""Decoding within a memory budget: high-bit-depth pictures in bands, one process-wide budget shared by threads."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from trainer import decode_memory, images
from trainer.decode_memory import DecodeBudget, scale_high_bit_depth
from trainer.images import ImageLoadError, load_rgb

ROOT = Path(__file__).resolve().parents[2]

PEAK_OF_CHILD = """
import resource, subprocess, sys
done = subprocess.run(sys.argv[1:], capture_output=True, text=True)
print(done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024)
print(done.stdout, done.stderr)
"""


def test_two_high_bit_depth_tiffs_index_under_one_and_a_half_gigabytes(tmp_path: Path) -> None:
    # The attack: 0.9 MB float32 and int32 TIFFs just under the pixel limit took 4.4 GB each to decode, and
    # `explorer index` with two of them peaked at 8.9 GB (decoding threads at once, float64 copies of the pixels).
    photos = tmp_path / "photos"
    photos.mkdir()
    size = (12_000, 9_999)  # 119,988,000 pixels: just under trainer.images.MAX_IMAGE_PIXELS
    assert size[0] * size[1] < images.MAX_IMAGE_PIXELS
    Image.new("F", size, 0.25).save(photos / "float32.tif", compression="tiff_adobe_deflate")
    Image.new("I", size, 40_000).save(photos / "int32.tif", compression="tiff_adobe_deflate")
    explorer = [sys.executable, "-m", "explorer.cli", "--device", "cpu", "index", str(photos)]
    env = {"RETRIEVAL_EXPLORER_CACHE": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-c", PEAK_OF_CHILD, *explorer], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    code, peak_mb = map(int, done.stdout.split("\n", 1)[0].split())
    assert code == 0, done.stdout
    assert "2 embedded" in done.stdout
    assert peak_mb < 1536, f"explorer index peaked at {peak_mb} MB"


def test_a_picture_larger_than_the_whole_budget_is_refused_with_its_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "scan.tif"
    Image.new("F", (2000, 1000), 0.5).save(path)
    monkeypatch.setattr(images, "DECODE_BUDGET", DecodeBudget(4 * 1024 * 1024))  # 4 MB; the scan holds 8 MB
    with pytest.raises(
        ImageLoadError, match=r"too large to decode: a 2000x1000 F image needs about 7 MB, more than the 4 MB"
    ):
        load_rgb(path, min_side=256)
    monkeypatch.setattr(images, "DECODE_BUDGET", DecodeBudget(64 * 1024 * 1024))
    assert load_rgb(path, min_side=256).size == (666, 333)  # shrunk by 3: the shorter side stays >= 256


def test_decodes_wait_for_each_other_when_together_they_exceed_the_budget() -> None:
    budget = DecodeBudget(100)
    order: list[str] = []
    first_holds = threading.Event()

    def first() -> None:
        with budget.reserve(70):
            first_holds.set()
            time.sleep(0.2)
            order.append("first done")

    def second() -> None:
        first_holds.wait()
        with budget.reserve(70):
            order.append("second decoding")

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert order == ["first done", "second decoding"]
    assert budget.held == 0


def test_high_bit_depth_shrinks_in_bands_and_scales_like_the_whole_picture(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(decode_memory, "BAND_PIXELS", 1000)  # many bands on a small picture
    values = np.linspace(0.0, 1.0, 120 * 90, dtype=np.float32).reshape(90, 120)
    values[5, 7] = np.nan
    picture = Image.fromarray(values, "F")
    whole = np.asarray(scale_high_bit_depth(picture))
    assert whole.shape == (90, 120)
    assert whole[0, 0] == 0 and whole[-1, -1] == 255 and whole[5, 7] == 0
    expected = np.clip(np.rint(np.nan_to_num(values) * 255), 0, 255)
    assert np.array_equal(whole, expected.astype(np.uint8))
    small = np.asarray(scale_high_bit_depth(picture, min_side=30))  # shrunk by 3, block means
    assert small.shape == (30, 40)
    block_means = values[:90, :120].copy()
    block_means[5, 7] = np.nan
    blocks = np.nanmean(block_means.reshape(30, 3, 40, 3), axis=(1, 3))
    assert np.abs(small.astype(int) - np.rint(blocks * 255)).max() <= 1


def test_sixteen_bit_scales_by_its_full_range_in_bands(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(decode_memory, "BAND_PIXELS", 50)
    a = np.arange(0, 65536, 64, dtype=np.uint16).reshape(32, 32)
    out = np.asarray(scale_high_bit_depth(Image.fromarray(a)))
    assert np.array_equal(out, (a >> 8).astype(np.uint8))
