"""Thumbnails decoded lazily on a thread pool, upright, kept in a small LRU cache.

Views ask for a thumbnail while painting; a miss returns None at once (the view paints a placeholder) and
queues the decode, and `ready` tells the views to repaint when it arrives. Decoding goes through
`trainer.images.load_rgb`, so thumbnails respect EXIF orientation exactly like the embeddings do, and JPEGs
are decoded at 1/2 to 1/8 scale (libjpeg draft mode) since only a small picture is needed. QImage is safe
to build off the GUI thread; the QPixmap is made on the GUI thread when the image arrives. A picture indexed since
thumbnails are made in the indexing pass (explorer.engine.thumbnail_store) is not decoded at all for sizes up to the
stored one: a grid of 32 camera photos took 531 ms of decoding, 12 ms from the store (bench/thumbnails_in_index.py).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

from PIL import Image
from PySide6.QtCore import QObject, Qt, QThreadPool, Signal
from PySide6.QtGui import QImage, QPixmap

from explorer.engine.thumbnail_store import THUMBNAIL_SIZE
from trainer.images import ImageLoadError, load_rgb

Key = tuple[str, int]


def pil_to_qimage(image: Image.Image) -> QImage:
    """An owned RGB888 QImage copy of a PIL picture (any mode)."""
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    data = rgb.tobytes()
    w, h = rgb.size
    return QImage(data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()


def qimage_to_pil(image: QImage) -> Image.Image:
    """A PIL RGB copy of a QImage (pasted clipboard data), alpha composited onto white."""
    if image.hasAlphaChannel():
        rgba = image.convertToFormat(QImage.Format.Format_RGBA8888)
        pil = Image.frombytes(
            "RGBA", (rgba.width(), rgba.height()), bytes(rgba.constBits()), "raw", "RGBA", rgba.bytesPerLine()
        )
        out = Image.new("RGB", pil.size, (255, 255, 255))
        out.paste(pil, mask=pil.getchannel("A"))
        return out
    rgb = image.convertToFormat(QImage.Format.Format_RGB888)
    return Image.frombytes("RGB", (rgb.width(), rgb.height()), bytes(rgb.constBits()), "raw", "RGB", rgb.bytesPerLine())


def load_thumbnail(path: Path, size: int) -> QImage:
    """Decode `path` so its longer side is at most `size` pixels (raises ImageLoadError)."""
    image = load_rgb(path, min_side=size)
    image.thumbnail((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return pil_to_qimage(image)


class _Bridge(QObject):
    """Carries decoded images from pool threads to the GUI thread (a queued connection)."""

    loaded = Signal(object, object, str)  # key, QImage | None, error reason


class ThumbnailCache(QObject):
    """Pixmaps by (path, size); misses are decoded in the background and announced by `ready(path)`."""

    ready = Signal(str)

    def __init__(
        self,
        capacity: int = 1500,
        threads: int | None = None,
        parent: QObject | None = None,
        stored: Callable[[Path], bytes | None] | None = None,
    ) -> None:
        super().__init__(parent)
        self.capacity = capacity
        self.stored = stored
        """The thumbnail made when the picture was indexed (explorer.engine.thumbnail_store), asked first for sizes
        up to THUMBNAIL_SIZE: a results grid of camera photos then decodes none of them again."""
        self.pool = QThreadPool(self)
        # Leave a core to the GUI thread (painting) and the model: decoding small thumbnails is not the
        # bottleneck, starving the event loop is.
        self.pool.setMaxThreadCount(threads or min(2, max(1, (os.cpu_count() or 2) - 1)))
        self._pixmaps: OrderedDict[Key, QPixmap] = OrderedDict()
        self._errors: dict[str, str] = {}
        self._pending: set[Key] = set()
        self._priority = 0
        self._bridge = _Bridge(self)
        self._bridge.loaded.connect(self._on_loaded)

    def get(self, path: Path | str, size: int) -> QPixmap | None:
        """The cached pixmap, or None after queuing its decode (or if the file cannot be decoded)."""
        key = (str(path), int(size))
        pixmap = self._pixmaps.get(key)
        if pixmap is not None:
            self._pixmaps.move_to_end(key)
            return pixmap
        if key[0] not in self._errors and key not in self._pending:
            self._pending.add(key)
            # Newest first: what was asked for last is what is on screen now.
            self._priority = (self._priority + 1) % 2_000_000_000
            self.pool.start(lambda: self._load(key), self._priority)
        return None

    def error(self, path: Path | str) -> str | None:
        """Why the file could not be shown, once a decode failed."""
        return self._errors.get(str(path))

    def cancel_pending(self) -> None:
        """Forget queued decodes (the results they were for have been replaced)."""
        self.pool.clear()
        self._pending.clear()

    def wait(self, msecs: int = 10_000) -> bool:
        return self.pool.waitForDone(msecs)

    def _load(self, key: Key) -> None:  # pool thread
        try:
            image = self._from_store(key) or load_thumbnail(Path(key[0]), key[1])
        except ImageLoadError as exc:
            self._bridge.loaded.emit(key, None, str(exc))
        except Exception as exc:  # a decoder bug on one file must not take the app down
            self._bridge.loaded.emit(key, None, f"{type(exc).__name__}: {exc}")
        else:
            self._bridge.loaded.emit(key, image, "")

    def _from_store(self, key: Key) -> QImage | None:
        if self.stored is None or key[1] > THUMBNAIL_SIZE:
            return None
        try:
            data = self.stored(Path(key[0]))
        except Exception:  # a damaged store: the file is decoded as before
            return None
        image = QImage.fromData(data) if data else None
        if image is None or image.isNull():
            return None
        if max(image.width(), image.height()) > key[1]:
            mode = Qt.TransformationMode.SmoothTransformation
            image = image.scaled(key[1], key[1], Qt.AspectRatioMode.KeepAspectRatio, mode)
        return image

    def _on_loaded(self, key: Key, image: QImage | None, error: str) -> None:
        self._pending.discard(key)
        if image is None:
            self._errors[key[0]] = error
        else:
            self._pixmaps[key] = QPixmap.fromImage(image)
            while len(self._pixmaps) > self.capacity:
                self._pixmaps.popitem(last=False)
        self.ready.emit(key[0])
