"""Duplicates (the same photo) apart from bursts (the same scene): the pixels decide among the codes' similar pairs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from imagegen import blobs
from PIL import Image

from explorer.engine.duplicates import candidate_pairs, find_duplicates


def scene(seed: int, size: tuple[int, int] = (480, 360)) -> Image.Image:
    rng = np.random.default_rng(seed)
    a = blobs(rng, *size, per_channel=12, radius=(6, 40))
    return Image.fromarray((255 * a / a.max()).astype(np.uint8))


def test_copies_are_duplicates_and_another_frame_is_only_similar(tmp_path: Path) -> None:
    photo = scene(1)
    w, h = photo.size
    files = {
        "original.jpg": (photo, {"quality": 95}),
        "half.jpg": (photo.resize((w // 2, h // 2), Image.Resampling.LANCZOS), {"quality": 90}),
        "q40.jpg": (photo, {"quality": 40}),
        "cropped.jpg": (photo.crop((round(0.04 * w), round(0.04 * h), round(0.96 * w), round(0.96 * h))), {}),
        "burst.jpg": (photo.crop((round(0.2 * w), 0, w, h)), {}),  # the camera moved: the same scene, not a copy
        "other.jpg": (scene(2), {}),
    }
    exif = Image.Exif()
    exif[0x0112] = 6
    files["rotated.jpg"] = (photo.transpose(Image.Transpose.ROTATE_90), {"exif": exif.tobytes()})
    paths = []
    for name, (picture, options) in files.items():
        picture.save(tmp_path / name, **options)
        paths.append(tmp_path / name)
    codes = np.zeros((len(paths), 160), np.uint8)  # every pair a candidate: the pixels alone decide here
    codes[paths.index(tmp_path / "other.jpg")] = 255  # ... but a different photo's code is far
    report = find_duplicates(paths, codes)
    (duplicates,) = report.of_kind("duplicates")
    names = [m.path.name for m in duplicates.members]
    assert sorted(names) == ["cropped.jpg", "half.jpg", "original.jpg", "q40.jpg", "rotated.jpg"]
    assert names[0] in ("original.jpg", "q40.jpg", "rotated.jpg")  # the keeper has the most pixels
    assert duplicates.members[0].width * duplicates.members[0].height == w * h
    (similar,) = report.of_kind("similar")
    assert {m.path.name for m in similar.members} == set(names) | {"burst.jpg"}


def test_candidates_are_the_codes_within_the_threshold() -> None:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, 160, dtype=np.uint8)
    near = base.copy()
    near[:10] ^= 0xFF  # 80 bits apart
    far = rng.integers(0, 256, 160, dtype=np.uint8)  # about 640 bits from both
    pairs = candidate_pairs(np.stack([base, near, far]))
    assert pairs == [(0, 1, 80)]
    assert candidate_pairs(np.stack([base, near, far]), similar_bits=40) == []
