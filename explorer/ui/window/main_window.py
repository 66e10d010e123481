"""The explorer window: choose a folder, drop a query, see its neighbours and what binary codes and shorter
embeddings change.

A view of `explorer.app.window_controller.WindowController`, which holds the rules (one model session, one
indexing run, coalesced queries, Recall@K once per folder and model) and runs every engine call in a worker
through a `QtExecutor`; this class builds the widgets (the sidebar, the results and plots, the status strip,
the menus from the one action table), forwards what the person does to the controller and shows what it says.
"""

from __future__ import annotations

import logging
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QCloseEvent, QDragEnterEvent, QDropEvent, QIcon, QImage, QPixmap
from PySide6.QtWidgets import (
    QDockWidget,
    QFileDialog,
    QLabel,
    QMainWindow,
    QMenu,
    QSplitter,
    QTabWidget,
    QWidget,
)

from explorer.app.window_controller import EXPAND_NEIGHBOURS, WindowController
from explorer.paths import ICON, pictures_folder
from explorer.ui.results_view import RankingModel, ResultsView
from explorer.ui.settings import Settings
from explorer.ui.skipped_table import SkippedFilesTable
from explorer.ui.thumbnails import ThumbnailCache, qimage_to_pil
from explorer.ui.window.folder_actions import FolderActions
from explorer.ui.window.label_actions import LabelActions
from explorer.ui.window.library_actions import LibraryActions, WatchBridge, make_watcher
from explorer.ui.window.menus import build_menus
from explorer.ui.window.part import APP_TITLE, QUERY_THUMB
from explorer.ui.window.results_actions import ResultsActions
from explorer.ui.window.sidebar import Sidebar
from explorer.ui.window.status_strip import StatusStrip
from explorer.ui.workers import QtExecutor

if TYPE_CHECKING:
    from collections.abc import Callable

    from explorer.engine.session import RetrievalSession
    from explorer.ui.dims_panel import DimensionsPanel
    from explorer.ui.map_panel import MapPanel
    from explorer.ui.plots import FloatBinaryPanel

log = logging.getLogger(__name__)

GRID_THUMB = 128


def default_session_factory(model_path: Path | None) -> RetrievalSession:
    """Build a session with its model loaded (runs on a worker: importing torch takes seconds)."""
    from explorer.engine.runtime import wants_onnx
    from explorer.ui.preload import preload_torch_libraries

    if not wants_onnx("auto"):  # ONNX Runtime needs no torch (its export runs in a process of its own)
        preload_torch_libraries()
    from explorer.engine.session import RetrievalSession

    session = RetrievalSession(model_path)
    _ = session.embedder  # load the weights now, so the first query does not pay for it
    return session


def app_icon() -> QIcon:
    return QIcon(str(ICON)) if ICON.exists() else QIcon()


def _to_image(source: Any) -> Any:
    return qimage_to_pil(source) if isinstance(source, QImage) else source


class _ImportSignal(QObject):
    done = Signal(str)  # "" on success, else the error


