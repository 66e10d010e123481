"""A corpus of good, odd and broken files, generated in tmp_path, that image loading must survive.

Every broken file must become an `ImageLoadError` whose one-line reason names the problem; every odd but
valid file must come back as the RGB picture a person would see.
"""

from __future__ import annotations

import os
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from imagegen import make_image
from PIL import Image

from trainer import images
from trainer.images import (
    IMAGE_EXTENSIONS,
    SCAN_STAGE,
    ImageLoadError,
    Skipped,
    load_for_model,
    load_rgb,
    preprocess_pil,
    scan_images,
)
from trainer.progress import Cancelled, Progress

RED = (255, 0, 0)
BLUE = (0, 0, 255)
WHITE = (255, 255, 255)


def pixel(img: Image.Image, xy: tuple[int, int] = (0, 0)) -> tuple[int, ...]:
    value = img.getpixel(xy)
    assert isinstance(value, tuple)
    return value


def close(a: tuple[int, ...], b: tuple[int, ...], tol: int = 6) -> bool:
    return all(abs(int(x) - int(y)) <= tol for x, y in zip(a, b, strict=True))


def reason(path: Path, **kwargs: int) -> str:
    with pytest.raises(ImageLoadError) as info:
        load_rgb(path, **kwargs)
    text = str(info.value)
    assert "\n" not in text and text == info.value.reason
    return text


# ----------------------------------------------------------------------------------------- good images


@pytest.mark.parametrize(
    ("name", "fmt"),
    [("a.jpg", "JPEG"), ("a.png", "PNG"), ("a.webp", "WEBP"), ("a.bmp", "BMP"), ("a.tif", "TIFF")],
)
def test_common_formats_load_as_rgb(tmp_path: Path, name: str, fmt: str) -> None:
    src = Image.new("RGB", (40, 30), RED)
    src.paste(BLUE, (20, 0, 40, 30))
    kwargs = {"quality": 95} if fmt in ("JPEG", "WEBP") else {}
    src.save(tmp_path / name, format=fmt, **kwargs)

    img = load_rgb(tmp_path / name)

    assert img.mode == "RGB" and img.size == (40, 30)
    assert close(pixel(img, (5, 15)), RED, tol=12)
    assert close(pixel(img, (35, 15)), BLUE, tol=12)


def test_conftest_generator_images_load(tmp_path: Path) -> None:
    for i, ext in enumerate([".jpg", ".png", ".webp", ".bmp", ".gif", ".tiff"]):
        img = load_rgb(make_image(tmp_path / f"g{i}{ext}", seed=i))
        assert img.mode == "RGB" and img.size == (96, 80)


def test_animated_gif_gives_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (16, 16), RED), Image.new("RGB", (16, 16), BLUE)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=50, loop=0)
    with Image.open(tmp_path / "anim.gif") as check:
        assert getattr(check, "n_frames", 1) == 2

    img = load_rgb(tmp_path / "anim.gif")

    assert img.mode == "RGB" and close(pixel(img, (8, 8)), RED)


