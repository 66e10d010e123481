"""What the window controller (explorer.app.window_controller) asks of its view, without Qt: the window
(explorer.ui.window.MainWindow) is one, and the tests' recording view is another."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from explorer.app.analysis import IndexSummary, QueryOutcome, RecallTable
    from explorer.app.collection_map import MapLayout
    from explorer.app.library_controller import LibraryRow
    from explorer.engine.session import RetrievalSession
    from trainer.progress import Progress


class WindowView(Protocol):
    """What the controller asks of the window; every call comes on the controller's (the GUI) thread."""

    def model_loading(self) -> None: ...
    def model_ready(self, session: RetrievalSession) -> None: ...
    def model_failed(self, message: str, path: Path | None) -> None: ...
    def folder_opened(self, folder: Path) -> None: ...
    def indexing_progress(self, text: str, progress: Progress | None) -> None:
        """Indexing runs (or waits for the model); `progress` None or of total 0: how much is not known yet."""

    def indexing_ended(self) -> None: ...
    def index_finished(self, summary: IndexSummary, message: str, timeout_ms: int) -> None: ...
    def index_failed(self, message: str) -> None: ...
    def recall_changed(self, table: RecallTable | None, message: str, final: bool) -> None:
        """Recall@K of the folder, or why there is none (yet); `final`: no more is coming for this folder."""

    def results_cleared(self, placeholder: str) -> None:
        """No results are shown; `placeholder` (when not empty) is what the empty grid says."""

    def placeholder(self, text: str) -> None:
        """What the grid says while it is empty (results on show stay)."""

    def query_answered(self, outcome: QueryOutcome) -> None: ...
    def query_failed(self, label: str, message: str, restored: bool) -> None:
        """The query could not be used; `restored`: the previous query and its results are back."""

    def status(self, message: str, timeout_ms: int) -> None: ...
    def library_changed(self, rows: list[LibraryRow], searching: bool) -> None: ...
    def map_changed(self, layout: MapLayout | None, message: str) -> None:
        """The folder's map (explorer.app.collection_map), or why there is none (yet)."""
