"""Image loading that a real photo collection cannot break.

A personal photo folder holds everything: half-copied JPEGs, HTML pages saved as `.jpg`, 16-bit scans,
CMYK exports, palette GIFs with transparency, phone pictures that rely on EXIF orientation, NAS thumbnail
folders, macOS resource forks and the odd decompression bomb. Indexing must survive all of it, so every
way a file can fail is turned into one `ImageLoadError` whose message is a short human reason that the
app can show next to the file name, and the folder scan silently drops OS debris while reporting the files
it deliberately ignores.

Loading is on the hot path of indexing thousands of photos from a thread pool. Pillow releases the GIL
while decoding and resizing, nothing here mutates shared state after import, and JPEGs are decoded at a
reduced scale (libjpeg's DCT scaling via `Image.draft`) when the caller only needs a small picture.

This lives in `trainer` because both the trainer and the explorer app need it; it must never import
`explorer`.
"""

from __future__ import annotations

import io
import os
import re
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
import numpy.typing as npt
from PIL import ExifTags, Image, UnidentifiedImageError, features

from trainer.decode_memory import DECODE_BUDGET, decode_bytes, scale_high_bit_depth
from trainer.progress import CancelCheck, Cancelled, Progress, ProgressCallback, never_cancelled
from trainer.raw_images import RAW_EXTENSIONS, RawDecodeError, open_raw

try:  # HEIC/HEIF is what iPhones write; support it whenever the optional plugin is installed.
    import pillow_heif

    pillow_heif.register_heif_opener()
    _HEIF = True
except ImportError:  # pragma: no cover - depends on the environment
    _HEIF = False

__all__ = [
    "IMAGE_EXTENSIONS",
    "LISTING_STOPPED",
    "MAX_FILE_BYTES",
    "MAX_IMAGE_PIXELS",
    "MAX_SCAN_ENTRIES",
    "ImageLoadError",
    "Skipped",
    "load_for_model",
    "load_rgb",
    "preprocess_pil",
    "scan_images",
]

_BASE_EXTENSIONS = {".jpg", ".jpeg", ".jpe", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
_HEIF_EXTENSIONS = {".heic", ".heif", ".hif"}
_AVIF = bool(features.check("avif"))

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    _BASE_EXTENSIONS | (_HEIF_EXTENSIONS if _HEIF else set()) | ({".avif"} if _AVIF else set()) | RAW_EXTENSIONS
)

# 120 Mpx is above any consumer camera or phone panorama (a 100 Mpx medium-format frame still fits) but
# far below what it takes to exhaust memory: a 120 Mpx RGB image is 360 MB decoded.
MAX_IMAGE_PIXELS: int = 120_000_000
# Files bigger than this are not photos we can index usefully (multi-GB TIFF scans, mislabelled videos);
# skipping them by size avoids reading them at all.
MAX_FILE_BYTES: int = 300 * 1024 * 1024
# What one scan may list (files and folders): 20 times a 100,000-photo library with its side files, and a bound on
# what a link to `/` (followed on request) or a runaway tree costs before the user hears of it.
MAX_SCAN_ENTRIES: int = 2_000_000
LISTING_STOPPED = "listing stopped after"

# Pillow's own guard protects every other `Image.open` in the process too (thumbnails, pasted images).
# It warns above the limit and raises above twice the limit; `load_rgb` checks the size itself right after
# opening, so for our loads anything above the limit is an error and the warning is only a fallback.
Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS

# Only formats that a photo collection plausibly contains are identified. Besides giving a clean "not an
# image" for the rest, this keeps renamed exotic files away from plugins that do risky things on load
# (EPS runs Ghostscript). MPO is the multi-picture JPEG that many cameras write.
# `Image.open(formats=...)` looks each name up directly, so every plugin must be registered first.
Image.init()
_FORMATS: tuple[str, ...] = tuple(
    f for f in ("JPEG", "MPO", "PNG", "WEBP", "BMP", "DIB", "GIF", "TIFF", "HEIF", "AVIF") if f in Image.OPEN
)
_JPEG_FORMATS = frozenset({"JPEG", "MPO"})

