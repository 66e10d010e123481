"""The explorer window: choose a folder, drop a query, see its neighbours and what binary codes and
shorter embeddings change.

The window is a thin shell over `RetrievalSession`. It owns no retrieval logic: every engine call runs in a
`Job` on a pool thread (model loading, indexing, queries, folder metrics) and the GUI thread only turns
results into widgets, so decoding, inference and search never freeze the window. The rules that keep the
pieces consistent:

* One model session at a time, built in a worker (building it imports torch, which must never happen on
  the GUI thread or before the window shows). Anything asked for before it is ready is done when it is.
* One indexing run at a time, started automatically whenever a folder is chosen (incremental, so an
  indexed folder costs a scan). Queries on that folder wait for the run to end: the engine reloads the
  folder's collection at the end of a run, and searching it meanwhile would race that reload.
* Queries are coalesced: while one runs, changes of k, dimension or image only mark it stale, and the
  latest state is searched when it finishes. The query embedding is kept, so changing k or the
  dimension re-searches without running the model.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QCloseEvent, QDragEnterEvent, QDropEvent, QIcon, QImage, QKeySequence, QPixmap
from PySide6.QtWidgets import (
    QComboBox,
    QDockWidget,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QMenu,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QSplitter,
    QTabWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from explorer.app.actions import ACTIONS, RECENT_FOLDERS, VIEW, shortcut_rows
from explorer.app.analysis import (
    IndexSummary,
    QueryOutcome,
    RecallTable,
    folder_recall,
    index_folder,
    run_query,
    searchable_now,
)
from explorer.app.export import ExportContext, export_ranking
from explorer.app.query_state import QueryCoalescer
from explorer.paths import ICON, cache_root, data_root, log_file, pictures_folder
from explorer.ui.query_area import QueryArea
from explorer.ui.results_view import PreviewDialog, RankingModel, ResultsView, copy_paths
from explorer.ui.settings import MAX_K, Settings
from explorer.ui.skipped_table import SkippedFilesTable
from explorer.ui.thumbnails import ThumbnailCache, qimage_to_pil
from explorer.ui.widgets import LAST, refill_combo
from explorer.ui.workers import Job, JobRunner
from trainer.progress import format_time_left

if TYPE_CHECKING:
    from explorer.engine.search import SearchResult
    from explorer.engine.session import RetrievalSession
    from explorer.ui.dims_panel import DimensionsPanel
    from explorer.ui.plots import FloatBinaryPanel
    from trainer.progress import Progress

log = logging.getLogger(__name__)

APP_TITLE = "Retrieval Explorer"
ICON_PATH = ICON
GRID_THUMB = 128
QUERY_THUMB = 480
SessionFactory = Callable[[Path | None], "RetrievalSession"]


def default_session_factory(model_path: Path | None) -> RetrievalSession:
    """Build a session with its model loaded (runs on a worker: importing torch takes seconds)."""
    from explorer.ui.preload import preload_torch_libraries

    preload_torch_libraries()
    from explorer.engine.session import RetrievalSession

    session = RetrievalSession(model_path)
    _ = session.embedder  # load the weights now, so the first query does not pay for it
    return session


def app_icon() -> QIcon:
    return QIcon(str(ICON_PATH)) if ICON_PATH.exists() else QIcon()


class _ImportSignal(QObject):
    done = Signal(str)  # "" on success, else the error


class MainWindow(QMainWindow):
    """See the module docstring for the rules it follows."""

    sessionReady = Signal(object)  # RetrievalSession
    indexProgress = Signal(object)  # trainer.progress.Progress
    indexFinished = Signal(object)  # IndexSummary
    queryFinished = Signal(object)  # QueryOutcome (also when the query could not be searched yet)
    queryFailed = Signal(str)
    recallFinished = Signal(object)  # RecallTable | None
    analysisReady = Signal()  # the plot panels exist (pyqtgraph is imported after the window shows)

    def __init__(
        self,
        settings: Settings | None = None,
        session_factory: SessionFactory | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.settings = settings or Settings()
        self.session_factory = session_factory or default_session_factory
        self.session: RetrievalSession | None = None
        self.model_path: Path | None = self.settings.model_path
        self.folder: Path | None = None
        self.plots: FloatBinaryPanel | None = None
        self.dims: DimensionsPanel | None = None

        self.model_runner = JobRunner("model", 1, self)
        self.index_runner = JobRunner("index", 1, self)
        self.query_runner = JobRunner("query", 1, self)
        self.analysis_runner = JobRunner("analysis", 1, self)
        self.thumbnails = ThumbnailCache(parent=self)
        # Large previews in a cache of their own, so a few of them never push out hundreds of thumbnails.
        self.previews = ThumbnailCache(capacity=6, threads=1, parent=self)

        self._session_job: Job | None = None
        self._index_job: Job | None = None
        self._index_wanted = False  # index the current folder as soon as possible
        self._index_declined = False  # Cancel pressed while the model loaded: no run starts by itself
        self._summary: IndexSummary | None = None
        self._query_source: Path | QImage | None = None
        self._query_label = ""
        self.queries = QueryCoalescer()  # one query at a time; stale answers are never shown
        self._embedding: Any = None  # of the current source under the current session
        self._query_job: Job | None = None
        self.outcome: QueryOutcome | None = None
        self._recall_job: Job | None = None
        self._recall: tuple[RecallTable | None, str] = (None, "")
        self._recall_key: tuple[str, str] | None = None
        self._closing = False

        self.setWindowTitle(APP_TITLE)
        self.setWindowIcon(app_icon())
        self.setAcceptDrops(True)
        self._build_widgets()
        self._build_actions()
        self._refresh_folder_combo()
        self._restore()
        self._started = False  # background work starts after the first paint (see paintEvent)
        self.model_label.setText("Loading the model…")
        self._important_until = 0.0  # monotonic time until which the status bar shows an indexing outcome
        self._previous_query: tuple[Path | QImage, str, Any] | None = None  # restored when a new query fails
        self._launch_folder: Path | None = None  # reopened at launch: a cancelled run there is offered, not restarted
        if self.settings.last_folder is not None and self.settings.last_folder.is_dir():
            self.open_folder(self.settings.last_folder)
            self._launch_folder = self.folder

    # ================================================================================== construction
    def _build_widgets(self) -> None:
        # -- left: query and controls
        self.query_area = QueryArea()
        self.query_area.imageChosen.connect(self.set_query_path)
        self.query_area.imagePasted.connect(self.set_query_image)
        self.query_area.folderChosen.connect(self.open_folder)
        self.query_area.rejected.connect(lambda why: self.statusBar().showMessage(why, 6000))
        open_button = QPushButton("Open image…")
        open_button.clicked.connect(self.choose_query_file)
        paste_button = QPushButton("Paste")
        paste_button.clicked.connect(self.paste_query)
        query_buttons = QHBoxLayout()
        query_buttons.addWidget(open_button)
        query_buttons.addWidget(paste_button)

        self.k_spin = QSpinBox()
        self.k_spin.setRange(1, MAX_K)
        self.k_spin.setValue(self.settings.k)
        self.k_spin.setToolTip("How many neighbours to show")
        self.dim_combo = QComboBox()
        self.dim_combo.setToolTip("Search with the first d dimensions of the embedding (nested dimensions)")
        self.dim_combo.setEnabled(False)
        self.ranking_combo = QComboBox()
        self.ranking_combo.addItem("Float (cosine)", False)
        self.ranking_combo.addItem("Binary (Hamming)", True)
        self.ranking_combo.setCurrentIndex(1 if self.settings.binary else 0)
        self.ranking_combo.setToolTip("Which ranking the grid shows; the plots compare both")
        search_box = QGroupBox("Search")
        search_form = QFormLayout(search_box)
        search_form.addRow("Neighbours", self.k_spin)
        search_form.addRow("Dimension", self.dim_combo)
        search_form.addRow("Ranking", self.ranking_combo)

        self.folder_combo = QComboBox()
        self.folder_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.folder_combo.setMinimumContentsLength(12)
        self.folder_combo.setToolTip("Recent folders")
        browse = QToolButton()
        browse.setText("…")
        browse.setToolTip("Choose a folder (Ctrl+Shift+O)")
        browse.clicked.connect(self.choose_folder)
        folder_row = QHBoxLayout()
        folder_row.addWidget(self.folder_combo, 1)
        folder_row.addWidget(browse)
        self.folder_info = QLabel("No folder chosen")
        self.folder_info.setWordWrap(True)
        self.folder_info.setTextFormat(Qt.TextFormat.RichText)
        self.folder_info.linkActivated.connect(lambda _: self.show_skipped())
        self.reindex_button = QPushButton("Re-index")
        self.reindex_button.setToolTip("Embed new and changed images (Ctrl+R)")
        self.reindex_button.clicked.connect(self.reindex)
        folder_box = QGroupBox("Folder")
        folder_layout = QVBoxLayout(folder_box)
        folder_layout.addLayout(folder_row)
        folder_layout.addWidget(self.folder_info)
        folder_layout.addWidget(self.reindex_button)

        self.model_label = QLabel("Loading…")
        self.model_label.setWordWrap(True)
        model_button = QPushButton("Model…")
        model_button.setToolTip("Use a fine-tuned model (.safetensors / .json)")
        model_button.clicked.connect(self.choose_model)
        model_box = QGroupBox("Model")
        model_layout = QVBoxLayout(model_box)
        model_layout.addWidget(self.model_label)
        model_layout.addWidget(model_button)

        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(6, 6, 6, 6)
        left_layout.addWidget(self.query_area, 1)
        left_layout.addLayout(query_buttons)
        left_layout.addWidget(search_box)
        left_layout.addWidget(folder_box)
        left_layout.addWidget(model_box)
        left.setMinimumWidth(230)
        left.setMaximumWidth(380)

        # -- centre: neighbours grid | float-vs-binary, and the dimensions tab
        self.grid_model = RankingModel(self.thumbnails, GRID_THUMB, self)
        self.grid = ResultsView(self.grid_model)
        self.grid.previewRequested.connect(self.preview)
        self.grid.queryRequested.connect(self.set_query_path)
        self.grid.set_placeholder("Click here to choose a folder of images, then drop a query image on the left.")
        self.grid.placeholderClicked.connect(self._empty_grid_clicked)
        self.neighbours_split = QSplitter(Qt.Orientation.Horizontal)
        self.neighbours_split.addWidget(self.grid)
        self.neighbours_split.addWidget(self._placeholder("Loading plots…"))
        self.neighbours_split.setStretchFactor(0, 3)
        self.neighbours_split.setStretchFactor(1, 2)
        # At 1024 px the grid fell to one column while the plots kept their share: the grid keeps two.
        self.grid.setMinimumWidth(self.grid.minimum_width_for(2))
        self.neighbours_split.setSizes([560, 440])
        self.tabs = QTabWidget()
        self.tabs.addTab(self.neighbours_split, "Neighbours")
        self.tabs.addTab(self._placeholder("Loading plots…"), "Dimensions")
        self.main_split = QSplitter(Qt.Orientation.Horizontal)
        self.main_split.addWidget(left)
        self.main_split.addWidget(self.tabs)
        self.main_split.setStretchFactor(1, 1)
        self.main_split.setSizes([270, 1010])
        self.setCentralWidget(self.main_split)

        # -- skipped files
        self.skipped_table = SkippedFilesTable()
        self.skipped_dock = QDockWidget("Skipped files", self)
        self.skipped_dock.setObjectName("skipped_dock")
        self.skipped_dock.setWidget(self.skipped_table)
        self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, self.skipped_dock)
        self.skipped_dock.hide()

        # -- status bar
        bar = self.statusBar()
        self.progress_label = QLabel()
        self.progress_bar = QProgressBar()
        self.progress_bar.setFixedWidth(180)
        self.progress_bar.setTextVisible(False)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop indexing (Esc); what is done is kept")
        self.cancel_button.clicked.connect(self.cancel)
        self.skipped_button = QToolButton()
        self.skipped_button.setAutoRaise(True)
        self.skipped_button.clicked.connect(self.show_skipped)
        self.stats_label = QLabel()
        for w in (self.progress_label, self.progress_bar, self.cancel_button, self.skipped_button, self.stats_label):
            bar.addPermanentWidget(w)
        self._show_indexing(False)
        self.skipped_button.hide()

        self.k_spin.valueChanged.connect(self._k_changed)
        self.dim_combo.currentIndexChanged.connect(self._dim_changed)
        self.ranking_combo.currentIndexChanged.connect(self._ranking_changed)
        self.folder_combo.activated.connect(self._folder_combo_activated)
        self.thumbnails.ready.connect(self._thumbnail_ready)

    @staticmethod
    def _placeholder(text: str) -> QLabel:
        label = QLabel(text)
        label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        label.setStyleSheet("color: gray")
        return label

    def _build_actions(self) -> None:
        """The menus, from the one table of actions (explorer.app.actions), which the shortcut help reads too."""
        menus: dict[str, QMenu] = {}
        for spec in ACTIONS:
            if spec.menu not in menus:
                menus[spec.menu] = self.menuBar().addMenu(spec.menu)
            menu = menus[spec.menu]
            if spec.separator_before:
                menu.addSeparator()
            act = QAction(spec.text, self)
            if spec.shortcut:
                act.setShortcut(QKeySequence(spec.shortcut))
            act.setStatusTip(spec.tip)
            act.triggered.connect(self._slot(spec.slot))
            menu.addAction(act)
            self.addAction(act)  # shortcuts work even with the menu bar hidden
            if spec.attribute:
                setattr(self, spec.attribute, act)
            if spec.submenu_after == RECENT_FOLDERS:
                self.recent_menu = menu.addMenu(RECENT_FOLDERS)
        view_menu = menus[VIEW]
        view_menu.addSeparator()
        view_menu.addAction(self.skipped_dock.toggleViewAction())  # "Skipped files (N)", checked while shown

    def _slot(self, name: str) -> Callable[..., None]:
        """The method an action names ("method" or "method:argument"), as a slot that ignores `checked`."""
        method, _, argument = name.partition(":")
        target = getattr(self, method)
        if argument:
            value = int(argument)
            return lambda _checked=False: target(value)
        return lambda _checked=False: target()

    def _empty_grid_clicked(self) -> None:
        """The empty grid's message is also its button: the first thing to do is to choose a folder, then a query."""
        if self.folder is None:
            self.choose_folder()
        elif self._query_source is None:
            self.choose_query_file()

    # small slots the action table names
    def use_bundled_model(self) -> None:
        self.set_model(None)

    def show_tab(self, index: int) -> None:
        self.tabs.setCurrentIndex(index)

    def show_ranking(self, index: int) -> None:
        self.ranking_combo.setCurrentIndex(index)

    def step_neighbours(self, step: int) -> None:
        self.k_spin.stepBy(step)

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

    # ================================================================================== background imports
    def paintEvent(self, event: Any) -> None:
        """Start the slow background work once the window has been painted.

        Importing torch on a worker still takes the GIL for up to half a second at a time (loading its
        shared libraries), which would delay the first paint if it started earlier.
        """
        super().paintEvent(event)
        if not self._started:
            self._started = True
            QTimer.singleShot(0, self._start_background_work)

    def _start_background_work(self) -> None:
        """pyqtgraph first, then the model (see `_build_analysis_panels`): two threads importing at once
        fight each other and the GUI thread for the GIL, and the window stutters."""
        if not self._closing:
            self._start_background_imports()

    def _start_background_imports(self) -> None:
        """Import pyqtgraph on a plain thread (it costs about a second) and build the plots when done.

        Unlike torch, importing pyqtgraph does not hold the GIL for long stretches, so the window stays
        responsive meanwhile (measured by bench/gui_responsiveness.py).
        """
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
            self.neighbours_split.replaceWidget(1, self._placeholder(f"Plots are unavailable: {error}"))
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
        self.tabs.setCurrentIndex(current)
        if self.session is not None:
            self.dims.set_dims(list(self.session.card.nested_dims))
        if self.outcome is not None:
            self._show_analysis(self.outcome)
        self.dims.show_recall(*self._recall_or_reason())
        self.analysisReady.emit()

    # ================================================================================== model
    def _load_first_session(self) -> None:
        if self._session_job is None and not self._closing:
            self._load_session()

    def _load_session(self) -> None:
        model_path = self.model_path
        if model_path is not None and not self._model_exists(model_path):
            self.statusBar().showMessage(f"Model {model_path} is gone; using the bundled model.", 8000)
            model_path = self.model_path = None
            self.settings.model_path = None
        self.session = None
        self._embedding = None
        self.dim_combo.setEnabled(False)
        self.model_label.setText("Loading the model…")
        factory = self.session_factory
        job = Job("load model", lambda _job: factory(model_path))
        job.signals.finished.connect(self._session_loaded)
        job.signals.failed.connect(self._session_failed)
        self._session_job = job
        self.model_runner.start(job)

    @staticmethod
    def _model_exists(path: Path) -> bool:
        stem = path.with_suffix("") if path.suffix in (".safetensors", ".json") else path
        return stem.with_name(stem.name + ".json").exists() and stem.with_name(stem.name + ".safetensors").exists()

    def _session_loaded(self, job: Job, session: RetrievalSession) -> None:
        if job is not self._session_job or self._closing:
            return
        self.session = session
        card = session.card
        trained = "" if card.trained else " <span style='color:#b36b00'>(untrained)</span>"
        where = "bundled" if self.model_path is None else str(self.model_path)
        self.model_label.setText(f"<b>{card.name}</b>{trained}<br><small>{card.dim}-d · {where}</small>")
        self.model_label.setToolTip(card.description)
        self._fill_dims(card.nested_dims, card.dim)
        if self.dims is not None:
            self.dims.set_dims(list(card.nested_dims))
        self._update_stats()
        self.sessionReady.emit(session)
        launch, self._launch_folder = self._launch_folder, None
        if self.folder is not None and self.folder == launch and session.last_run_cancelled(self.folder):
            self._offer_to_continue(session, self.folder)
        elif self.folder is not None and not self._index_declined and (self._index_wanted or self._summary is None):
            self.reindex()
        if self._query_source is not None:
            self._schedule_query()  # embeds now; searches once the folder's index is settled

    def _session_failed(self, job: Job, message: str) -> None:
        if job is not self._session_job:
            return
        self.model_label.setText(f"<span style='color:#b00020'>Cannot load the model: {message}</span>")
        if self.model_path is not None:
            QMessageBox.warning(
                self, APP_TITLE, f"Cannot load {self.model_path}:\n{message}\n\nUsing the bundled model."
            )
            self.set_model(None)

    def _fill_dims(self, dims: list[int], full: int) -> None:
        items = [(f"{d}  (full)" if d == full else str(d), d) for d in dims]
        refill_combo(self.dim_combo, items, keep=self.settings.dim or full, fallback=LAST)
        self.dim_combo.setEnabled(True)

    def choose_model(self) -> None:
        start = str(self.model_path.parent) if self.model_path else str(pictures_folder())
        name, _ = QFileDialog.getOpenFileName(self, "Choose a model", start, "Models (*.safetensors *.json)")
        if name:
            self.set_model(Path(name))

    def fine_tune(self) -> None:
        """Open the fine-tune wizard (one at a time, non-modal: searching goes on meanwhile).

        It starts on the open folder when that is labelled (one sub-folder per class); its "Use it now"
        switches this window to the new model (`set_model`).
        """
        from shiboken6 import isValid

        from explorer.ui.wizard import FineTuneWizard

        wizard = getattr(self, "fine_tune_wizard", None)
        if wizard is None or not isValid(wizard) or not wizard.isVisible():
            labelled = self._summary is not None and self._summary.labelled
            wizard = FineTuneWizard(self, folder=self.folder if labelled else None)
            wizard.modelReady.connect(self.set_model)
            self.fine_tune_wizard = wizard
        wizard.show()
        wizard.raise_()
        wizard.activateWindow()

    def set_model(self, path: Path | None) -> None:
        """Switch models: a new session, and the folder indexed again under it (catalogs are per model)."""
        if path is not None and not self._model_exists(path):
            QMessageBox.warning(self, APP_TITLE, f"{path} needs both a .safetensors and a .json file beside it.")
            return
        self.model_path = path
        self.settings.model_path = path
        if self._index_job is not None:
            self._index_job.cancel()
        self._summary = None
        self._recall_key = None
        self._index_wanted = self.folder is not None
        self.queries.settings_changed()  # an answer from the old model must not be shown under the new one
        self._clear_results("Loading the model…")
        self._load_session()

    # ================================================================================== folders
    def choose_folder(self) -> None:
        start = str(self.folder) if self.folder else str(pictures_folder())
        name = QFileDialog.getExistingDirectory(self, "Choose a folder of images", start)
        if name:
            self.open_folder(Path(name))

    def _folder_combo_activated(self, index: int) -> None:
        folder = self.folder_combo.itemData(index)
        if folder is not None and Path(folder) != self.folder:
            self.open_folder(Path(folder))

    def _refresh_folder_combo(self) -> None:
        recent = self.settings.recent_folders
        items = [(f.name or str(f), str(f), str(f)) for f in recent]
        refill_combo(self.folder_combo, items, keep=str(self.folder) if self.folder else None, fallback=-1)
        self.folder_combo.setPlaceholderText("Choose a folder…")
        self.recent_menu.clear()
        for f in recent:
            self.recent_menu.addAction(str(f), self._folder_opener(f))
        self.recent_menu.setEnabled(bool(recent))

    def _folder_opener(self, folder: Path) -> Callable[[], None]:
        """A slot that opens `folder` (one per Recent-folders entry)."""
        return lambda: self.open_folder(folder)

    def open_folder(self, folder: Path) -> None:
        """Search in `folder`: remember it, and bring its index up to date in the background."""
        folder = Path(folder).expanduser()
        if not folder.is_dir():
            self.statusBar().showMessage(f"Not a folder: {folder}", 8000)
            self.settings.forget_folder(folder)
            self._refresh_folder_combo()
            return
        folder = folder.resolve()
        self.folder = folder
        self.settings.remember_folder(folder)
        self._refresh_folder_combo()
        self.setWindowTitle(f"{folder.name} — {APP_TITLE}")
        self._summary = None
        self._recall = (None, "")
        self._recall_key = None
        if self._recall_job is not None:
            self._recall_job.cancel()
        if self.dims is not None:
            self.dims.show_recall(None, "")
        self._set_skipped([])
        self.skipped_dock.hide()  # another folder's list: not left open and empty
        self.folder_info.setText(f"<small>{folder}</small>")
        self._clear_results("Indexing the folder…")
        self.reindex()

    # ================================================================================== indexing
    def reindex(self) -> None:
        """Bring the current folder's index up to date (incremental; resumes a cancelled run)."""
        if self.folder is None:
            self.statusBar().showMessage("Choose a folder first (Ctrl+Shift+O).", 5000)
            return
        self._index_declined = False
        self._index_wanted = True
        if self.session is None:
            self.progress_label.setText("Loading the model…")
            self._show_indexing(True, busy=True)
            return
        if self._index_job is not None:
            self._index_job.cancel()  # restarted for the current folder when it ends
            return
        self._index_wanted = False
        session, folder = self.session, self.folder
        job = Job(f"index {folder}", lambda j: index_folder(session, folder, progress=j.report, cancel=j.cancelled))
        job.signals.progress.connect(self._index_progress)
        job.signals.finished.connect(self._index_finished)
        job.signals.failed.connect(self._index_failed)
        job.signals.cancelled.connect(self._index_done)  # cancelled while waiting for another process's run
        self._index_job = job
        self.progress_label.setText(f"Indexing {folder.name}: scanning…")
        if not self.grid_model.results:  # not "Loading the model…" for the whole run once the model is there
            self.grid.set_placeholder("Indexing… the neighbours appear when it finishes.")
        self.folder_info.setText(f"<b>Indexing…</b><br><small>{folder}</small>")
        self._show_indexing(True, busy=True)
        self.index_runner.start(job)

    def _offer_to_continue(self, session: RetrievalSession, folder: Path) -> None:
        """At launch, a folder whose last run was cancelled (a huge folder picked by mistake, say) is searched as far
        as it is indexed, and its indexing is offered, not restarted by itself."""
        self._index_wanted = False
        self._show_indexing(False)
        job = Job(f"open {folder}", lambda _job: searchable_now(session, folder))
        job.signals.finished.connect(self._index_finished)
        job.signals.failed.connect(self._index_failed)
        self._index_job = job
        self.index_runner.start(job)

    def cancel(self) -> None:
        """Stop indexing after the batch in flight (work done so far is kept), and metrics in progress."""
        stopped = False
        if self._index_job is None and self._index_wanted:  # asked for while the model loads: it will not start
            self._index_wanted = False
            self._index_declined = True
            self._show_indexing(False)
            self.statusBar().showMessage("Indexing will not start. Re-index (Ctrl+R) starts it.", 10000)
            return
        if self._index_job is not None:
            self._index_job.cancel()
            self._index_wanted = False
            self.progress_label.setText("Cancelling…")
            stopped = True
        if self._recall_job is not None:
            self._recall_job.cancel()
            stopped = True
        if not stopped:
            self.statusBar().clearMessage()

    @property
    def summary(self) -> IndexSummary | None:
        """The last finished indexing run of the current folder (None before one finished)."""
        return self._summary

    @property
    def indexing(self) -> bool:
        return self._index_job is not None

    def _show_indexing(self, on: bool, busy: bool = False) -> None:
        for w in (self.progress_label, self.progress_bar, self.cancel_button):
            w.setVisible(on)
        if busy:
            self.progress_bar.setRange(0, 0)
        can_reindex = not on and self.folder is not None
        self.reindex_button.setEnabled(can_reindex)
        if hasattr(self, "reindex_action"):
            self.reindex_action.setEnabled(can_reindex)

    def _index_progress(self, job: Job, progress: Progress) -> None:
        if job is not self._index_job:
            return
        cancelling = "Cancelling… " if job.cancelled() else ""
        if progress.total <= 0:  # still scanning the folder: how many there are is not known yet
            self.progress_bar.setRange(0, 0)
            self.progress_label.setText(f"{cancelling}Scanning the folder · {progress.done:,} images found")
            self.indexProgress.emit(progress)
            return
        self.progress_bar.setRange(0, max(1, progress.total))
        self.progress_bar.setValue(progress.done)
        eta = format_time_left(progress.seconds_left)
        self.progress_label.setText(
            f"{cancelling}Embedding {progress.done:,}/{progress.total:,} · {progress.rate:.1f} images/s"
            + (f" · {eta}" if eta else "")
        )
        self.indexProgress.emit(progress)

    def _index_done(self, job: Job) -> bool:
        """Common end of a run; False if the job was superseded."""
        if job is not self._index_job:
            return False
        self._index_job = None
        self._show_indexing(False)
        return True

    def _index_finished(self, job: Job, summary: IndexSummary) -> None:
        if not self._index_done(job) or self._closing:
            return
        if summary.folder != self.folder or self._index_wanted:
            self.reindex()  # the folder or model changed meanwhile
            return
        self._summary = summary
        report = summary.report
        self._set_skipped(report.skipped)
        self._update_stats()
        self._important_until = time.monotonic() + 12.0  # not overwritten by the query that follows at once
        if summary.resumable:
            message = (
                f"Indexing of {summary.folder.name} was cancelled last time: {summary.count:,} images searchable. "
                "Re-index (Ctrl+R) continues where it stopped."
            )
            self.statusBar().showMessage(message, 0)
            self.folder_info.setText(f"<b>Partly indexed</b> (cancelled)<br><small>{summary.folder}</small>")
        elif report.cancelled:
            self.statusBar().showMessage(
                f"Indexing cancelled: {summary.count:,} images searchable so far. Re-index (Ctrl+R) resumes.", 15000
            )
        else:
            self.statusBar().showMessage(
                f"Indexed {summary.folder.name}: {report.embedded:,} new, {report.unchanged:,} unchanged, "
                f"{report.removed:,} removed, {len(report.skipped):,} skipped ({summary.seconds:.1f} s)."
                + (
                    f" {report.kept_offline:,} kept that cannot be seen now (is the drive connected?)."
                    if report.kept_offline
                    else ""
                ),
                10000,
            )
        self.indexFinished.emit(summary)
        if self._query_source is not None:
            self._invalidate_query()
        else:
            self._clear_results()
        if not report.cancelled:
            self._start_recall(summary)

    def _index_failed(self, job: Job, message: str) -> None:
        if not self._index_done(job):
            return
        self.statusBar().showMessage(f"Indexing failed: {message}", 20000)
        self.folder_info.setText(f"<span style='color:#b00020'>Indexing failed: {message}</span>")
        if self._index_wanted:
            self.reindex()

    def _set_skipped(self, skipped: list[Any]) -> None:
        self.skipped_table.set_rows([(s.relpath, s.reason) for s in skipped])
        self.skipped_button.setText(f"{len(skipped):,} skipped")
        self.skipped_button.setToolTip("Files that could not be indexed, with the reason (Ctrl+K)")
        self.skipped_button.setVisible(bool(skipped))
        self.skipped_dock.setWindowTitle(f"Skipped files ({len(skipped):,})")

    def skipped_files(self) -> list[tuple[str, str]]:
        """(file, reason) rows as listed in the skipped-files panel."""
        return self.skipped_table.rows()

    def show_skipped(self) -> None:
        self.skipped_dock.show()
        self.skipped_dock.raise_()

    def _update_stats(self) -> None:
        model = self.session.card.name if self.session is not None else "model loading"
        if self._summary is None:
            self.stats_label.setText(model)
            return
        s = self._summary
        skipped = len(s.report.skipped)
        partial = " (partial)" if s.cancelled else ""
        self.stats_label.setText(f"{s.count:,} images{partial} · {model}")
        link = f" · <a href='skipped'>{skipped:,} skipped</a>" if skipped else ""
        classes = " · labelled" if s.labelled else ""
        self.folder_info.setText(
            f"<b>{s.count:,}</b> images indexed{partial}{link}{classes}<br><small>{s.folder}</small>"
        )

    # ================================================================================== folder metrics
    def _start_recall(self, summary: IndexSummary) -> None:
        if self.session is None:
            return
        if not summary.labelled:
            self._set_recall(None, "Recall@K needs a labelled folder: one sub-folder per class, two or more.")
            self.recallFinished.emit(None)
            return
        key = (str(summary.folder), self.session.fingerprint)
        if key == self._recall_key and not summary.changed and self._recall[0] is not None:
            return
        if self._recall_job is not None:
            self._recall_job.cancel()
        session, folder = self.session, summary.folder
        dims = list(session.card.nested_dims)

        def work(job: Job) -> RecallTable | None:
            snapshot = session.collection(folder).snapshot
            return folder_recall(
                snapshot.embeddings, snapshot.relpaths, dims, check=job.check, progress=lambda i, n: job.report((i, n))
            )

        job = Job("recall", work)
        job.signals.progress.connect(self._recall_progress)
        job.signals.finished.connect(self._recall_finished)
        job.signals.failed.connect(lambda j, msg: self._recall_done(j, None, f"Recall@K failed: {msg}"))
        job.signals.cancelled.connect(lambda j: self._recall_done(j, None, "Recall@K was cancelled."))
        self._recall_job = job
        self._recall_key = key
        self._set_recall(None, "Computing Recall@K for this folder…")
        self.analysis_runner.start(job)

    def _recall_progress(self, job: Job, payload: tuple[int, int]) -> None:
        if job is self._recall_job:
            self._set_recall(None, f"Computing Recall@K for this folder… ({payload[0]}/{payload[1]} dimensions)")

    def _recall_finished(self, job: Job, table: RecallTable | None) -> None:
        self._recall_done(job, table, "" if table is not None else "The folder is not labelled.")

    def _recall_done(self, job: Job, table: RecallTable | None, message: str) -> None:
        if job is not self._recall_job:
            return
        self._recall_job = None
        if table is None:
            self._recall_key = None
        self._set_recall(table, message)
        self.recallFinished.emit(table)

    def _set_recall(self, table: RecallTable | None, message: str) -> None:
        self._recall = (table, message)
        if self.dims is not None:
            self.dims.show_recall(*self._recall_or_reason())

    def _recall_or_reason(self) -> tuple[RecallTable | None, str]:
        table, message = self._recall
        if table is None and not message:
            message = "Recall@K per dimension appears here for a labelled folder (one sub-folder per class)."
        return table, message

    # ================================================================================== queries
    def choose_query_file(self) -> None:
        start = str(self.folder) if self.folder else str(pictures_folder())
        name, _ = QFileDialog.getOpenFileName(
            self,
            "Open a query image",
            start,
            "Images (*.jpg *.jpeg *.png *.webp *.bmp *.gif *.tif *.tiff *.heic);;All files (*)",
        )
        if name:
            self.set_query_path(Path(name))

    def paste_query(self) -> None:
        self.query_area.paste()

    def set_query_path(self, path: Path) -> None:
        path = Path(path)
        self._set_source(path, path.name)
        pixmap = self.thumbnails.get(path, QUERY_THUMB)
        self.query_area.show_query(pixmap, path.name)

    def set_query_image(self, image: QImage) -> None:
        label = f"pasted image {image.width()}×{image.height()}"
        self._set_source(QImage(image), label)
        self.query_area.show_query(QPixmap.fromImage(image), label)

    def _set_source(self, source: Path | QImage, label: str) -> None:
        if self.outcome is not None and self._query_source is not None:  # kept if the new one cannot be read
            self._previous_query = (self._query_source, self._query_label, self._embedding)
        self._query_source = source
        self._query_label = label
        self._embedding = None
        self.queries.source_changed()
        self._schedule_query()

    def _thumbnail_ready(self, path: str) -> None:
        if isinstance(self._query_source, Path) and str(self._query_source) == path:
            pixmap = self.thumbnails.get(self._query_source, QUERY_THUMB)
            error = self.thumbnails.error(self._query_source)
            if pixmap is not None:
                self.query_area.show_query(pixmap, self._query_label)
            elif error:
                self.query_area.show_query(None, f"{self._query_label}\ncannot read: {error}")
                self.query_area.picture.setText("Cannot read this image")

    def _invalidate_query(self) -> None:
        self.queries.settings_changed()
        self._schedule_query()

    def _schedule_query(self) -> None:
        if self._query_source is None or self.session is None or self._closing:
            return
        session = self.session
        if self.queries.start(session) is None:
            return  # searched again with the latest state when the running one ends
        query: Any = self._embedding if self._embedding is not None else self._query_source
        # Search only a folder whose index is settled (see the module docstring); embed meanwhile.
        settled = self._index_job is None and self._summary is not None
        folder = self.folder if settled else None
        k = self.k_spin.value()
        dim = self.dim_combo.currentData()
        label = self._query_label
        query_path = self._query_source if isinstance(self._query_source, Path) else None

        def work(job: Job) -> QueryOutcome:
            q = qimage_to_pil(query) if isinstance(query, QImage) else query
            return run_query(session, q, folder, k, dim, label, check=job.check, query_path=query_path)

        job = Job("query", work)
        job.signals.finished.connect(self._query_finished)
        job.signals.failed.connect(self._query_failed)
        job.signals.cancelled.connect(self._query_ended)
        self._query_job = job
        if folder is None and self.folder is not None:
            self.grid.set_placeholder("Indexing… the neighbours appear when it finishes.")
        self.query_runner.start(job)

    def _query_ended(self, job: Job) -> None:
        if job is self._query_job:
            self._query_job = None
            if self.queries.end():
                self._schedule_query()

    def _query_finished(self, job: Job, outcome: QueryOutcome) -> None:
        ticket = self.queries.running if job is self._query_job else None
        current = ticket is not None and self.queries.is_current(ticket)
        if ticket is not None and self.queries.same_image(ticket, self.session):
            self._embedding = outcome.embedding
        self._query_ended(job)
        if not current or self._closing:
            return
        self.outcome = outcome
        self._show_outcome(outcome)
        # The grid paints first; the plots follow on the next turn of the event loop, and only then is
        # the query reported finished (everything on screen).
        QTimer.singleShot(0, lambda: self._finish_showing(outcome))

    def _finish_showing(self, outcome: QueryOutcome) -> None:
        if outcome is not self.outcome or self._closing:
            return  # superseded meanwhile; the newer outcome reports itself
        self._show_analysis(outcome)
        self.queryFinished.emit(outcome)

    def _query_failed(self, job: Job, message: str) -> None:
        ticket = self.queries.running if job is self._query_job else None
        self._query_ended(job)
        if ticket is None or not self.queries.same_image(ticket):
            return
        failed_label, previous, self._previous_query = self._query_label, self._previous_query, None
        if previous is not None and self.outcome is not None:  # a mistaken drop does not wipe what was shown
            self._query_source, self._query_label, self._embedding = previous
            source = self._query_source
            pixmap = self.thumbnails.get(source, QUERY_THUMB) if isinstance(source, Path) else QPixmap.fromImage(source)
            self.query_area.show_query(pixmap, self._query_label)
            self.statusBar().showMessage(
                f"{failed_label} cannot be used as a query: {message}. The previous results stay.", 15000
            )
            self.queryFailed.emit(message)
            return
        self._query_source = None
        self.outcome = None
        self.query_area.show_query(None, f"{self._query_label}\ncannot be read: {message}")
        self.query_area.picture.setText("Cannot read this image")
        self._clear_results("The query image could not be read.")
        self.statusBar().showMessage(f"Cannot use {self._query_label} as a query: {message}", 10000)
        self.queryFailed.emit(message)

    def _show_outcome(self, outcome: QueryOutcome) -> None:
        binary = bool(self.ranking_combo.currentData())
        ranking = outcome.ranking(binary)
        if ranking is None:
            self.grid_model.set_results([])
            if self.folder is None:
                self.grid.set_placeholder("Click here to choose a folder to search in (Ctrl+Shift+O).")
            elif self._index_job is not None:
                self.grid.set_placeholder("Indexing… the neighbours appear when it finishes.")
            else:
                self.grid.set_placeholder("Nothing is indexed in this folder.")
        else:
            self.grid_model.set_results(ranking.results)
            self.grid.set_placeholder(self._no_results_text() if not ranking.results else "")
            kind = "binary (Hamming)" if binary else "float (cosine)"
            note = f" Note: {outcome.notes[-1]}." if outcome.notes else ""
            if self._important_until > time.monotonic() and not note:
                return  # an indexing outcome is still on show: the query's timing can wait
            self.statusBar().showMessage(
                f"{len(ranking.results)} neighbours of {outcome.label}, {kind} ranking at {outcome.dim}-d, "
                f"in {outcome.seconds * 1000:.0f} ms.{note}",
                20000 if note else 8000,
            )

    def _no_results_text(self) -> str:
        """Why a search found nothing: no picture of the folder could be indexed (and why), or there is no other."""
        summary = self._summary
        if summary is not None and summary.count == 0:
            skipped = len(summary.report.skipped)
            if skipped:
                return f"No picture in this folder could be indexed: {skipped:,} files skipped (the list: Ctrl+K)."
            return "This folder holds no pictures (JPEG, PNG, HEIC, WebP, TIFF, BMP or GIF files)."
        return "The folder holds no other pictures than the query."

    def _show_analysis(self, outcome: QueryOutcome) -> None:
        """The plots and dimension strips of an outcome (they do not depend on the ranking shown)."""
        if self.plots is not None:
            self.plots.show_outcome(outcome)
        if self.dims is not None:
            self.dims.show_outcome(outcome)

    def _clear_results(self, placeholder: str = "") -> None:
        self.outcome = None
        self.grid_model.set_results([])
        if placeholder:
            self.grid.set_placeholder(placeholder)
        elif self.folder is not None:
            self.grid.set_placeholder(
                "Drop a query image on the left, paste one (Ctrl+V), or click here to open one (Ctrl+O)."
            )
        if self.plots is not None:
            self.plots.clear()
        if self.dims is not None:
            self.dims.clear_query()

    def _k_changed(self, value: int) -> None:
        self.settings.k = value
        self._invalidate_query()

    def _dim_changed(self, _index: int) -> None:
        dim = self.dim_combo.currentData()
        if dim is None or self.session is None:
            return
        self.settings.dim = None if dim == self.session.card.dim else int(dim)
        self._invalidate_query()

    def _ranking_changed(self, _index: int) -> None:
        self.settings.binary = bool(self.ranking_combo.currentData())
        if self.outcome is not None:
            self._show_outcome(self.outcome)

    # ================================================================================== results
    def preview(self, result: SearchResult) -> None:
        dialog = PreviewDialog(result, self.previews, self)
        dialog.queryRequested.connect(self.set_query_path)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.show()

    def current_ranking(self) -> Any:
        if self.outcome is None:
            return None
        return self.outcome.ranking(bool(self.ranking_combo.currentData()))

    def copy_result_paths(self) -> None:
        ranking = self.current_ranking()
        if ranking is not None and ranking.results:
            copy_paths([r.path for r in ranking.results])
            self.statusBar().showMessage(f"Copied {len(ranking.results)} paths.", 4000)

    def choose_export(self) -> None:
        ranking = self.current_ranking()
        if ranking is None or not ranking.results:
            self.statusBar().showMessage("Nothing to export yet: run a query first.", 5000)
            return
        stem = Path(self.outcome.label if self.outcome else "results").stem or "results"
        start = str((self.folder or pictures_folder()) / f"neighbours-of-{stem}.csv")
        name, chosen = QFileDialog.getSaveFileName(self, "Export the ranking", start, "CSV (*.csv);;JSON (*.json)")
        if name:
            path = Path(name)
            if not path.suffix:
                path = path.with_suffix(".json" if "json" in chosen.lower() else ".csv")
            self.export_results(path)

    def export_results(self, path: Path) -> Path | None:
        """Write the ranking the grid shows to `path` (.json as JSON, else CSV)."""
        ranking = self.current_ranking()
        if ranking is None or self.outcome is None or self.folder is None:
            return None
        model = self.session.card.name if self.session is not None else ""
        query = str(self._query_source) if isinstance(self._query_source, Path) else self.outcome.label
        try:
            written = export_ranking(path, ranking, ExportContext(query, self.folder, model))
        except OSError as exc:
            QMessageBox.warning(self, APP_TITLE, f"Cannot write {path}:\n{exc}")
            return None
        self.statusBar().showMessage(f"Exported {len(ranking.results)} results to {written}", 8000)
        return written

    # ================================================================================== help
    def show_shortcuts(self) -> None:
        html = "".join(f"<tr><td><b>{k}</b>&nbsp;&nbsp;</td><td>{v}</td></tr>" for k, v in shortcut_rows())
        QMessageBox.information(self, "Keyboard shortcuts", f"<table>{html}</table>")

    def show_about(self) -> None:
        QMessageBox.about(
            self,
            f"About {APP_TITLE}",
            f"<b>{APP_TITLE}</b><p>Image retrieval with deep metric learning: NormSoftmax embeddings, "
            "their binary codes and nested dimensions, on your own folders.</p>"
            f"<p><small>Indexes: {cache_root()}<br>Fine-tuned models and training runs: {data_root()}<br>"
            f"What went wrong, with details: {log_file()}</small></p>",
        )

    # ================================================================================== shutdown
    def shutdown(self, wait_ms: int = 30_000) -> None:
        """Cancel background work and wait for it (so no job outlives the window)."""
        self._closing = True
        for runner in (self.index_runner, self.query_runner, self.analysis_runner):
            runner.cancel_all()
        for cache in (self.thumbnails, self.previews):
            cache.cancel_pending()
        for runner in (self.index_runner, self.query_runner, self.analysis_runner, self.model_runner):
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
