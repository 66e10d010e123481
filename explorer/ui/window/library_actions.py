"""The window's library side: the Library dock, its menu actions, and the folder watcher's reports.

A mixin of `MainWindow`, as `FolderActions` and `ResultsActions` are; the rules are explorer.app.library_controller's
and the window controller's. The watcher (explorer.engine.watcher) reports on its own thread; a signal carries the
report to the GUI thread, where the controller decides what to index.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import QDockWidget, QFileDialog

from explorer.engine.watcher import FolderWatcher
from explorer.paths import pictures_folder
from explorer.ui.library_panel import LibraryPanel
from explorer.ui.window.part import WindowPart

if TYPE_CHECKING:
    from explorer.app.library_controller import LibraryRow


class WatchBridge(QObject):
    """Carries the watcher's reports (its thread) to the GUI thread."""

    changed = Signal(str)

    def report(self, folder: Path) -> None:
        self.changed.emit(str(folder))


def make_watcher(bridge: WatchBridge) -> FolderWatcher:
    return FolderWatcher(bridge.report, settle=1.0)


class LibraryActions(WindowPart):
    # provided by MainWindow
    library_action: Any
    library_dock: QDockWidget
    library_panel: LibraryPanel
    watch_bridge: WatchBridge

    def _build_library_dock(self) -> None:
        self.library_panel = LibraryPanel()
        self.library_dock = QDockWidget("Library", self._window)
        self.library_dock.setObjectName("library_dock")
        self.library_dock.setWidget(self.library_panel)
        self._window.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, self.library_dock)
        self.library_dock.hide()
        panel = self.library_panel
        panel.addRequested.connect(self.choose_library_folder)
        panel.removeRequested.connect(lambda folder: self.controller.library.remove(folder, self.controller.folder))
        panel.searchToggled.connect(self.search_library)
        panel.indexRequested.connect(self.index_library)
        panel.openRequested.connect(self._open_library_folder)
        panel.folderSearched.connect(self.controller.set_folder_searched)
        self.watch_bridge.changed.connect(lambda folder: self.controller.files_changed(Path(folder)))

    # -- the menu's actions ---------------------------------------------------------------------------------------
    def show_library(self) -> None:
        self.library_dock.show()
        self.library_dock.raise_()
        self.controller.library.refresh()

    def add_folder_to_library(self) -> None:
        folder = self.controller.folder
        if folder is None:
            self.choose_library_folder()
            return
        self.show_library()
        self.controller.library.add(folder, folder)

    def choose_library_folder(self) -> None:
        start = str(self.controller.folder or pictures_folder())
        name = QFileDialog.getExistingDirectory(self._window, "Add a folder to the library", start)
        if name:
            self.show_library()
            self.controller.library.add(Path(name).resolve(), self.controller.folder)

    def toggle_library_search(self) -> None:
        self.search_library(not self.controller.library.searching)

    def search_library(self, on: bool) -> None:
        if on and not self.controller.library.folders():
            self._window.statusBar().showMessage("The library is empty: add a folder first (Library ▸ Add…).", 8000)
            on = False
        if on:
            self.show_library()
        self.controller.set_library_search(on)

    def index_library(self) -> None:
        self.show_library()
        self.controller.library.index_all()

    def _open_library_folder(self, folder: Path) -> None:
        if not folder.is_dir():
            self._window.statusBar().showMessage(f"{folder} is offline: plug its drive in to open it.", 8000)
            return
        self.search_library(False)
        self.open_folder(folder)  # type: ignore[attr-defined]

    # -- what the controller tells ---------------------------------------------------------------------------------
    def library_changed(self, rows: list[LibraryRow], searching: bool) -> None:
        self.library_panel.show_rows(rows, searching)
        self.library_action.setChecked(searching)
        title = "Library: searching every folder" if searching else "Library"
        self.library_dock.setWindowTitle(title)
