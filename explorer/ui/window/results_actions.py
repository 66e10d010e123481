"""The window's results side: the grid and plots for an answer, previews, copy and export, help.

A mixin of `MainWindow` (it reads the window's widgets and controller): what the person does with results is
kept apart from how the window is built and how a folder gets indexed.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import QFileDialog, QMessageBox

from explorer.app.actions import shortcut_rows
from explorer.app.export import ExportContext, export_ranking
from explorer.engine.multi_query import within
from explorer.paths import cache_root, data_root, log_file, pictures_folder
from explorer.ui.results_view import PreviewDialog, copy_paths
from explorer.ui.window.part import APP_TITLE, QUERY_THUMB, WindowPart

if TYPE_CHECKING:
    from explorer.app.analysis import QueryOutcome
    from explorer.engine.search import Ranking, SearchResult


class ResultsActions(WindowPart):
    # provided by MainWindow
    grid: Any
    grid_model: Any
    plots: Any
    map_panel: Any
    sidebar: Any
    tabs: Any
    ranking_combo: Any
    k_spin: Any
    query_area: Any
    thumbnails: Any
    previews: Any
    queryFinished: Any
    queryFailed: Any
    _closing: bool

    # -- answers from the controller -----------------------------------------------------------------------
    def query_answered(self, outcome: QueryOutcome) -> None:
        self._show_outcome(outcome)
        # The grid paints first; the plots follow on the next turn of the event loop, and only then is the query
        # reported finished (everything on screen).
        QTimer.singleShot(0, lambda: self._finish_showing(outcome))

    def _finish_showing(self, outcome: QueryOutcome) -> None:
        if outcome is not self.controller.outcome or self._closing:
            return  # superseded meanwhile; the newer outcome reports itself
        self._show_analysis(outcome)
        self.queryFinished.emit(outcome)

    def query_failed(self, label: str, message: str, restored: bool) -> None:
        if restored:  # a mistaken drop does not wipe what was shown
            source = self.controller.source
            pixmap = self.thumbnails.get(source, QUERY_THUMB) if isinstance(source, Path) else QPixmap.fromImage(source)
            self.query_area.show_query(pixmap, self.controller.label)
            self._window.statusBar().showMessage(
                f"{label} cannot be used as a query: {message}. The previous results stay.", 15000
            )
        else:
            self.query_area.show_query(None, f"{label}\ncannot be read: {message}")
            self.query_area.picture.setText("Cannot read this image")
            self._window.statusBar().showMessage(f"Cannot use {label} as a query: {message}", 10000)
        self.queryFailed.emit(message)

    def results_cleared(self, placeholder: str) -> None:
        self.grid_model.set_results([])
        if placeholder:
            self.grid.set_placeholder(placeholder)
        if self.plots is not None:
            self.plots.clear()
        if self.dims is not None:
            self.dims.clear_query()

    def placeholder(self, text: str) -> None:
        self.grid.set_placeholder(text)

    def _show_outcome(self, outcome: QueryOutcome) -> None:
        binary = bool(self.ranking_combo.currentData())
        ranking = outcome.ranking(binary)
        if ranking is None:
            self.grid_model.set_results([])
            self.grid.set_placeholder(self.controller.empty_ranking_text(searched=False))
            return
        limit = self.sidebar.cutoff.value() or None  # 0: no limit
        shown = within(ranking.results, limit, binary=False)
        self.grid_model.set_results(shown)
        if ranking.results and not shown:
            self.grid.set_placeholder(f"Nothing here is within cosine distance {limit:.2f} of the query.")
        else:
            self.grid.set_placeholder(self.controller.empty_ranking_text(searched=True) if not shown else "")
        ranking = replace(ranking, results=shown)
        kind = "binary (Hamming)" if binary else "float (cosine)"
        note = f" Note: {outcome.notes[-1]}." if outcome.notes else ""
        if self._important_until > time.monotonic() and not note:
            return  # an indexing outcome is still on show: the query's timing can wait
        self._window.statusBar().showMessage(
            f"{len(ranking.results)} neighbours of {outcome.label}, {kind} ranking at {outcome.dim}-d, "
            f"in {outcome.seconds * 1000:.0f} ms.{note}",
            20000 if note else 8000,
        )

    def _show_analysis(self, outcome: QueryOutcome) -> None:
        """The plots and dimension strips of an outcome (they do not depend on the ranking shown)."""
        if self.plots is not None:
            self.plots.show_outcome(outcome)
        if self.dims is not None:
            self.dims.show_outcome(outcome)
        if self.map_panel is not None:
            source = self.controller.source
            self.map_panel.show_outcome(outcome, source if isinstance(source, Path) else None)

    # -- what the person does with results ------------------------------------------------------------------
    def preview(self, result: SearchResult) -> None:
        dialog = PreviewDialog(result, self.previews, self._window)
        dialog.queryRequested.connect(self._window.set_query_path)  # type: ignore[attr-defined]
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.show()

    def current_ranking(self) -> Ranking | None:
        outcome = self.controller.outcome
        return None if outcome is None else outcome.ranking(bool(self.ranking_combo.currentData()))

    def copy_result_paths(self) -> None:
        ranking = self.current_ranking()
        if ranking is not None and ranking.results:
            copy_paths([r.path for r in ranking.results])
            self._window.statusBar().showMessage(f"Copied {len(ranking.results)} paths.", 4000)

    def choose_export(self) -> None:
        ranking = self.current_ranking()
        if ranking is None or not ranking.results:
            self._window.statusBar().showMessage("Nothing to export yet: run a query first.", 5000)
            return
        outcome = self.controller.outcome
        stem = Path(outcome.label if outcome else "results").stem or "results"
        start = str((self.controller.folder or pictures_folder()) / f"neighbours-of-{stem}.csv")
        name, chosen = QFileDialog.getSaveFileName(
            self._window,
            "Export the ranking",
            start,
            "CSV (*.csv);;JSON (*.json)",
        )
        if name:
            path = Path(name)
            if not path.suffix:
                path = path.with_suffix(".json" if "json" in chosen.lower() else ".csv")
            self.export_results(path)

    def export_results(self, path: Path) -> Path | None:
        """Write the ranking the grid shows to `path` (.json as JSON, else CSV)."""
        c = self.controller
        ranking = self.current_ranking()
        if ranking is None or c.outcome is None or c.folder is None:
            return None
        model = c.session.card.name if c.session is not None else ""
        query = str(c.source) if isinstance(c.source, Path) else c.outcome.label
        try:
            written = export_ranking(path, ranking, ExportContext(query, c.folder, model))
        except OSError as exc:
            QMessageBox.warning(self._window, APP_TITLE, f"Cannot write {path}:\n{exc}")
            return None
        self._window.statusBar().showMessage(f"Exported {len(ranking.results)} results to {written}", 8000)
        return written

    # -- small slots the action table names ------------------------------------------------------------------
    def show_tab(self, index: int) -> None:
        self.tabs.setCurrentIndex(index)

    def show_ranking(self, index: int) -> None:
        self.ranking_combo.setCurrentIndex(index)

    def step_neighbours(self, step: int) -> None:
        self.k_spin.stepBy(step)

    def show_shortcuts(self) -> None:
        html = "".join(f"<tr><td><b>{k}</b>&nbsp;&nbsp;</td><td>{v}</td></tr>" for k, v in shortcut_rows())
        QMessageBox.information(self._window, "Keyboard shortcuts", f"<table>{html}</table>")

    def show_about(self) -> None:
        QMessageBox.about(
            self._window,
            f"About {APP_TITLE}",
            f"<b>{APP_TITLE}</b><p>Image retrieval with deep metric learning: NormSoftmax embeddings, "
            "their binary codes and nested dimensions, on your own folders.</p>"
            f"<p><small>Indexes: {cache_root()}<br>Fine-tuned models and training runs: {data_root()}<br>"
            f"What went wrong, with details: {log_file()}</small></p>",
        )