# Debris that operating systems and NAS boxes sprinkle into photo folders. Never worth reporting: the
# user did not put these files there. Compared case-insensitively (Windows names vary in case).
_DEBRIS_NAMES = frozenset(
    {
        "thumbs.db",
        "ehthumbs.db",
        "ehthumbs_vista.db",
        "desktop.ini",
        "@eadir",  # Synology thumbnails
        "#recycle",  # Synology recycle bin
        "@recycle",  # QNAP recycle bin
        "@recently-snapshot",  # QNAP snapshots
        "#snapshot",
        "__macosx",  # resource forks inside zip archives made on macOS
        "$recycle.bin",
        "system volume information",
        "lost+found",
    }
)

_EXIF_ORIENTATION = ExifTags.Base.Orientation
_ORIENTATION_TRANSPOSE: dict[int, Image.Transpose] = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_WHITE = (255, 255, 255)
_MB = 1024 * 1024
_MAX_REASON = 160


class ImageLoadError(Exception):
    """A file that could not be turned into a picture; `str(err)` is a one-line reason for humans.

    One exception type for every failure lets callers (an indexing thread pool) catch exactly this and
    record the reason, while real bugs in our own code still surface as other exceptions.
    """

    def __init__(self, reason: str) -> None:
        reason = _one_line(reason)
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Skipped:
    """A file the scan deliberately left out, kept so the app can tell the user why it is missing."""

    path: Path
    reason: str


# --------------------------------------------------------------------------------------------- scanning


def _is_ignored_silently(name: str) -> bool:
    """Hidden entries and OS/NAS debris: the user never put them there, so never report them.

    A leading dot also covers macOS `.DS_Store`, AppleDouble `._photo.jpg` files, `.Trashes` and QNAP's
    `.@__thumb` folders.
    """
    return name.startswith(".") or name.lower() in _DEBRIS_NAMES


def _identity(path: str, st: os.stat_result) -> tuple[int, int] | str:
    """A key that is equal for two paths exactly when they reach the same file or folder.

    (device, inode) survives symlinks, bind mounts and Windows junctions. Some network and FUSE file
    systems report inode 0 for everything; treating those as one folder would hide the whole tree, so they
    fall back to the resolved real path.
    """
    if st.st_ino:
        return (st.st_dev, st.st_ino)
    return os.path.realpath(path)


def _scandir_sorted(path: str) -> list[os.DirEntry[str]]:
    with os.scandir(path) as it:
        return sorted(it, key=lambda e: e.name)


SCAN_STAGE = "scanning"  # Progress.stage of scan reports: `done` = candidate images found so far, total unknown (0)


