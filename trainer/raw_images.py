"""Camera RAW files (CR2/CR3, NEF, ARW, DNG, RAF, ORF, RW2 and kin) through LibRaw (`rawpy`).

A RAW file is a sensor dump, not a picture: turning it into one (demosaicing, white balance, colour matrices) takes
a second or more of one core for 24 Mpx. But nearly every camera also stores the picture it showed on its screen:
a JPEG preview, often full size, sometimes 1,600 pixels wide. Indexing needs a 256-pixel side and a thumbnail a
few hundred, so the preview is used whenever its shorter side is at least what the caller asked for
(`min_side`; without one, half the sensor's shorter side, what a half-size demosaic would give); otherwise
LibRaw demosaics at half size (each 2 x 2 Bayer block becomes one pixel, four times less work, and still 6 Mpx
for a 24 Mpx sensor).

Orientation: LibRaw reads it from the RAW's own metadata (`sizes.flip`) and applies it when it demosaics; the
embedded preview is stored as the sensor saw it, so it is turned here with the same flip, unless the preview
carries its own EXIF orientation (then the JPEG decoder applies that one, and only that one).

This module turns a RAW file into either JPEG bytes plus the turn still owed, or a decoded picture; trainer.images
decodes the JPEG with its own hardened decoder and reports every failure the same way as for other files.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image

from trainer.decode_memory import DECODE_BUDGET

try:
    import rawpy

    RAW_SUPPORTED = True
except ImportError:  # pragma: no cover - depends on the environment
    RAW_SUPPORTED = False

__all__ = ["RAW_EXTENSIONS", "RAW_SUPPORTED", "RawDecodeError", "RawPicture", "open_raw"]

# The RAW formats of the cameras people own (LibRaw reads many more; these are the ones worth scanning for).
_RAW_SUFFIXES = {
    ".dng",  # Adobe, Leica, Pentax, Ricoh, phones' "ProRAW"
    ".cr2", ".cr3", ".crw",  # Canon
    ".nef", ".nrw",  # Nikon
    ".arw", ".srf", ".sr2",  # Sony
    ".raf",  # Fujifilm
    ".orf",  # Olympus / OM System
    ".rw2",  # Panasonic
    ".pef",  # Pentax
    ".srw",  # Samsung
}  # fmt: skip
RAW_EXTENSIONS: frozenset[str] = frozenset(_RAW_SUFFIXES if RAW_SUPPORTED else ())

# LibRaw's `flip` (dcraw's) as the turn that shows the picture upright: 3 = half a turn, 5 = a quarter turn
# counter-clockwise, 6 = a quarter turn clockwise (EXIF orientations 3, 8 and 6).
_FLIP_TRANSPOSE: dict[int, Image.Transpose] = {
    3: Image.Transpose.ROTATE_180,
    5: Image.Transpose.ROTATE_90,
    6: Image.Transpose.ROTATE_270,
}
_EXIF_ORIENTATION = ExifTags.Base.Orientation


class RawDecodeError(Exception):
    """A RAW file LibRaw cannot read; `str(err)` is a short reason for the skipped-files list."""


@dataclass(frozen=True)
class RawPicture:
    """What a RAW file gave: its embedded JPEG preview (bytes, with the turn still owed) or a demosaiced picture."""

    jpeg: bytes | None
    image: Image.Image | None
    transpose: Image.Transpose | None  # to apply after decoding `jpeg` (None: upright already, or `image` given)
    source: str  # "preview" or "demosaic": which path was taken (the throughput bench reports both)


def _preview_orientation(jpeg: bytes) -> int:
    """The preview's own EXIF orientation (1 when it has none or it is unreadable)."""
    try:
        with Image.open(io.BytesIO(jpeg)) as im:
            return int(im.getexif().get(_EXIF_ORIENTATION, 1) or 1)
    except Exception:
        return 1


def _preview_short_side(jpeg: bytes) -> int:
    with Image.open(io.BytesIO(jpeg)) as im:
        return min(im.size)


def open_raw(path: Path, min_side: int | None) -> RawPicture:
    """Read a RAW file: its embedded preview when that is large enough, else a half-size demosaic.

    `min_side` is the shorter side the caller will shrink the picture to (None: it wants the whole picture).
    Raises RawDecodeError with a one-line reason.
    """
    if not RAW_SUPPORTED:
        raise RawDecodeError("RAW files need the rawpy package (pip install rawpy)")
    try:
        with rawpy.imread(str(path)) as raw:
            sizes = raw.sizes
            sensor_short = min(sizes.width, sizes.height)
            needed = min_side if min_side is not None else max(1, sensor_short // 2)
            flip = _FLIP_TRANSPOSE.get(int(sizes.flip))
            try:
                thumb = raw.extract_thumb()
            except (rawpy.LibRawNoThumbnailError, rawpy.LibRawUnsupportedThumbnailError):
                thumb = None
            if thumb is not None and thumb.format == rawpy.ThumbFormat.JPEG and isinstance(thumb.data, bytes):
                try:
                    large_enough = _preview_short_side(thumb.data) >= needed
                except Exception:  # a damaged preview: the sensor data may still be fine
                    large_enough = False
                if large_enough:
                    own = _preview_orientation(thumb.data)
                    return RawPicture(thumb.data, None, flip if own == 1 else None, "preview")
            elif thumb is not None and thumb.format == rawpy.ThumbFormat.BITMAP:
                bitmap = np.asarray(thumb.data)
                if bitmap.ndim == 3 and bitmap.shape[2] == 3 and min(bitmap.shape[:2]) >= needed:
                    image = Image.fromarray(bitmap.astype(np.uint8), "RGB")
                    return RawPicture(None, image if flip is None else image.transpose(flip), None, "preview")
            # half_size: one pixel per 2 x 2 Bayer block; LibRaw turns the result upright itself. It works on four
            # 16-bit channels a pixel and hands back 8-bit RGB: reserve both from the process-wide decode budget.
            needed_bytes = (sizes.width // 2) * (sizes.height // 2) * (4 * 2 + 3)
            if not DECODE_BUDGET.fits(needed_bytes):
                raise RawDecodeError(
                    f"RAW file too large to decode: a {sizes.width}x{sizes.height} sensor needs about "
                    f"{needed_bytes >> 20:,} MB, more than the {DECODE_BUDGET.total >> 20:,} MB allowed at a time "
                    "(RETRIEVAL_EXPLORER_DECODE_MB)"
                )
            with DECODE_BUDGET.reserve(needed_bytes):
                rgb = raw.postprocess(half_size=True, use_camera_wb=True, output_bps=8)
            return RawPicture(None, Image.fromarray(np.ascontiguousarray(rgb), "RGB"), None, "demosaic")
    except RawDecodeError:
        raise
    except rawpy.LibRawFileUnsupportedError as e:
        raise RawDecodeError(f"not a RAW file LibRaw can read ({path.suffix.lower()}): {e}") from e
    except rawpy.LibRawTooBigError as e:
        raise RawDecodeError(f"RAW file too large for LibRaw: {e}") from e
    except rawpy.LibRawError as e:
        raise RawDecodeError(f"damaged or unsupported RAW file: {e}") from e
    except MemoryError as e:
        raise RawDecodeError("out of memory decoding RAW file") from e
