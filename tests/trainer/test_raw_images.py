"""Camera RAW files: the embedded preview when it is large enough, a half-size demosaic otherwise, upright either way.

The DNGs are written by tests/raw_files.py from a picture with a red top-left corner, so where that corner ends up
says which way the picture was turned.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("rawpy")
pytest.importorskip("tifffile")

from raw_files import write_dng

from trainer.images import IMAGE_EXTENSIONS, ImageLoadError, load_for_model, load_rgb, scan_images
from trainer.raw_images import RAW_EXTENSIONS, open_raw

SENSOR = (400, 300)  # width x height as the sensor saw it


def sensor_picture() -> Image.Image:
    picture = Image.new("RGB", SENSOR, (40, 120, 40))
    picture.paste((220, 30, 30), (0, 0, 100, 75))  # the top-left corner, red
    return picture


def red_corner(picture: Image.Image) -> str:
    """Which corner of the shown picture is red: 'top-left', 'top-right', 'bottom-left' or 'bottom-right'."""
    a = np.asarray(picture).astype(int)
    corners = {"top-left": a[3, 3], "top-right": a[3, -4], "bottom-left": a[-4, 3], "bottom-right": a[-4, -4]}
    reddest = max(corners, key=lambda k: corners[k][0] - corners[k][1])
    assert corners[reddest][0] - corners[reddest][1] > 80, corners
    return reddest


# EXIF orientation of the RAW -> where the sensor's top-left corner is when the picture is shown upright.
UPRIGHT_CORNER = {1: "top-left", 3: "bottom-right", 6: "top-right", 8: "bottom-left"}


def test_raw_files_are_images_to_the_scan(tmp_path: Path) -> None:
    assert {".dng", ".cr2", ".cr3", ".nef", ".arw", ".raf", ".orf", ".rw2"} <= RAW_EXTENSIONS <= IMAGE_EXTENSIONS
    write_dng(tmp_path / "a.dng", sensor_picture(), preview_side=400)
    write_dng(tmp_path / "B.DNG", sensor_picture(), preview_side=400)
    found, skipped = scan_images(tmp_path)
    assert sorted(p.name for p in found) == ["B.DNG", "a.dng"]
    assert skipped == []


@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_preview_and_demosaic_are_both_upright(tmp_path: Path, orientation: int) -> None:
    with_preview = write_dng(tmp_path / "p.dng", sensor_picture(), orientation, preview_side=400)
    sensor_only = write_dng(tmp_path / "s.dng", sensor_picture(), orientation, preview_side=None)
    assert open_raw(with_preview, 200).source == "preview"
    assert open_raw(sensor_only, 100).source == "demosaic"
    shown = [load_rgb(with_preview, min_side=200), load_rgb(sensor_only, min_side=100)]
    turned = orientation in (6, 8)
    for picture in shown:
        assert red_corner(picture) == UPRIGHT_CORNER[orientation]
        assert (picture.height > picture.width) == turned  # portrait exactly when the camera was turned
    assert shown[1].size == ((150, 200) if turned else (200, 150))  # half-size demosaic: one pixel per 2 x 2 block


def test_a_preview_too_small_for_the_request_is_not_used(tmp_path: Path) -> None:
    path = write_dng(tmp_path / "small-preview.dng", sensor_picture(), preview_side=160)  # 160 x 120
    assert open_raw(path, 100).source == "preview"
    assert open_raw(path, 140).source == "demosaic"  # 120 < 140: upscaling a preview would blur what the model sees
    assert open_raw(path, None).source == "demosaic"  # the whole picture wanted: half the sensor, 150 > 120
    assert load_rgb(path, min_side=140).size == (200, 150)


def test_a_preview_with_its_own_orientation_is_turned_once(tmp_path: Path) -> None:
    # The camera stored the preview upright-after-EXIF: the preview's own tag wins, the RAW's is not applied on top.
    path = write_dng(tmp_path / "own.dng", sensor_picture(), orientation=6, preview_side=400, preview_orientation=6)
    picture = load_rgb(path, min_side=200)
    assert red_corner(picture) == "top-right" and picture.height > picture.width


def test_raw_files_reach_the_model_input(tmp_path: Path) -> None:
    path = write_dng(tmp_path / "m.dng", sensor_picture(), orientation=6, preview_side=400)
    pixels = load_for_model(path, resize=64, crop=56)
    assert pixels.shape == (56, 56, 3) and pixels.dtype == np.uint8


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("empty-looking.nef", b"\x00" * 4096),
        ("text.cr2", b"this is a text file saved with the wrong name\n" * 40),
    ],
)
def test_unreadable_raw_files_are_skipped_with_a_reason(tmp_path: Path, name: str, content: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ImageLoadError) as info:
        load_rgb(path, min_side=100)
    assert "RAW" in str(info.value) and "\n" not in str(info.value)


def test_a_truncated_raw_file_is_skipped_with_a_reason(tmp_path: Path) -> None:
    whole = write_dng(tmp_path / "whole.dng", sensor_picture(), preview_side=None).read_bytes()
    cut = tmp_path / "cut.dng"
    cut.write_bytes(whole[: len(whole) // 3])
    try:
        picture = load_rgb(cut, min_side=100)
    except ImageLoadError as e:
        assert str(e)
    else:  # LibRaw may fill what is missing; then it must still be a picture of the sensor's size
        assert picture.size == (200, 150)
