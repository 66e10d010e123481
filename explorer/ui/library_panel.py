"""The library's folders as the window lists them: online or offline, how many images, watched or rescanned.

Widgets only: the window (explorer.ui.window.library_actions) connects the signals to its controller, which decides
(explorer.app.library_controller).
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (
    QCheckBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from explorer.app.library_controller import LibraryRow

OFFLINE_GREY = QColor(128, 128, 128)


def row_text(row: LibraryRow) -> str:
    """The list's line for a folder: its name, what is searchable, and whether it is there."""
    images = f"{row.images:,} images" if row.indexed else "not indexed yet"
    state = "" if row.online else "  ·  offline: its drive is away, searched from its index"
    return f"{row.path.name or row.path}  ·  {images}{state}  ·  {row.path}"


def row_tip(row: LibraryRow) -> str:
    watching = {"": "not watched while offline", "watched": "watched: new photos are indexed within seconds"}
    return f"{row.path}\n{watching.get(row.watching, row.watching)}"


class LibraryPanel(QWidget):
    openRequested = Signal(object)  # Path: search in this folder
    addRequested = Signal()
    removeRequested = Signal(object)  # Path
    searchToggled = Signal(bool)
    folderSearched = Signal(object, bool)  # Path, whether library-wide queries search it
    indexRequested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.search_box = QCheckBox("Search the whole library")
        self.search_box.setToolTip("Queries search every folder of the library, not only the current one (Ctrl+L)")
        self.summary = QLabel("No folders yet: add the folders you want to search together.")
        self.summary.setWordWrap(True)
        self.list = QListWidget()
        self.list.setToolTip("Ticked folders are searched by library-wide queries; double-click one to search it alone")
        self.add_button = QPushButton("Add folder…")
        self.remove_button = QPushButton("Remove")
        self.remove_button.setToolTip("Take the selected folder out of the library (its index is kept)")
        self.index_button = QPushButton("Index all")
        self.index_button.setToolTip("Index every folder of the library that is online (incremental)")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 4, 6, 4)
        top = QHBoxLayout()  # the buttons on the top row: a short dock hides list rows, never the buttons
        top.addWidget(self.search_box)
        top.addWidget(self.summary, 1)
        for button in (self.add_button, self.remove_button, self.index_button):
            top.addWidget(button)
        layout.addLayout(top)
        layout.addWidget(self.list, 1)
        self.remove_button.setEnabled(False)

        self.search_box.toggled.connect(self.searchToggled)
        self.add_button.clicked.connect(self.addRequested)
        self.index_button.clicked.connect(self.indexRequested)
        self.remove_button.clicked.connect(self._remove_selected)
        self.list.itemDoubleClicked.connect(lambda item: self.openRequested.emit(self._path(item)))
        self.list.currentItemChanged.connect(lambda item, _old: self.remove_button.setEnabled(item is not None))
        self.list.itemChanged.connect(self._ticked)

    @staticmethod
    def _path(item: QListWidgetItem) -> Path:
        return Path(item.data(Qt.ItemDataRole.UserRole))

    def _ticked(self, item: QListWidgetItem) -> None:
        # Told after this signal returns: the answer refills the list, which must not delete the item mid-signal.
        folder, on = self._path(item), item.checkState() == Qt.CheckState.Checked
        QTimer.singleShot(0, lambda: self.folderSearched.emit(folder, on))

    def _remove_selected(self) -> None:
        item = self.list.currentItem()
        if item is not None:
            self.removeRequested.emit(self._path(item))

    def show_rows(self, rows: list[LibraryRow], searching: bool) -> None:
        selected = self.list.currentItem()
        keep = self._path(selected) if selected is not None else None
        self.list.blockSignals(True)  # filling the list is not the person ticking folders
        self.list.clear()
        for row in rows:
            item = QListWidgetItem(row_text(row))
            item.setData(Qt.ItemDataRole.UserRole, str(row.path))
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked if row.searched else Qt.CheckState.Unchecked)
            item.setToolTip(row_tip(row))
            if not row.online:
                item.setForeground(QBrush(OFFLINE_GREY))
            self.list.addItem(item)
            if row.path == keep:
                self.list.setCurrentItem(item)
        self.list.blockSignals(False)
        offline = sum(not r.online for r in rows)
        images = sum(r.images for r in rows)
        self.summary.setText(
            f"{len(rows)} folders, {images:,} images" + (f", {offline} offline" if offline else "")
            if rows
            else "No folders yet: add the folders you want to search together."
        )
        self.search_box.blockSignals(True)
        self.search_box.setChecked(searching)
        self.search_box.blockSignals(False)
        self.remove_button.setEnabled(self.list.currentItem() is not None)