def scan_images(
    root: Path,
    progress: ProgressCallback | None = None,
    cancel: CancelCheck = never_cancelled,
    report_every: int = 64,
    follow_outside: bool = False,
    max_entries: int | None = None,
) -> tuple[list[Path], list[Skipped]]:
    """Find every candidate image under `root`, and the files deliberately ignored with a reason.

    Candidates are chosen by extension only (case-insensitive): opening thousands of files here would make
    the scan as slow as indexing, and `load_rgb` reports broken files precisely later anyway. Symlinks are
    to folders are followed while they stay inside `root` (with `follow_outside`, anywhere: people organise albums
    with links to other places, and must ask for it), links to files always, and every folder is entered at most once
    (keyed by device and inode), so a link back to an ancestor cannot loop forever. Real folders are walked
    before symlinked ones, so a photo reachable both ways is listed under its real location; a file reached
    through several links or hard links is listed once. Both lists come back sorted, so repeated scans of an
    unchanged folder give identical results.

    A scan of a network share or a whole photo library can take minutes before the first image is embedded,
    so it reports the images found so far (stage `SCAN_STAGE`, total 0 = unknown) after every `report_every`
    folders and once at the end, and `cancel` is checked once per folder (raising `Cancelled`).

    One scan lists at most `max_entries` files and folders (`MAX_SCAN_ENTRIES`, far above any photo library): past
    it, listing stops with a `Skipped` record for `root` whose reason starts with `LISTING_STOPPED`, so that whoever
    reads the result knows it is incomplete (the explorer then removes nothing it did not see).
    """
    limit = MAX_SCAN_ENTRIES if max_entries is None else max_entries
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"folder does not exist: {root}")
    if not root.is_dir():
        raise NotADirectoryError(f"not a folder: {root}")
    try:
        root_stat = os.stat(root)
        with os.scandir(root):
            pass
    except PermissionError as e:
        raise PermissionError(f"cannot read folder (permission denied): {root}") from e

    # A link to a folder is followed only when it stays inside the chosen folder (unless `follow_outside`): a link
    # to `/` in a photo folder once had indexing crawl the whole disk, other users' files included. A link to one
    # file is one file someone chose to put there, and is followed.
    inside = os.path.realpath(root)

    def outside(path: str) -> bool:
        real = os.path.realpath(path)
        return not follow_outside and real != inside and not real.startswith(inside.rstrip(os.sep) + os.sep)

    visited_dirs: set[tuple[int, int] | str] = {_identity(str(root), root_stat)}
    real_dirs: list[str] = [str(root)]
    linked_dirs: list[str] = []
    # identity -> (path, reached through a symlink?): a real path wins over a link to the same file.
    files: dict[tuple[int, int] | str, tuple[str, bool]] = {}
    skipped: list[Skipped] = []

    started = time.perf_counter()
    folders_listed = 0

    def report() -> None:
        if progress is not None:
            progress(Progress(len(files), 0, len(files) / max(time.perf_counter() - started, 1e-9), SCAN_STAGE))

    listed = 0
    while real_dirs or linked_dirs:
        if listed >= limit:
            why = "the most one run lists: choose a smaller folder, or check for links that lead somewhere huge"
            skipped.append(Skipped(root, f"{LISTING_STOPPED} {listed:,} files and folders, {why}"))
            break
        if cancel():
            raise Cancelled(f"scan of {root} cancelled after {len(files):,} images")
        if folders_listed and folders_listed % report_every == 0:
            report()
        folders_listed += 1
        current = real_dirs.pop() if real_dirs else linked_dirs.pop()
        try:
            entries = _scandir_sorted(current)
        except OSError as e:
            skipped.append(Skipped(Path(current), f"cannot read folder: {_os_reason(e)}"))
            continue
        listed += len(entries)
        for entry in entries:
            if _is_ignored_silently(entry.name):
                continue
            try:
                is_link = entry.is_symlink()
                is_dir = entry.is_dir()  # follows symlinks
                is_file = not is_dir and entry.is_file()
            except OSError as e:
                skipped.append(Skipped(Path(entry.path), _os_reason(e)))
                continue
            if is_link and is_dir and outside(entry.path):
                skipped.append(Skipped(Path(entry.path), "a link to a folder outside the chosen one (not followed)"))
                continue
            if is_dir:
                try:
                    key = _identity(entry.path, os.stat(entry.path))
                except OSError as e:
                    skipped.append(Skipped(Path(entry.path), f"cannot read folder: {_os_reason(e)}"))
                    continue
                if key not in visited_dirs:
                    visited_dirs.add(key)
                    (linked_dirs if is_link else real_dirs).append(entry.path)
                continue
            ext = os.path.splitext(entry.name)[1].lower()
            if ext not in IMAGE_EXTENSIONS:
                if is_file or not is_link:
                    what = f"({ext})" if ext else "(no extension)"
                    skipped.append(Skipped(Path(entry.path), f"not an image file type {what}"))
                else:
                    skipped.append(Skipped(Path(entry.path), "broken symlink"))
                continue
            if not is_file:
                reason = "broken symlink" if is_link else "not a regular file"
                skipped.append(Skipped(Path(entry.path), reason))
                continue
            try:
                # DirEntry.stat() reports no inode on Windows; os.stat always does.
                st = entry.stat() if os.name != "nt" else os.stat(entry.path)
            except OSError as e:
                skipped.append(Skipped(Path(entry.path), _os_reason(e)))
                continue
            key = _identity(entry.path, st)
            previous = files.get(key)
            if (
                previous is None
                or (previous[1] and not is_link)
                or (previous[1] == is_link and entry.path < previous[0])
            ):
                files[key] = (entry.path, is_link)

    report()
    images = sorted(Path(p) for p, _ in files.values())
    skipped.sort(key=lambda s: s.path)
    return images, skipped


# ---------------------------------------------------------------------------------------------- loading


def _one_line(text: str) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= _MAX_REASON else line[: _MAX_REASON - 1] + "…"


