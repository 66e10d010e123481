"""How much memory decoding a picture may take, and high-bit-depth pictures turned into 8 bits within it.

A 0.9 MB float32 TIFF just under the pixel limit once took 4.4 GB to decode (its pixels as float64 numpy copies, five
of them), and the indexing threads decoded two at once (8.9 GB). Two things keep that bounded:

* `DECODE_BUDGET`, one process-wide budget for the pictures being decoded at this moment: each decode first
  reserves what its mode and size will take (`decode_bytes`), waits while the others hold too much, and is refused
  with its reason when it alone needs more than the whole budget. Threads then share memory instead of multiplying it.
* `scale_high_bit_depth` works through the picture in bands of about four million pixels, and shrinks it by an
  integer factor first when the caller only needs a small picture (indexing needs a 256-pixel side), so a 16- or
  32-bit picture costs little more than Pillow's own copy of it.

The budget is 768 MB (`RETRIEVAL_EXPLORER_DECODE_MB` changes it): the largest picture the pixel limit admits,
120 Mpx at 4 bytes a pixel, fits once, and an indexing run with its model stays under 1.5 GB.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import numpy.typing as npt
from PIL import Image

_MB = 1024 * 1024
BAND_PIXELS = 4_000_000

# What Pillow keeps a pixel in, by mode: every multi-band mode is stored 4 bytes a pixel (RGB too).
_STORED_BYTES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2}


def _budget_from_environment() -> int:
    value = os.environ.get("RETRIEVAL_EXPLORER_DECODE_MB", "")
    return int(value) * _MB if value.isdigit() and int(value) > 0 else 768 * _MB


def decode_bytes(mode: str, size: tuple[int, int], converts: bool) -> int:
    """Bytes a decode of this mode and size holds at its peak: Pillow's pixels, plus an 8-bit RGB copy of the
    same size when the mode must be converted (`converts`) at full size.

    >>> decode_bytes("RGB", (4000, 3000), converts=False) // 1_000_000  # a 12 Mpx photo: 48 MB
    48
    >>> decode_bytes("RGBA", (4000, 3000), converts=True) // 1_000_000  # with its RGB copy
    96
    """
    pixels = size[0] * size[1]
    return pixels * _STORED_BYTES.get(mode, 4) + (pixels * 4 if converts else 0)


class DecodeBudget:
    """Bytes that the decodes running at this moment may hold together; `reserve` waits for its share."""

    def __init__(self, total_bytes: int) -> None:
        self.total = total_bytes
        self.held = 0
        self._free = threading.Condition()

    def fits(self, nbytes: int) -> bool:
        return nbytes <= self.total

    @contextmanager
    def reserve(self, nbytes: int) -> Iterator[None]:
        """Hold `nbytes` for the duration of the block (callers check `fits` first: one that never fits would
        otherwise wait for ever; it is let through alone instead)."""
        nbytes = min(nbytes, self.total)
        with self._free:
            self._free.wait_for(lambda: self.held == 0 or self.held + nbytes <= self.total)
            self.held += nbytes
        try:
            yield
        finally:
            with self._free:
                self.held -= nbytes
                self._free.notify_all()


DECODE_BUDGET = DecodeBudget(_budget_from_environment())


def reduce_factor(size: tuple[int, int], min_side: int | None) -> int:
    """The integer factor a picture can shrink by and keep its shorter side at least `min_side` (1: keep it).

    >>> reduce_factor((12000, 10000), 256), reduce_factor((300, 200), 256), reduce_factor((300, 200), None)
    (39, 1, 1)
    """
    if min_side is None or min_side <= 0:
        return 1
    return max(1, min(size) // min_side)


def _bands(im: Image.Image, factor: int) -> Iterator[npt.NDArray[np.float32]]:
    """The picture as float32 row bands, each already shrunk by `factor` (block means; non-finite values become
    NaN and stay out of the means of their blocks' finite values)."""
    w, h = im.size
    out_w, out_h = w // factor, h // factor
    rows = factor * max(1, BAND_PIXELS // max(1, w * factor))
    for top in range(0, out_h * factor, rows):
        bottom = min(top + rows, out_h * factor)
        a = np.asarray(im.crop((0, top, out_w * factor, bottom)), dtype=np.float32)
        if factor > 1:
            blocks = a.reshape((bottom - top) // factor, factor, out_w, factor)
            finite = np.isfinite(blocks)
            counts = finite.sum(axis=(1, 3))
            sums = np.where(finite, blocks, 0.0).sum(axis=(1, 3), dtype=np.float64)
            with np.errstate(invalid="ignore", divide="ignore"):
                a = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan).astype(np.float32)
        yield a


def scale_high_bit_depth(im: Image.Image, min_side: int | None = None) -> Image.Image:
    """A 16-bit, 32-bit integer or float picture as 8-bit grey, scaled, never clipped, in bands.

    Pillow's own `convert("L")` clips: a 16-bit scan becomes almost entirely white. The value range is inferred from
    the mode and the data: `I;16*` is 0..65535; `I` usually holds 16-bit data (PNG and TIFF decoders widen into it)
    unless its values fit in a byte; floats are taken as 0..1 when they fit, and anything else is stretched from
    min to max. With `min_side`, the picture first shrinks by the largest integer factor that keeps its shorter side
    at least that long.

    >>> a = np.array([[0, 1000], [30000, 65535]], dtype=np.uint16)
    >>> np.asarray(scale_high_bit_depth(Image.fromarray(a))).tolist()
    [[0, 3], [117, 255]]
    """
    factor = reduce_factor(im.size, min_side)
    reduced = [band for band in _bands(im, factor)] if factor > 1 else None
    lo, hi = np.inf, -np.inf
    for band in reduced if reduced is not None else _bands(im, 1):
        finite = band[np.isfinite(band)]
        if finite.size:
            lo, hi = min(lo, float(finite.min())), max(hi, float(finite.max()))
    out_w, out_h = im.size[0] // factor, im.size[1] // factor
    if lo > hi:  # nothing finite
        return Image.new("L", (out_w, out_h), 0)
    if im.mode.startswith("I;16"):
        offset, scale = 0.0, 1 / 256
    elif im.mode == "F" and lo >= 0.0 and hi <= 1.0:
        offset, scale = 0.0, 255.0
    elif lo >= 0.0 and hi <= 255.0:
        offset, scale = 0.0, 1.0
    elif im.mode != "F" and lo >= 0.0 and hi <= 65535.0:
        offset, scale = 0.0, 1 / 257
    else:
        offset, scale = lo, (255.0 / (hi - lo)) if hi > lo else 0.0
    out = np.empty((out_h, out_w), dtype=np.uint8)
    top = 0
    for band in reduced if reduced is not None else _bands(im, 1):
        scaled = (band - offset) * scale
        if im.mode.startswith("I;16"):
            scaled = np.floor(scaled)
        scaled = np.where(np.isfinite(scaled), scaled, 0.0)
        out[top : top + band.shape[0]] = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
        top += band.shape[0]
    return Image.fromarray(out, "L")
