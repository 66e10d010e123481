"""The window's model and folder side: choosing them, the index's progress and outcome, Recall@K.

A mixin of `MainWindow` (it reads the window's widgets, settings and controller), as `ResultsActions` is for the
results side; the rules themselves are the controller's (explorer.app.window_controller).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtWidgets import QFileDialog, QMessageBox

from explorer.paths import pictures_folder
from explorer.ui.widgets import LAST, refill_combo
from explorer.ui.window.part import APP_TITLE, WindowPart
from trainer.card import model_paths

if TYPE_CHECKING:
    from explorer.app.analysis import IndexSummary, QueryOutcome, RecallTable
    from explorer.app.collection_map import MapLayout
    from explorer.engine.session import RetrievalSession
    from trainer.progress import Progress


def model_files_exist(path: Path) -> bool:
    """Both files of a model (trainer.card.model_paths: the one place that knows the layout)."""
    return all(p.exists() for p in model_paths(path))


class FolderActions(WindowPart):
    # provided by MainWindow
    settings: Any
    strip: Any
    sidebar: Any
    skipped_table: Any
    skipped_dock: Any
    recent_menu: Any
    dim_combo: Any
    model_label: Any
    folder_info: Any
    folder_combo: Any
    reindex_button: Any
    stats_label: Any
    sessionReady: Any
    indexProgress: Any
    indexFinished: Any
    recallFinished: Any
    mapChanged: Any

    # -- what the rest of the app and the tests read -----------------------------------------------------------
    @property
    def session(self) -> RetrievalSession | None:
        return self.controller.session

    @property
    def folder(self) -> Path | None:
        return self.controller.folder

    @property
    def summary(self) -> IndexSummary | None:
        """The last finished indexing run of the current folder (None before one finished)."""
        return self.controller.summary

    @property
    def indexing(self) -> bool:
        return self.controller.indexing

    @property
    def outcome(self) -> QueryOutcome | None:
        return self.controller.outcome

    @property
    def model_path(self) -> Path | None:
        return self.controller.model_path

    # -- the model ----------------------------------------------------------------------------------------------
    def choose_model(self) -> None:
        start = str(self.model_path.parent) if self.model_path else str(pictures_folder())
        name, _ = QFileDialog.getOpenFileName(self._window, "Choose a model", start, "Models (*.safetensors *.json)")
        if name:
            self.set_model(Path(name))

    def use_bundled_model(self) -> None:
        self.set_model(None)

    def set_model(self, path: Path | None) -> None:
        """Switch models: a new session, and the folder indexed again under it (catalogs are per model)."""
        if path is not None and not model_files_exist(path):
            QMessageBox.warning(
                self._window, APP_TITLE, f"{path} needs both a .safetensors and a .json file beside it."
            )
            return
        self.settings.model_path = path
        self.controller.set_model(path)

    def fine_tune(self) -> None:
        """Open the fine-tune wizard (one at a time, non-modal: searching goes on meanwhile). It starts on the open
        folder when that is labelled; its "Use it now" switches this window to the new model (`set_model`)."""
        from shiboken6 import isValid

        from explorer.ui.wizard import FineTuneWizard

        wizard = getattr(self, "fine_tune_wizard", None)
        if wizard is None or not isValid(wizard) or not wizard.isVisible():
            labelled = self.summary is not None and self.summary.labelled
            wizard = FineTuneWizard(self._window, folder=self.folder if labelled else None)
            wizard.modelReady.connect(self.set_model)
            self.fine_tune_wizard = wizard
        wizard.show()
        wizard.raise_()
        wizard.activateWindow()

    def model_loading(self) -> None:
        path = self.controller.model_path
        if path is not None and not model_files_exist(path):
            self._window.statusBar().showMessage(f"Model {path} is gone; using the bundled model.", 8000)
            self.controller.model_path = self.settings.model_path = None
        self.dim_combo.setEnabled(False)
        self.model_label.setText("Loading the model…")

    def model_ready(self, session: RetrievalSession) -> None:
        card = session.card
        trained = "" if card.trained else " <span style='color:#b36b00'>(untrained)</span>"
        where = "bundled" if self.model_path is None else str(self.model_path)
        runtime = f"<br>{session.runtime}" if session.runtime else ""
        self.model_label.setText(f"<b>{card.name}</b>{trained}<br><small>{card.dim}-d · {where}{runtime}</small>")
        notes = "".join(f"\n\nNote: {n}" for n in session.notes)
        self.model_label.setToolTip(card.description + notes)
        items = [(f"{d}  (full)" if d == card.dim else str(d), d) for d in card.nested_dims]
        refill_combo(self.dim_combo, items, keep=self.settings.dim or card.dim, fallback=LAST)
        self.dim_combo.setEnabled(True)
        self.controller.dim = self.dim_combo.currentData()
        if self.dims is not None:
            self.dims.set_dims(list(card.nested_dims))
        self._update_stats()
        self.sessionReady.emit(session)

    def model_failed(self, message: str, path: Path | None) -> None:
        self.model_label.setText(f"<span style='color:#b00020'>Cannot load the model: {message}</span>")
        if path is not None:
            QMessageBox.warning(self._window, APP_TITLE, f"Cannot load {path}:\n{message}\n\nUsing the bundled model.")
            self.settings.model_path = None

    # -- folders and indexing -------------------------------------------------------------------------------------
    def choose_folder(self) -> None:
        start = str(self.folder) if self.folder else str(pictures_folder())
        name = QFileDialog.getExistingDirectory(self._window, "Choose a folder of images", start)
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
        return lambda: self.open_folder(folder)

    def open_folder(self, folder: Path, at_launch: bool = False) -> None:
        """Search in `folder`: remember it, and bring its index up to date in the background."""
        folder = Path(folder).expanduser()
        if not folder.is_dir():
            self._window.statusBar().showMessage(f"Not a folder: {folder}", 8000)
            self.settings.forget_folder(folder)
            self._refresh_folder_combo()
            return
        folder = folder.resolve()
        self.settings.remember_folder(folder)
        self.controller.open_folder(folder, at_launch)

    def folder_opened(self, folder: Path) -> None:
        self._refresh_folder_combo()
        self._window.setWindowTitle(f"{folder.name} — {APP_TITLE}")
        self._set_skipped([])
        self.skipped_dock.hide()  # another folder's list: not left open and empty
        self.folder_info.setText(f"<small>{folder}</small>")

    def reindex(self) -> None:
        self.controller.reindex()

    def cancel(self) -> None:
        self.controller.cancel()

    def indexing_progress(self, text: str, progress: Progress | None) -> None:
        if progress is None:
            self.strip.show_progress(text, 0, 0)
        else:
            self.strip.show_progress(text, progress.done, progress.total)
        if self.controller.indexing and progress is None:
            self.folder_info.setText(f"<b>Indexing…</b><br><small>{self.folder}</small>")
        self._reindex_enabled(False)
        if progress is not None:
            self.indexProgress.emit(progress)

    def indexing_ended(self) -> None:
        self.strip.show_indexing(False)
        self._reindex_enabled(self.folder is not None)

    def _reindex_enabled(self, on: bool) -> None:
        self.reindex_button.setEnabled(on)
        if hasattr(self, "reindex_action"):
            self.reindex_action.setEnabled(on)

    def index_finished(self, summary: IndexSummary, message: str, timeout_ms: int) -> None:
        self._set_skipped(summary.report.skipped)
        self._update_stats()
        self._important_until = time.monotonic() + 12.0  # not overwritten by the query that follows at once
        self._window.statusBar().showMessage(message, timeout_ms)
        if summary.resumable:
            self.folder_info.setText(f"<b>Partly indexed</b> (cancelled)<br><small>{summary.folder}</small>")
        self.indexFinished.emit(summary)

    def index_failed(self, message: str) -> None:
        self._window.statusBar().showMessage(f"Indexing failed: {message}", 20000)
        self.folder_info.setText(f"<span style='color:#b00020'>Indexing failed: {message}</span>")

    def _set_skipped(self, skipped: list[Any]) -> None:
        self.skipped_table.set_rows([(s.relpath, s.reason) for s in skipped])
        self.strip.show_skipped(len(skipped))
        self.skipped_dock.setWindowTitle(f"Skipped files ({len(skipped):,})")

    def skipped_files(self) -> list[tuple[str, str]]:
        """(file, reason) rows as listed in the skipped-files panel."""
        return self.skipped_table.rows()

    def show_skipped(self) -> None:
        self.skipped_dock.show()
        self.skipped_dock.raise_()

    def _update_stats(self) -> None:
        model = self.session.card.name if self.session is not None else "model loading"
        s = self.summary
        if s is None:
            self.stats_label.setText(model)
            return
        skipped = len(s.report.skipped)
        partial = " (partial)" if s.cancelled else ""
        self.stats_label.setText(f"{s.count:,} images{partial} · {model}")
        link = f" · <a href='skipped'>{skipped:,} skipped</a>" if skipped else ""
        classes = " · labelled" if s.labelled else ""
        self.folder_info.setText(
            f"<b>{s.count:,}</b> images indexed{partial}{link}{classes}<br><small>{s.folder}</small>"
        )

    def map_changed(self, layout: MapLayout | None, message: str) -> None:
        panel = getattr(self, "map_panel", None)
        if panel is not None:
            panel.show_layout(layout, message)
        self.mapChanged.emit(layout)

    def recall_changed(self, table: RecallTable | None, message: str, final: bool) -> None:
        if self.dims is not None:
            self.dims.show_recall(table, message)
        if final:
            self.recallFinished.emit(table)

    def status(self, message: str, timeout_ms: int) -> None:
        if message:
            self._window.statusBar().showMessage(message, timeout_ms)
        else:
            self._window.statusBar().clearMessage()