def _os_reason(e: OSError) -> str:
    """A short reason for an OS-level failure, without the path (the caller shows the path already)."""
    if isinstance(e, FileNotFoundError):
        return "no such file (moved or deleted?)"
    if isinstance(e, PermissionError):
        return "permission denied"
    if isinstance(e, IsADirectoryError):
        return "is a directory"
    return e.strerror or type(e).__name__


def _format_name(path: Path, im: Image.Image | None) -> str:
    """The format for messages: what Pillow identified, else what the extension claims."""
    if im is not None and im.format:
        return "JPEG" if im.format == "MPO" else im.format
    ext = path.suffix.lower().lstrip(".")
    return {"jpg": "JPEG", "jpe": "JPEG", "tif": "TIFF", "heic": "HEIF", "hif": "HEIF"}.get(ext, ext.upper())


_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"RIFF", "WEBP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)


def _sniff_non_image(head: bytes) -> str:
    """Name what a file is when no image decoder recognised it: the usual culprits are saved web pages
    and text files given a picture's name."""
    for magic, fmt in _MAGIC:
        if head.startswith(magic) and (fmt != "WEBP" or head[8:12] == b"WEBP"):
            # The signature is right but the decoder rejected the header: damaged, not mislabelled.
            return f"corrupt {fmt} (unreadable header)"
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith((b"<!doctype html", b"<html", b"<head", b"<body")):
        return "not an image (HTML page)"
    if text.startswith(b"<?xml") or text.startswith(b"<svg"):
        return "not an image (SVG/XML document)" if b"<svg" in text else "not an image (XML document)"
    if head.startswith((b"PK\x03\x04", b"Rar!", b"\x1f\x8b", b"7z\xbc\xaf")):
        return "not an image (archive)"
    if head.startswith(b"%PDF"):
        return "not an image (PDF document)"
    if head[4:8] == b"ftyp":
        return "not a supported image (video or unsupported HEIF/AVIF container)"
    if head and b"\x00" not in head:
        try:
            head.decode("utf-8")
            return "not an image (text file)"
        except UnicodeDecodeError as e:
            # A multi-byte character cut off at the end of the sample is still text.
            if e.start >= len(head) - 3:
                return "not an image (text file)"
    return "not an image (unrecognised data)"


def _decode_reason(e: BaseException, fmt: str) -> str:
    msg = _one_line(str(e)) or type(e).__name__
    if "truncated" in msg.lower() or isinstance(e, EOFError):
        return f"truncated {fmt}" if fmt else "truncated image"
    return f"corrupt {fmt}: {msg}" if fmt else f"corrupt image: {msg}"


def _bomb_reason(e: BaseException) -> str:
    m = re.search(r"\((\d+) pixels\)", str(e))
    if m:
        return f"too large: {int(m.group(1)):,} pixels (limit {MAX_IMAGE_PIXELS:,})"
    return f"too large (decompression-bomb guard, limit {MAX_IMAGE_PIXELS:,} pixels)"


def _on_white(im: Image.Image) -> Image.Image:
    """Composite an image with alpha onto white: transparent logos and stickers look like they do in a
    browser, instead of on whatever the hidden colour channels happen to hold (often black)."""
    rgba = im if im.mode == "RGBA" else im.convert("RGBA")
    out = Image.new("RGB", rgba.size, _WHITE)
    out.paste(rgba, mask=rgba.getchannel("A"))
    return out