class MainWindow(FolderActions, ResultsActions, LibraryActions, LabelActions, QMainWindow):
    sessionReady = Signal(object)  # RetrievalSession
    indexProgress = Signal(object)  # trainer.progress.Progress
    indexFinished = Signal(object)  # IndexSummary
    queryFinished = Signal(object)  # QueryOutcome (also when the query could not be searched yet)
    queryFailed = Signal(str)
    recallFinished = Signal(object)  # RecallTable | None
    mapChanged = Signal(object)  # MapLayout | None
    analysisReady = Signal()  # the plot panels exist (pyqtgraph is imported after the window shows)
    recent_menu: QMenu  # built from the action table (explorer.ui.window.menus)

    def __init__(
        self,
        settings: Settings | None = None,
        session_factory: Callable[[Path | None], RetrievalSession] | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.settings = settings or Settings()
        self.executor = QtExecutor(self)
        self.watch_bridge = WatchBridge(self)
        self.watcher = make_watcher(self.watch_bridge)
        self.controller = WindowController(
            self, self.executor, session_factory or default_session_factory, to_image=_to_image, watcher=self.watcher
        )
        self.controller.model_path = self.settings.model_path
        self.controller.k = self.settings.k
        self.controller.dim = self.settings.dim
        self.controller.expand = EXPAND_NEIGHBOURS if self.settings.expand else 0
        self.plots: FloatBinaryPanel | None = None
        self.dims: DimensionsPanel | None = None
        self.map_panel: MapPanel | None = None
        self.thumbnails = ThumbnailCache(parent=self, stored=self._stored_thumbnail)
        # Large previews in a cache of their own, so a few of them never push out hundreds of thumbnails.
        self.previews = ThumbnailCache(capacity=6, threads=1, parent=self)
        self._closing = False
        self._started = False  # background work starts after the first paint (see paintEvent)
        self._important_until = 0.0  # monotonic time until which the status bar shows an indexing outcome

        self.setWindowTitle(APP_TITLE)
        self.setWindowIcon(app_icon())
        self.setAcceptDrops(True)
        self._build_widgets()
        build_menus(self)
        self.label_copies_action.setChecked(self.settings.label_copies)
        self._reindex_enabled(False)  # until a folder is chosen
        self._refresh_folder_combo()
        self._restore()
        self.model_label.setText("Loading the model…")
        if self.settings.last_folder is not None and self.settings.last_folder.is_dir():
            self.open_folder(self.settings.last_folder, at_launch=True)

    # -- construction -----------------------------------------------------------------------------------------
    def _build_widgets(self) -> None:
        side = self.sidebar = Sidebar(self.settings.k, self.settings.binary, self.settings.expand, self.settings.cutoff)
        self.query_area, self.k_spin, self.dim_combo = side.query_area, side.k_spin, side.dim_combo
        self.ranking_combo, self.folder_combo, self.folder_info = (
            side.ranking_combo,
            side.folder_combo,
            side.folder_info,
        )
        self.reindex_button, self.model_label = side.reindex_button, side.model_label
        side.query_area.imageChosen.connect(self.set_query_path)
        side.query_area.imagePasted.connect(self.set_query_image)
        side.query_area.folderChosen.connect(self.open_folder)
        side.query_area.rejected.connect(lambda why: self.statusBar().showMessage(why, 6000))
        side.open_button.clicked.connect(self.choose_query_file)
        side.paste_button.clicked.connect(self.paste_query)
        side.browse_button.clicked.connect(self.choose_folder)
        side.folder_info.linkActivated.connect(lambda _: self.show_skipped())
        side.reindex_button.clicked.connect(self.reindex)
        side.model_button.clicked.connect(self.choose_model)

        self.grid_model = RankingModel(self.thumbnails, GRID_THUMB, self)
        self.grid = ResultsView(self.grid_model)
        self.grid.previewRequested.connect(self.preview)
        self.grid.queryRequested.connect(self.set_query_path)
        self.grid.exampleRequested.connect(self.add_example)
        self.grid.labelRequested.connect(self.label_results)
        self.grid.set_placeholder("Click here to choose a folder of images, then drop a query image on the left.")
        self.grid.placeholderClicked.connect(self._empty_grid_clicked)
        self.neighbours_split = QSplitter(Qt.Orientation.Horizontal)
        self.neighbours_split.addWidget(self.grid)
        self.neighbours_split.addWidget(_placeholder("Loading plots…"))
        self.neighbours_split.setStretchFactor(0, 3)
        self.neighbours_split.setStretchFactor(1, 2)
        # At 1024 px the grid fell to one column while the plots kept their share: the grid keeps two.
        self.grid.setMinimumWidth(self.grid.minimum_width_for(2))
        self.neighbours_split.setSizes([560, 440])
        self.tabs = QTabWidget()
        self.tabs.addTab(self.neighbours_split, "Neighbours")
        self.tabs.addTab(_placeholder("Loading plots…"), "Dimensions")
        self.tabs.addTab(_placeholder("Loading the map…"), "Map")
        self.main_split = QSplitter(Qt.Orientation.Horizontal)
        self.main_split.addWidget(side)
        self.main_split.addWidget(self.tabs)
        self.main_split.setStretchFactor(1, 1)
        self.main_split.setSizes([270, 1010])
        self.setCentralWidget(self.main_split)

        self.skipped_table = SkippedFilesTable()
        self.skipped_dock = QDockWidget("Skipped files", self)
        self.skipped_dock.setObjectName("skipped_dock")
        self.skipped_dock.setWidget(self.skipped_table)
        self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, self.skipped_dock)
        self.skipped_dock.hide()
        self._build_library_dock()

        self.strip = StatusStrip(self.statusBar())
        self.progress_label, self.progress_bar = self.strip.progress_label, self.strip.progress_bar
        self.cancel_button, self.skipped_button = self.strip.cancel_button, self.strip.skipped_button
        self.stats_label = self.strip.stats_label
        self.cancel_button.clicked.connect(self.cancel)
        self.skipped_button.clicked.connect(self.show_skipped)

        self.k_spin.valueChanged.connect(self._k_changed)
        self.dim_combo.currentIndexChanged.connect(self._dim_changed)
        self.ranking_combo.currentIndexChanged.connect(self._ranking_changed)
        side.expand_box.toggled.connect(self._expand_changed)
        side.cutoff.valueChanged.connect(self._cutoff_changed)
        self.folder_combo.activated.connect(self._folder_combo_activated)
        self.thumbnails.ready.connect(self._thumbnail_ready)

    def _restore(self) -> None:
        geometry = self.settings.geometry
        if geometry is None or not self.restoreGeometry(geometry):
            self.resize(self.sizeHint())
        state = self.settings.window_state
        if state is not None:
            self.restoreState(state)

    def sizeHint(self) -> QSize:
        """1280 x 800, or less where the screen is smaller: a 1366 x 768 laptop has about 1366 x 700 to show it."""
        screen = self.screen().availableGeometry() if self.screen() is not None else None
        if screen is None or screen.width() <= 0:
            return QSize(1280, 800)
        return QSize(min(1280, int(screen.width() * 0.95)), min(800, int(screen.height() * 0.92)))

    # Dropping anywhere in the window (on the grid, on a plot) means the same as dropping on the query area.
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        self.query_area.dragEnterEvent(event)

    def dropEvent(self, event: QDropEvent) -> None:
        self.query_area.dropEvent(event)

    # -- background imports, after the first paint ------------------------------------------------------------
    def paintEvent(self, event: Any) -> None:
        """Start the slow background work once the window has been painted: importing torch on a worker still
        takes the GIL for up to half a second at a time, which would delay the first paint."""
        super().paintEvent(event)
        if not self._started:
            self._started = True
            QTimer.singleShot(0, self._start_background_imports)

    def _start_background_imports(self) -> None:
        """Import pyqtgraph on a plain thread (about a second; it does not hold the GIL for long, so the window
        stays responsive: bench/gui_responsiveness.py), build the plots, then load the model: two threads
        importing at once fight each other and the GUI thread for the GIL, and the window stutters."""
        if self._closing:
            return
        if "pyqtgraph" in sys.modules:
            self._build_analysis_panels("")
            return
        self._import_signal = _ImportSignal(self)
        self._import_signal.done.connect(self._build_analysis_panels)

        def work() -> None:
            try:
                import pyqtgraph  # noqa: F401
            except Exception as exc:  # a broken install must not stop searching
                self._import_signal.done.emit(f"{type(exc).__name__}: {exc}")
            else:
                self._import_signal.done.emit("")

        threading.Thread(target=work, name="import-pyqtgraph", daemon=True).start()

    def _build_analysis_panels(self, error: str) -> None:
        if self._closing:
            return
        QTimer.singleShot(0, self._load_first_session)  # once the panels are built and painted
        if error:
            log.error("plots are unavailable: %s", error)
            self.neighbours_split.replaceWidget(1, _placeholder(f"Plots are unavailable: {error}"))
            return
        from explorer.ui.dims_panel import DimensionsPanel
        from explorer.ui.plots import FloatBinaryPanel

        self.plots = FloatBinaryPanel()
        old = self.neighbours_split.replaceWidget(1, self.plots)
        if old is not None:
            old.deleteLater()
        self.dims = DimensionsPanel(self.thumbnails)
        self.dims.previewRequested.connect(self.preview)
        self.dims.queryRequested.connect(self.set_query_path)
        current = self.tabs.currentIndex()
        old_tab = self.tabs.widget(1)
        self.tabs.removeTab(1)
        if old_tab is not None:
            old_tab.deleteLater()
        self.tabs.insertTab(1, self.dims, "Dimensions")
        from explorer.ui.map_panel import MapPanel

        self.map_panel = MapPanel(self.thumbnails)
        self.map_panel.queryRequested.connect(self.set_query_path)
        self.map_panel.labelRequested.connect(self.label_results)
        old_map = self.tabs.widget(2)
        self.tabs.removeTab(2)
        if old_map is not None:
            old_map.deleteLater()
        self.tabs.insertTab(2, self.map_panel, "Map")
        self.map_panel.show_layout(self.controller.collection_map.layout, "")
        self.tabs.setCurrentIndex(current)
        if self.session is not None:
            self.dims.set_dims(list(self.session.card.nested_dims))
        if self.outcome is not None:
            self._show_analysis(self.outcome)
        self.dims.show_recall(*self.controller.recall_or_reason())
        self.analysisReady.emit()

    def _load_first_session(self) -> None:
        if not self.controller.session_job.running and self.session is None and not self._closing:
            self.controller.start_session()

    # -- queries: the person's side -----------------------------------------------------------------------------
    def choose_query_file(self) -> None:
        start = str(self.folder) if self.folder else str(pictures_folder())
        name, _ = QFileDialog.getOpenFileName(
            self, "Open a query image", start,
            "Images (*.jpg *.jpeg *.png *.webp *.bmp *.gif *.tif *.tiff *.heic);;All files (*)",
        )  # fmt: skip
        if name:
            self.set_query_path(Path(name))

    def paste_query(self) -> None:
        self.query_area.paste()

    def set_query_path(self, path: Path) -> None:
        path = Path(path)
        self.query_area.show_query(self.thumbnails.get(path, QUERY_THUMB), path.name)
        self.controller.set_query(path, path.name)

    def add_example(self, path: Path, wanted: bool) -> None:
        """More (or less) like this result: the query keeps its picture, its caption says what refines it."""
        self.controller.add_example(Path(path), wanted)
        self.query_area.caption.setText(self.controller.label)

    def set_query_image(self, image: QImage) -> None:
        label = f"pasted image {image.width()}×{image.height()}"
        self.query_area.show_query(QPixmap.fromImage(image), label)
        self.controller.set_query(QImage(image), label)

    def _empty_grid_clicked(self) -> None:
        """The empty grid's message is also its button: the first thing to do is to choose a folder, then a query."""
        if self.folder is None:
            self.choose_folder()
        elif self.controller.source is None:
            self.choose_query_file()

    def _stored_thumbnail(self, path: Path) -> bytes | None:  # a thumbnail thread
        session = self.controller.session
        return session.stored_thumbnail(path) if session is not None else None

    def _thumbnail_ready(self, path: str) -> None:
        source = self.controller.source
        if isinstance(source, Path) and str(source) == path:
            pixmap = self.thumbnails.get(source, QUERY_THUMB)
            error = self.thumbnails.error(source)
            if pixmap is not None:
                self.query_area.show_query(pixmap, self.controller.label)
            elif error:
                self.query_area.show_query(None, f"{self.controller.label}\ncannot read: {error}")
                self.query_area.picture.setText("Cannot read this image")

    def _k_changed(self, value: int) -> None:
        self.settings.k = value
        self.controller.set_k(value)

    def _dim_changed(self, _index: int) -> None:
        dim = self.dim_combo.currentData()
        if dim is None or self.session is None:
            return
        self.settings.dim = None if dim == self.session.card.dim else int(dim)
        self.controller.set_dim(int(dim))

    def _cutoff_changed(self, value: float) -> None:
        self.settings.cutoff = value
        if self.outcome is not None:
            self._show_outcome(self.outcome)  # the same answer, cut: nothing to search again

    def _expand_changed(self, on: bool) -> None:
        self.settings.expand = on
        self.controller.set_expand(on)

    def _ranking_changed(self, _index: int) -> None:
        self.settings.binary = bool(self.ranking_combo.currentData())
        if self.outcome is not None:
            self._show_outcome(self.outcome)

    # -- shutdown -----------------------------------------------------------------------------------------------
    def shutdown(self, wait_ms: int = 30_000) -> None:
        """Cancel background work and wait for it (so no job outlives the window)."""
        self._closing = True
        self.controller.close()
        self.watcher.close()
        for cache in (self.thumbnails, self.previews):
            cache.cancel_pending()
        for runner in self.executor.runners.values():
            runner.cancel_all()
        for runner in self.executor.runners.values():
            if not runner.wait(wait_ms):
                log.warning("%s jobs still running at shutdown", runner.objectName())
        for cache in (self.thumbnails, self.previews):
            cache.wait(wait_ms)

    def closeEvent(self, event: QCloseEvent) -> None:
        self.settings.geometry = self.saveGeometry()
        self.settings.window_state = self.saveState()
        self.settings.sync()
        self.hide()  # gone from the screen at once, even while the last jobs wind down
        self.shutdown()
        super().closeEvent(event)


def _placeholder(text: str) -> QLabel:
    label = QLabel(text)
    label.setAlignment(Qt.AlignmentFlag.AlignCenter)
    label.setStyleSheet("color: gray")
    return label
