"""Where a query comes from: a dropped file or local URL, pasted image data or a pasted path, or Open.

All sources funnel through `accept_mime`, which the drop handler and Ctrl+V both call, so a drag from a
file manager, a copy from a browser and a screenshot in the clipboard behave the same. A dropped folder is
passed on as a folder to search in, which is what someone dropping a folder means.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QMimeData, QSize, Qt, QUrl, Signal
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QGuiApplication, QImage, QPalette, QPixmap
from PySide6.QtWidgets import QFrame, QLabel, QSizePolicy, QVBoxLayout, QWidget

from trainer.images import IMAGE_EXTENSIONS


def path_from_text(text: str) -> Path | None:
    """A local path or file:// URL in pasted text (first line), if it names an existing file or folder."""
    line = text.strip().splitlines()[0].strip().strip('"').strip("'") if text.strip() else ""
    if not line:
        return None
    if line.startswith("file:"):
        url = QUrl(line)
        if not url.isLocalFile():
            return None
        line = url.toLocalFile()
    path = Path(line).expanduser()
    try:
        return path if path.exists() else None
    except OSError:  # a name too long or with characters the file system rejects
        return None


def local_paths(mime: QMimeData) -> list[Path]:
    return [Path(u.toLocalFile()) for u in mime.urls() if u.isLocalFile() and u.toLocalFile()]


class QueryArea(QFrame):
    """Drop target and preview of the current query image."""

    imageChosen = Signal(object)  # Path
    imagePasted = Signal(object)  # QImage
    folderChosen = Signal(object)  # Path
    rejected = Signal(str)  # why a drop or paste was not a usable image

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setAcceptDrops(True)
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setMinimumSize(QSize(200, 200))
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self.picture = QLabel()
        self.picture.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.picture.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)
        self.picture.setWordWrap(True)
        self.caption = QLabel()
        self.caption.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.caption.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout = QVBoxLayout(self)
        layout.addWidget(self.picture, 1)
        layout.addWidget(self.caption)
        self._pixmap: QPixmap | None = None
        self.clear()

    # -- what is shown ----------------------------------------------------------------------------------
    def clear(self) -> None:
        self._pixmap = None
        self.picture.setPixmap(QPixmap())
        self.picture.setText(
            "<p style='font-size:15px'><b>Drop an image here</b></p>"
            "<p>or paste one (Ctrl+V),<br>or open a file (Ctrl+O)</p>"
        )
        self.caption.setText("")
        self._set_hover(False)

    def show_query(self, pixmap: QPixmap | None, caption: str) -> None:
        self._pixmap = pixmap if pixmap is not None and not pixmap.isNull() else None
        if self._pixmap is None:
            self.picture.setPixmap(QPixmap())
            self.picture.setText("Loading…")
        self._fit()
        self.caption.setText(caption)

    def _fit(self) -> None:
        if self._pixmap is not None:
            size = self.picture.size()
            self.picture.setPixmap(
                self._pixmap.scaled(
                    size, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation
                )
            )

    def resizeEvent(self, event: Any) -> None:
        super().resizeEvent(event)
        self._fit()

    def _set_hover(self, on: bool) -> None:
        role = QPalette.ColorRole.Highlight if on else QPalette.ColorRole.Mid
        color = self.palette().color(role).name()
        self.setStyleSheet(f"QueryArea {{ border: 2px dashed {color}; border-radius: 8px; }}")

    # -- input ------------------------------------------------------------------------------------------
    def accept_mime(self, mime: QMimeData) -> bool:
        """Take a query from drag-and-drop or clipboard data; True if something usable was found.

        Order: local files (a file manager drag), image data (a screenshot, an image copied in a browser),
        then text holding a path or file:// URL (a path copied from a terminal).
        """
        paths = local_paths(mime)
        if not paths and mime.hasText():
            found = path_from_text(mime.text())
            paths = [found] if found is not None else []
        for path in paths:
            if path.is_dir():
                self.folderChosen.emit(path)
                return True
            if path.suffix.lower() in IMAGE_EXTENSIONS or not mime.hasImage():
                self.imageChosen.emit(path)
                return True
        if mime.hasImage():
            image = QImage(mime.imageData())
            if not image.isNull():
                self.imagePasted.emit(image)
                return True
        if mime.hasUrls() and not paths:
            self.rejected.emit("Only local files can be used as a query; save the image first.")
        else:
            self.rejected.emit("The clipboard or drop holds no image or image path.")
        return False

    def paste(self) -> bool:
        return self.accept_mime(QGuiApplication.clipboard().mimeData())

    @staticmethod
    def _acceptable(mime: QMimeData) -> bool:
        return bool(local_paths(mime)) or mime.hasImage() or (mime.hasText() and bool(mime.text().strip()))

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if self._acceptable(event.mimeData()):
            event.acceptProposedAction()
            self._set_hover(True)

    def dragLeaveEvent(self, event: Any) -> None:
        self._set_hover(False)

    def dropEvent(self, event: QDropEvent) -> None:
        self._set_hover(False)
        if self.accept_mime(event.mimeData()):
            event.acceptProposedAction()