def test_cmyk_jpeg(tmp_path: Path) -> None:
    Image.new("CMYK", (32, 32), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg", quality=95)
    with Image.open(tmp_path / "cmyk.jpg") as check:
        assert check.mode == "CMYK"

    img = load_rgb(tmp_path / "cmyk.jpg")

    assert img.mode == "RGB" and close(pixel(img, (16, 16)), RED, tol=10)


def test_grey_and_bilevel(tmp_path: Path) -> None:
    Image.new("L", (8, 8), 128).save(tmp_path / "grey.png")
    bilevel = Image.new("1", (8, 8), 0)
    bilevel.putpixel((7, 7), 1)
    bilevel.save(tmp_path / "bilevel.png")

    assert pixel(load_rgb(tmp_path / "grey.png")) == (128, 128, 128)
    one = load_rgb(tmp_path / "bilevel.png")
    assert pixel(one) == (0, 0, 0) and pixel(one, (7, 7)) == WHITE


def test_transparency_is_composited_onto_white(tmp_path: Path) -> None:
    rgba = Image.new("RGBA", (3, 1))
    rgba.putdata([(255, 0, 0, 255), (0, 0, 255, 0), (0, 0, 0, 128)])
    rgba.save(tmp_path / "rgba.png")
    la = Image.new("LA", (2, 1))
    la.putdata([(100, 255), (0, 0)])
    la.save(tmp_path / "la.png")
    pal = Image.new("P", (2, 1))
    pal.putpalette([0, 0, 0, 255, 0, 0] + [0] * (256 * 3 - 6))
    pal.putdata([0, 1])
    pal.save(tmp_path / "pal.png", transparency=0)
    with Image.open(tmp_path / "pal.png") as check:
        assert check.mode == "P" and "transparency" in check.info

    out = load_rgb(tmp_path / "rgba.png")
    assert out.mode == "RGB"
    assert pixel(out, (0, 0)) == RED
    assert pixel(out, (1, 0)) == WHITE  # fully transparent blue is not blue
    assert close(pixel(out, (2, 0)), (127, 127, 127), tol=2)  # half-transparent black is grey
    la_out = load_rgb(tmp_path / "la.png")
    assert pixel(la_out, (0, 0)) == (100, 100, 100) and pixel(la_out, (1, 0)) == WHITE
    pal_out = load_rgb(tmp_path / "pal.png")
    assert pixel(pal_out, (0, 0)) == WHITE and pixel(pal_out, (1, 0)) == RED


def test_16_bit_grey_is_scaled_not_clipped(tmp_path: Path) -> None:
    ramp = np.tile(np.linspace(0, 65535, 256).round().astype(np.uint16), (4, 1))
    Image.fromarray(ramp).save(tmp_path / "deep.png")
    with Image.open(tmp_path / "deep.png") as check:
        assert check.mode.startswith("I")

    out = np.asarray(load_rgb(tmp_path / "deep.png"))

    row = out[0, :, 0].astype(int)
    assert row[0] == 0 and row[-1] == 255
    assert abs(row[128] - 128) <= 2
    assert (np.diff(row) >= 0).all()
    assert len(np.unique(row)) > 200  # a real ramp, not a few clipped levels
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()


def test_float_and_32_bit_images_are_scaled(tmp_path: Path) -> None:
    floats = np.tile(np.linspace(0.0, 1.0, 64, dtype=np.float32), (2, 1))
    Image.fromarray(floats, mode="F").save(tmp_path / "float.tif")
    ints = np.tile(np.linspace(-1000, 1_000_000, 64).astype(np.int32), (2, 1))
    Image.fromarray(ints, mode="I").save(tmp_path / "int.tif")

    for name in ("float.tif", "int.tif"):
        row = np.asarray(load_rgb(tmp_path / name))[0, :, 0].astype(int)
        assert row[0] == 0 and row[-1] == 255 and (np.diff(row) >= 0).all(), name


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    # Asymmetric: a red block in the top-left corner of a wide picture.
    upright = Image.new("RGB", (64, 48), (40, 160, 40))
    upright.paste(RED, (0, 0, 16, 16))
    # Orientation 6: the stored pixels must be turned 90° clockwise to be upright, so store them turned
    # the other way, as a camera held sideways would.
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(tmp_path / "tagged.jpg", quality=95, subsampling=0, exif=exif.tobytes())
    upright.save(tmp_path / "plain.jpg", quality=95, subsampling=0)

    tagged = load_rgb(tmp_path / "tagged.jpg")
    plain = load_rgb(tmp_path / "plain.jpg")

    assert tagged.size == plain.size == (64, 48)
    diff = np.abs(np.asarray(tagged, dtype=int) - np.asarray(plain, dtype=int))
    assert diff.mean() < 2
    assert close(pixel(tagged, (4, 4)), RED, tol=12)


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")
def test_broken_exif_does_not_lose_the_photo(tmp_path: Path) -> None:
    Image.new("RGB", (16, 16), RED).save(tmp_path / "badexif.jpg", exif=b"Exif\x00\x00II*\x00garbage!!")
    assert close(pixel(load_rgb(tmp_path / "badexif.jpg")), RED, tol=12)


def test_heic(tmp_path: Path) -> None:
    # Issue 13: after the README's install, iPhone photos were skipped as "not an image file type (.heic)".
    assert {".heic", ".heif"} <= IMAGE_EXTENSIONS
    try:
        Image.new("RGB", (64, 64), RED).save(tmp_path / "phone.heic", quality=90)
    except (OSError, KeyError, ValueError) as e:
        pytest.skip(f"no HEIF encoder: {e}")
    img = load_rgb(tmp_path / "phone.heic")
    assert img.mode == "RGB" and img.size == (64, 64) and close(pixel(img, (32, 32)), RED, tol=20)


# ------------------------------------------------------------------------------------------ bad inputs


def test_truncated_jpeg(tmp_path: Path) -> None:
    data = make_image(tmp_path / "full.jpg", seed=3, size=(200, 160)).read_bytes()
    (tmp_path / "half.jpg").write_bytes(data[: len(data) // 2])
    assert reason(tmp_path / "half.jpg") == "truncated JPEG"
    assert reason(tmp_path / "half.jpg", min_side=32) == "truncated JPEG"


def test_truncated_png(tmp_path: Path) -> None:
    data = make_image(tmp_path / "full.png", seed=3, size=(200, 160)).read_bytes()
    (tmp_path / "half.png").write_bytes(data[: len(data) // 2])
    text = reason(tmp_path / "half.png")
    assert "PNG" in text and ("truncated" in text or "corrupt" in text)


def test_corrupt_bytes_named_jpg(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    (tmp_path / "noise.jpg").write_bytes(rng.integers(0, 256, 4000, dtype=np.uint8).tobytes())
    assert reason(tmp_path / "noise.jpg") == "not an image (unrecognised data)"

    # A real JPEG signature followed by garbage: damaged, not mislabelled.
    good = make_image(tmp_path / "good.jpg", seed=1).read_bytes()
    (tmp_path / "damaged.jpg").write_bytes(good[:4] + rng.integers(0, 256, 4000, dtype=np.uint8).tobytes())
    text = reason(tmp_path / "damaged.jpg")
    assert "JPEG" in text and ("corrupt" in text or "truncated" in text)


def test_zero_byte_file(tmp_path: Path) -> None:
    (tmp_path / "empty.jpg").touch()
    assert reason(tmp_path / "empty.jpg") == "zero-byte file"


def test_text_and_html_with_image_names(tmp_path: Path) -> None:
    (tmp_path / "notes.png").write_text("shopping list: eggs, milk — ünïcode\n" * 20, encoding="utf-8")
    (tmp_path / "page.jpg").write_text("<!DOCTYPE html><html><body>404</body></html>")
    assert reason(tmp_path / "notes.png") == "not an image (text file)"
    assert reason(tmp_path / "page.jpg") == "not an image (HTML page)"


def test_vanished_file(tmp_path: Path) -> None:
    assert reason(tmp_path / "gone.jpg") == "no such file (moved or deleted?)"


def test_directory_named_like_an_image(tmp_path: Path) -> None:
    (tmp_path / "x.jpg").mkdir()
    assert reason(tmp_path / "x.jpg") == "is a directory"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this OS")
def test_fifo_does_not_block(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.jpg")
    assert reason(tmp_path / "pipe.jpg") == "not a regular file"


def test_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = make_image(tmp_path / "secret.jpg", seed=2)
    if hasattr(os, "geteuid") and os.geteuid() != 0:  # root reads anything, so chmod proves nothing
        path.chmod(0)
        try:
            assert reason(path) == "permission denied"
        finally:
            path.chmod(0o644)

    # The same path through the code without relying on the file system's permissions.
    def denied(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(images, "open", denied, raising=False)
    assert reason(path) == "permission denied"


def _png_claiming_size(path: Path, width: int, height: int) -> Path:
    """A valid tiny PNG whose IHDR was patched (CRC included) to claim a huge size."""
    data = bytearray(make_image(path, seed=5, size=(8, 8), fmt="PNG").read_bytes())
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))
    return path


def test_decompression_bomb_header(tmp_path: Path) -> None:
    text = reason(_png_claiming_size(tmp_path / "bomb.png", 200_000, 200_000))
    assert text.startswith("too large") and "pixels" in text


def test_too_many_pixels_is_caught_before_decoding(tmp_path: Path) -> None:
    # Just above the limit, where Pillow itself would only warn.
    side = int(images.MAX_IMAGE_PIXELS**0.5) + 10
    with pytest.warns(Image.DecompressionBombWarning):
        text = reason(_png_claiming_size(tmp_path / "big.png", side, side))
    assert text.startswith(f"too large: {side}x{side} pixels")


def test_limits_are_read_at_call_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = make_image(tmp_path / "a.png", seed=1)  # 96x80
    monkeypatch.setattr(images, "MAX_IMAGE_PIXELS", 96 * 80 - 1)
    assert reason(path).startswith("too large: 96x80 pixels")
    monkeypatch.setattr(images, "MAX_IMAGE_PIXELS", 96 * 80)
    assert load_rgb(path).size == (96, 80)
    monkeypatch.setattr(images, "MAX_FILE_BYTES", 10)
    assert reason(path).startswith("too large: file is")


def test_every_failure_is_an_image_load_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Decoder plugins raise odd exception types on crafted files; none may escape."""
    path = make_image(tmp_path / "a.jpg", seed=1)

    def broken_open(*args: object, **kwargs: object) -> None:
        raise KeyError("weird plugin bug")

    monkeypatch.setattr(images.Image, "open", broken_open)
    assert "JPEG" in reason(path)


def test_module_leaves_truncated_loading_off() -> None:
    from PIL import ImageFile

    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    assert Image.MAX_IMAGE_PIXELS == images.MAX_IMAGE_PIXELS


# ------------------------------------------------------------------------------ draft and preprocessing


def test_draft_mode_decodes_large_jpeg_reduced(tmp_path: Path) -> None:
    Image.new("RGB", (2000, 1500), (90, 120, 150)).save(tmp_path / "big.jpg", quality=80)

    small = load_rgb(tmp_path / "big.jpg", min_side=224)
    full = load_rgb(tmp_path / "big.jpg")

    assert 224 <= min(small.size) < 1500
    assert small.size == (500, 375)  # 1/4 scale: 1/8 would give 187 < 224
    assert full.size == (2000, 1500)
    assert load_rgb(tmp_path / "big.jpg", min_side=5000).size == (2000, 1500)


def test_draft_mode_is_rotation_safe(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (2000, 600), (90, 120, 150)).save(tmp_path / "pano.jpg", exif=exif.tobytes())

    img = load_rgb(tmp_path / "pano.jpg", min_side=224)

    w, h = img.size
    assert h > w  # rotated upright
    assert min(w, h) >= 224 and (w, h) == (300, 1000)  # 1/2 scale, since 600/4 < 224


def test_load_for_model_shape_and_dtype(tmp_path: Path) -> None:
    for i, ext in enumerate([".jpg", ".png", ".webp"]):
        path = make_image(tmp_path / f"m{i}{ext}", seed=i, size=(300, 200))
        arr = load_for_model(path, resize=128, crop=112)
        assert arr.shape == (112, 112, 3) and arr.dtype == np.uint8 and arr.flags.writeable
    png = tmp_path / "m1.png"
    assert np.array_equal(load_for_model(png, 128, 112), preprocess_pil(load_rgb(png), 128, 112))
    with pytest.raises(ImageLoadError):
        load_for_model(tmp_path / "missing.jpg", 128, 112)


def test_preprocess_center_crop_is_exact() -> None:
    # Pixel value encodes its column and row, so the crop window can be read back.
    xs, ys = np.meshgrid(np.arange(10), np.arange(6))
    arr = np.stack([xs * 20, ys * 40, np.zeros_like(xs)], axis=-1).astype(np.uint8)

    out = preprocess_pil(Image.fromarray(arr), resize=6, crop=4)  # short side already 6: no resize

    assert out.shape == (4, 4, 3)
    assert out[0, :, 0].tolist() == [60, 80, 100, 120]  # columns 3..6
    assert out[:, 0, 1].tolist() == [40, 80, 120, 160]  # rows 1..4


def test_preprocess_resizes_shorter_side_like_torchvision() -> None:
    portrait = Image.new("RGB", (300, 451), RED)
    out = preprocess_pil(portrait, resize=100, crop=100)
    assert out.shape == (100, 100, 3) and (out == np.array(RED, np.uint8)).all()
    assert images._resized_size(300, 451, 100) == (100, 150)  # int(), not round(), of 150.33
    rgba = Image.new("RGBA", (50, 50), (0, 0, 0, 0))
    assert (preprocess_pil(rgba, 32, 32) == 255).all()  # pasted transparent image -> white
    with pytest.raises(ValueError):
        preprocess_pil(portrait, resize=100, crop=101)


def test_threaded_loading_matches_sequential(tmp_path: Path) -> None:
    paths = [make_image(tmp_path / f"t{i}.jpg", seed=i, size=(320, 240)) for i in range(16)]
    expected = [load_for_model(p, 64, 56) for p in paths]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda p: load_for_model(p, 64, 56), paths))
    assert all(np.array_equal(a, b) for a, b in zip(expected, got, strict=True))


# ------------------------------------------------------------------------------------------- scanning


def test_extensions() -> None:
    base = {".jpg", ".jpeg", ".jpe", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
    assert base <= IMAGE_EXTENSIONS
    assert all(e.startswith(".") and e == e.lower() for e in IMAGE_EXTENSIONS)


def test_scan_images(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    wanted = [
        root / "a.jpg",
        root / "b" / "c.PNG",
        root / "b" / "d" / "e.JPG",
        root / "b" / "d" / "f.webp",
        root / "z.jpeg",
    ]
    for i, p in enumerate(wanted):
        make_image(p, seed=i, fmt="PNG" if p.suffix.lower() == ".png" else "JPEG")
    debris = [
        root / ".hidden.jpg",
        root / ".DS_Store",
        root / "._a.jpg",
        root / "Thumbs.db",
        root / "desktop.ini",
        root / "b" / "@eaDir" / "c.PNG" / "SYNOPHOTO_THUMB_M.jpg",
        root / "__MACOSX" / "b" / "._c.png",
        root / ".git" / "x.jpg",
    ]
    for p in debris:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"junk")
    (root / "notes.txt").write_text("hello")
    (root / "b" / "README").write_text("hello")

    found, skipped = scan_images(root)

    assert found == sorted(wanted)
    assert skipped == [
        Skipped(root / "b" / "README", "not an image file type (no extension)"),
        Skipped(root / "notes.txt", "not an image file type (.txt)"),
    ]
    assert scan_images(root) == (found, skipped)  # deterministic


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="no symlinks")
def test_scan_survives_symlink_cycles(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    make_image(root / "top.jpg", seed=1)
    make_image(root / "dir" / "inner.jpg", seed=2)
    (root / "dir" / "link").symlink_to("..", target_is_directory=True)  # cycle back to root
    (root / "dir" / "self").symlink_to(".", target_is_directory=True)
    outside = tmp_path / "elsewhere"
    make_image(outside / "far.png", seed=3)
    (root / "a_album").symlink_to(outside, target_is_directory=True)
    (root / "alias.jpg").symlink_to(root / "top.jpg")
    (root / "dangling.jpg").symlink_to(tmp_path / "nothing.jpg")

    found, skipped = scan_images(root, follow_outside=True)

    assert found == [root / "a_album" / "far.png", root / "dir" / "inner.jpg", root / "top.jpg"]
    assert skipped == [Skipped(root / "dangling.jpg", "broken symlink")]


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="no symlinks")
def test_scan_follows_links_only_inside_the_chosen_folder_unless_asked(tmp_path: Path) -> None:
    """A symlink to `/` inside the photo folder once had indexing crawl the whole disk."""
    root = tmp_path / "photos"
    make_image(root / "top.jpg", seed=1)
    make_image(root / "dir" / "inner.jpg", seed=2)
    (root / "everything").symlink_to("/", target_is_directory=True)
    (root / "far.jpg").symlink_to(make_image(tmp_path / "elsewhere" / "far.jpg", seed=3))
    (root / "inside").symlink_to(root / "dir", target_is_directory=True)  # inside: followed (found once)
    found, skipped = scan_images(root)
    assert found == [root / "dir" / "inner.jpg", root / "far.jpg", root / "top.jpg"]  # a linked file is chosen
    assert skipped == [Skipped(root / "everything", "a link to a folder outside the chosen one (not followed)")]


def test_scan_reports_what_it_found_and_can_be_cancelled(tmp_path: Path) -> None:
    for i in range(3):
        make_image(tmp_path / f"album{i}" / f"p{i}.jpg", seed=i)
    seen: list[Progress] = []
    found, _ = scan_images(tmp_path, progress=seen.append, report_every=1)
    assert len(found) == 3
    assert {p.stage for p in seen} == {SCAN_STAGE} and {p.total for p in seen} == {0}
    assert [p.done for p in seen] == sorted(p.done for p in seen) and seen[-1].done == 3
    assert len(seen) == 4  # before each folder after the first (3 reports), then the final count
    seen.clear()
    scan_images(tmp_path, progress=seen.append)
    assert [p.done for p in seen] == [3]  # fewer folders than report_every: the final count only

    checks: list[int] = []

    def cancel_at_third_folder() -> bool:
        checks.append(1)
        return len(checks) == 3

    with pytest.raises(Cancelled, match="cancelled after"):
        scan_images(tmp_path, cancel=cancel_at_third_folder)
    assert len(checks) == 3  # checked once per folder and stopped there, not at the end


def test_scan_bad_root(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        scan_images(tmp_path / "missing")
    make_image(tmp_path / "file.jpg", seed=1)
    with pytest.raises(NotADirectoryError, match="not a folder"):
        scan_images(tmp_path / "file.jpg")
    assert scan_images(tmp_path) == ([tmp_path / "file.jpg"], [])


def test_a_jpeg_whose_header_claims_more_pixels_than_its_data_holds_is_refused(tmp_path: Path) -> None:
    # The attack: a small photo's JPEG with 10000 x 10000 written into its header decoded without a word into a
    # flat grey picture, and was indexed as one.
    buffer = tmp_path / "photo.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 300, 3), dtype=np.uint8)).save(buffer)
    data = bytearray(buffer.read_bytes())
    sof = data.find(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", 10_000, 10_000)
    lying = tmp_path / "lying.jpg"
    lying.write_bytes(bytes(data))
    for min_side in (256, None):
        with pytest.raises(ImageLoadError, match="header says 10000x10000 pixels but the data ends long before"):
            load_rgb(lying, min_side=min_side)
    assert load_rgb(buffer, min_side=256).size == (300, 200)  # the honest file still loads


def test_a_scan_lists_at_most_its_ceiling_and_says_where_it_stopped(tmp_path: Path) -> None:
    for folder in ("a", "b", "c"):
        for i in range(4):
            make_image(tmp_path / folder / f"{i}.png", seed=i)
    found, skipped = scan_images(tmp_path, max_entries=6)  # the root (3) and one folder (4) are listed, then stop
    assert len(found) == 4
    assert [s.path for s in skipped] == [tmp_path]
    assert skipped[0].reason.startswith("listing stopped after 7 files and folders, the most one run lists")
    assert len(scan_images(tmp_path)[0]) == 12