def _to_rgb(im: Image.Image, min_side: int | None = None) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB, the one input the model understands (high-bit-depth pictures shrunk
    by an integer factor on the way when the caller needs only `min_side`: trainer.decode_memory)."""
    mode = im.mode
    if mode == "RGB":
        return im
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        return _on_white(im)
    if mode == "P":
        if "transparency" in im.info or (im.palette is not None and im.palette.mode == "RGBA"):
            return _on_white(im.convert("RGBA"))
        return im.convert("RGB")
    if mode.startswith("I") or mode == "F":
        return scale_high_bit_depth(im, min_side).convert("RGB")
    return im.convert("RGB")  # 1, L, CMYK, YCbCr, LAB, HSV, RGBX


def _orientation(im: Image.Image) -> int:
    """The EXIF orientation, or 1 when there is none or the metadata is garbage.

    Broken EXIF blocks are common (phone editors, old cameras); losing the photo over its metadata would be
    worse than showing it unrotated, so any parsing failure counts as "no rotation".
    """
    try:
        value = im.getexif().get(_EXIF_ORIENTATION, 1)
        return int(value) if value in _ORIENTATION_TRANSPOSE else 1
    except Exception:
        return 1


def _jpeg_data_ends_early(im: Image.Image, header_size: tuple[int, int], fh: IO[bytes]) -> bool:
    """Whether a decoded JPEG is mostly the grey libjpeg fills in when the data stops before the picture does.

    Pillow raises nothing when a JPEG's header claims 10000 x 10000 over the data of a small photo: libjpeg warns
    and fills the missing rows with mid-grey (128, 128, 128), and the file would be indexed as a flat grey picture.
    Such a file's last rows are exactly that grey, and it has far fewer bytes than a picture of its size could be
    coded in: under 0.01 bytes a pixel, where a photo takes 0.1 or more and even a flat one about 0.017 (a few bits
    per 16 x 16 block).
    """
    fh.seek(0, os.SEEK_END)
    w, h = im.size  # at the draft's scale
    if fh.tell() >= 0.01 * header_size[0] * header_size[1] or h < 8:
        return False
    bottom = np.asarray(im.crop((0, h - max(1, h // 8), w, h)))
    return bool((bottom == 128).all())


def _decode(fh: IO[bytes], path: Path, min_side: int | None) -> Image.Image:
    im: Image.Image | None = None
    try:
        im = Image.open(fh, formats=_FORMATS)
        w, h = im.size
        if w * h > MAX_IMAGE_PIXELS:
            raise ImageLoadError(f"too large: {w}x{h} pixels (limit {MAX_IMAGE_PIXELS:,})")
        if w <= 0 or h <= 0:
            raise ImageLoadError(f"corrupt {_format_name(path, im)}: empty {w}x{h} image")
        if min_side is not None and im.format in _JPEG_FORMATS:
            # A square request is rotation-safe: whichever side EXIF turns into the short one stays
            # >= min_side. libjpeg then decodes at 1/2, 1/4 or 1/8 scale, several times faster.
            im.draft("RGB", (min_side, min_side))
        high_bit_depth = im.mode.startswith("I") or im.mode == "F"
        needed = decode_bytes(im.mode, im.size, converts=im.mode != "RGB" and not (high_bit_depth and min_side))
        if not DECODE_BUDGET.fits(needed):
            raise ImageLoadError(
                f"too large to decode: a {w}x{h} {im.mode} image needs about {needed // _MB:,} MB, more than the "
                f"{DECODE_BUDGET.total // _MB:,} MB allowed at a time (RETRIEVAL_EXPLORER_DECODE_MB)"
            )
        with DECODE_BUDGET.reserve(needed):
            im.load()  # decode everything here, so truncated data fails inside this try
            if im.format in _JPEG_FORMATS and _jpeg_data_ends_early(im, (w, h), fh):
                raise ImageLoadError(
                    f"corrupt JPEG: its header says {w}x{h} pixels but the data ends long before (only grey)"
                )
            transpose = _ORIENTATION_TRANSPOSE.get(_orientation(im))
            out = _to_rgb(im, min_side)
            if transpose is not None:
                out = out.transpose(transpose)
            return out
    except ImageLoadError:
        raise
    except UnidentifiedImageError as e:
        fh.seek(0)
        raise ImageLoadError(_sniff_non_image(fh.read(512))) from e
    except Image.DecompressionBombError as e:
        raise ImageLoadError(_bomb_reason(e)) from e
    except Image.DecompressionBombWarning as e:  # only when someone turned the warning into an error
        raise ImageLoadError(_bomb_reason(e)) from e
    except MemoryError as e:
        size = f" {im.size[0]}x{im.size[1]}" if im is not None else ""
        raise ImageLoadError(f"out of memory decoding{size} image") from e
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise ImageLoadError(_decode_reason(e, _format_name(path, im))) from e
    except Exception as e:
        # Decoder plugins raise assorted errors (KeyError, IndexError, struct.error, TypeError) on crafted
        # or damaged files. None of them may stop an indexing run.
        raise ImageLoadError(_decode_reason(e, _format_name(path, im))) from e


def load_rgb(path: Path, min_side: int | None = None) -> Image.Image:
    """Open any supported image as an 8-bit RGB picture, upright (EXIF orientation applied).

    `min_side` is a promise by the caller that it will shrink the picture so its shorter side is
    `min_side`; JPEGs are then decoded directly at the smallest 1/2, 1/4 or 1/8 scale that keeps the
    shorter side >= `min_side`, which is most of the indexing speed. Animated files give their first
    frame; transparency is composited onto white. Every failure raises `ImageLoadError` with a one-line
    reason. Thread-safe: nothing shared is mutated.
    """
    path = Path(path)
    try:
        st = os.stat(path)
    except OSError as e:
        raise ImageLoadError(_os_reason(e)) from e
    if stat.S_ISDIR(st.st_mode):
        raise ImageLoadError("is a directory")
    if not stat.S_ISREG(st.st_mode):
        # Opening a FIFO or device would block or read forever.
        raise ImageLoadError("not a regular file")
    if st.st_size == 0:
        raise ImageLoadError("zero-byte file")
    if st.st_size > MAX_FILE_BYTES:
        mb = 1024 * 1024
        raise ImageLoadError(f"too large: file is {st.st_size // mb:,} MB (limit {MAX_FILE_BYTES // mb:,} MB)")
    if path.suffix.lower() in RAW_EXTENSIONS:
        return _load_raw(path, min_side)
    try:
        with open(path, "rb") as fh:
            return _decode(fh, path, min_side)
    except ImageLoadError:
        raise
    except OSError as e:  # opening the file itself, e.g. permission denied or it vanished since stat
        raise ImageLoadError(_os_reason(e)) from e


def _load_raw(path: Path, min_side: int | None) -> Image.Image:
    """A camera RAW file: its embedded JPEG preview through the same hardened decoder as any JPEG, or LibRaw's
    half-size demosaic when the preview is too small (trainer.raw_images says why)."""
    try:
        raw = open_raw(path, min_side)
    except RawDecodeError as e:
        raise ImageLoadError(str(e)) from e
    except OSError as e:
        raise ImageLoadError(_os_reason(e)) from e
    if raw.image is not None:
        return raw.image
    assert raw.jpeg is not None
    picture = _decode(io.BytesIO(raw.jpeg), path, min_side)
    return picture if raw.transpose is None else picture.transpose(raw.transpose)


def _resized_size(w: int, h: int, resize: int) -> tuple[int, int]:
    """Shorter side == `resize`, longer side truncated, exactly as torchvision's `Resize(int)` does, so
    app embeddings match the ones the trainer evaluated with."""
    if w <= h:
        return resize, max(1, int(resize * h / w))
    return max(1, int(resize * w / h)), resize


def preprocess_pil(img: Image.Image, resize: int, crop: int) -> npt.NDArray[np.uint8]:
    """Evaluation preprocessing of an already loaded picture: shorter side to `resize` (bilinear), then a
    centred `crop` x `crop` square, as an HWC uint8 array.

    Normalisation is left to the batch in torch, where it is one fused operation instead of thousands.
    Non-RGB input (a pasted RGBA screenshot) is converted the same way `load_rgb` would.
    """
    if not 0 < crop <= resize:
        raise ValueError(f"need 0 < crop <= resize, got crop={crop}, resize={resize}")
    img = _to_rgb(img)
    w, h = img.size
    nw, nh = _resized_size(w, h, resize)
    if (nw, nh) != (w, h):
        # reducing_gap first shrinks by an integer factor with a cheap box filter, then resamples: much
        # faster on large photos and visually indistinguishable at a gap of 3.
        img = img.resize((nw, nh), Image.Resampling.BILINEAR, reducing_gap=3.0)
    left = round((nw - crop) / 2.0)
    top = round((nh - crop) / 2.0)
    out = np.array(img.crop((left, top, left + crop, top + crop)), dtype=np.uint8)
    return out


def load_for_model(path: Path, resize: int, crop: int) -> npt.NDArray[np.uint8]:
    """Load a file and apply the evaluation preprocessing; `(crop, crop, 3)` uint8. Raises ImageLoadError."""
    return preprocess_pil(load_rgb(path, min_side=resize), resize, crop)
