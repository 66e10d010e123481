"""Small camera RAW files for tests and benches, written here instead of shipping camera files.

`write_dng` makes a real DNG from any picture: the sensor data is a 12-bit RGGB Bayer mosaic of it (what a camera
stores), in a sub-IFD, and the first IFD holds an embedded JPEG preview the way cameras write one, with the camera's
orientation in the RAW's metadata. LibRaw reads it like a camera's file: `extract_thumb` finds the preview and
`postprocess` demosaics the mosaic.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

_CFA_RGGB = (0, 1, 1, 2)


def bayer_mosaic(rgb: np.ndarray) -> np.ndarray:
    """12-bit RGGB mosaic of an 8-bit RGB picture (linear light, black level 64)."""
    linear = (rgb.astype(np.float32) / 255.0) ** 2.2 * 4000.0 + 64.0
    h, w = (rgb.shape[0] // 2) * 2, (rgb.shape[1] // 2) * 2
    cfa = np.empty((h, w), np.uint16)
    cfa[0::2, 0::2] = linear[0:h:2, 0:w:2, 0]
    cfa[0::2, 1::2] = linear[0:h:2, 1:w:2, 1]
    cfa[1::2, 0::2] = linear[1:h:2, 0:w:2, 1]
    cfa[1::2, 1::2] = linear[1:h:2, 1:w:2, 2]
    return cfa


def write_dng(
    path: Path,
    picture: Image.Image,
    orientation: int = 1,
    preview_side: int | None = None,
    preview_orientation: int | None = None,
) -> Path:
    """Write `picture` (as the sensor saw it, before any turn) as a DNG with a JPEG preview whose longer side is
    `preview_side` (None: no preview at all); `preview_orientation` gives the preview an EXIF orientation of its own
    (then the preview is stored already turned the other way, as some cameras do)."""
    import tifffile  # a test dependency only: the tests that write RAW files skip without it

    rgb = np.asarray(picture.convert("RGB"))
    cfa = bayer_mosaic(rgb)
    dng_tags = [
        (50706, "B", 4, (1, 4, 0, 0), True),  # DNGVersion
        (50708, "s", 0, "Retrieval Explorer test camera", True),  # UniqueCameraModel
        (50721, "2i", 9, (1, 1, 0, 1, 0, 1, 0, 1, 1, 1, 0, 1, 0, 1, 0, 1, 1, 1), True),  # ColorMatrix1: identity
        (50728, "2I", 3, (1, 1, 1, 1, 1, 1), True),  # AsShotNeutral
        (274, "H", 1, orientation, True),  # Orientation
    ]
    raw_tags = [
        (33421, "H", 2, (2, 2), True),  # CFARepeatPatternDim
        (33422, "B", 4, _CFA_RGGB, True),  # CFAPattern
        (50714, "H", 1, 64, True),  # BlackLevel
        (50717, "H", 1, 4095, True),  # WhiteLevel
    ]
    with tifffile.TiffWriter(path) as tif:
        if preview_side is None:
            tif.write(cfa, photometric=32803, subfiletype=0, extratags=dng_tags + raw_tags)
        else:
            preview = picture.convert("RGB").copy()
            preview.thumbnail((preview_side, preview_side))
            buffer = io.BytesIO()
            if preview_orientation is None:
                preview.save(buffer, "JPEG", quality=90)
            else:
                exif = Image.Exif()
                exif[274] = preview_orientation
                preview.save(buffer, "JPEG", quality=90, exif=exif.tobytes())
            w, h = preview.size
            # One strip holding a whole JPEG stream (TIFF compression 7), as cameras store their previews.
            tif.write(
                iter([buffer.getvalue()]), shape=(h, w, 3), dtype=np.uint8, photometric="ycbcr",
                compression=7, rowsperstrip=h, subfiletype=1, subifds=1, extratags=dng_tags,
            )  # fmt: skip
            tif.write(cfa, photometric=32803, subfiletype=0, extratags=raw_tags)
    return path
