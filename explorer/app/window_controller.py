"""The explorer window's rules, without Qt: which model, which folder, its index, its Recall@K, and the query.

`WindowController` owns the state and the background work (through an explorer.app.jobs.Executor) and tells a
`WindowView` what to show; `explorer.ui.window.MainWindow` is that view, and tests drive the controller with an
`InlineExecutor` and a recording view, without a display. The rules:

* One model session at a time, built in a worker (building it imports torch). Anything asked for before it is
  ready is done when it is.
* One indexing run at a time, started whenever a folder is chosen (incremental: an indexed folder costs a scan).
  Queries on that folder wait for the run to end: the engine reloads the folder's collection at its end, and
  searching it meanwhile would race that reload. At launch, a folder whose last run was cancelled is searched as
  far as it is indexed and its indexing is offered, not restarted by itself.
* Queries are coalesced (explorer.app.query_state): while one runs, changes of k, dimension or image only mark it
  stale and the latest state is searched when it ends. The query's embedding is kept, so a new k or dimension
  re-searches without the model. A query that cannot be read leaves the previous results as they were.
* Recall@K of a labelled folder is computed once per (folder, model) and again when the folder changed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from explorer.app import analysis, library_query
from explorer.app.collection_map import CollectionMap
from explorer.app.folder_recall import FolderRecall
from explorer.app.jobs import Executor, LatestJob, Reply, Task
from explorer.app.library_controller import LibraryController, Watcher
from explorer.app.query_examples import Example, answer_with_examples, examples_label
from explorer.app.query_state import QueryCoalescer
from explorer.app.window_texts import (
    DROP_A_QUERY,
    INDEXING,
    NO_FOLDER,
    index_outcome_text,
    indexing_text,
    no_results_text,
)
from explorer.app.window_view import WindowView

if TYPE_CHECKING:
    from explorer.app.analysis import IndexSummary, QueryOutcome, RecallTable
    from explorer.engine.library import LibraryStore
    from explorer.engine.session import RetrievalSession


EXPAND_NEIGHBOURS = 2  # query expansion's n, as bench/rerank.py measured it


@dataclass
class Engine:
    """The engine calls the controller makes, in workers (tests replace them)."""

    index_folder: Callable[..., IndexSummary] = analysis.index_folder
    searchable_now: Callable[..., IndexSummary] = analysis.searchable_now
    run_query: Callable[..., QueryOutcome] = analysis.run_query
    folder_recall: Callable[..., RecallTable | None] = analysis.folder_recall
    run_library_query: Callable[..., QueryOutcome] = library_query.run_library_query


class WindowController:
    """See the module docstring. `load_session(model_path)` builds a session (in a worker); `to_image` turns a
    query source that is not a path (a pasted picture) into what the engine embeds, also in a worker."""

    def __init__(
        self,
        view: WindowView,
        executor: Executor,
        load_session: Callable[[Path | None], RetrievalSession],
        engine: Engine | None = None,
        to_image: Callable[[Any], Any] = lambda source: source,
        watcher: Watcher | None = None,
        library_store: LibraryStore | None = None,
    ) -> None:
        self.view = view
        self.engine = engine or Engine()
        self.load_session = load_session
        self.to_image = to_image
        self.session_job = LatestJob(executor, "model")
        self.index_job = LatestJob(executor, "index")
        self.query_job = LatestJob(executor, "query")
        self.folder_recall = FolderRecall(executor, self.engine.folder_recall, view.recall_changed)
        self.collection_map = CollectionMap(executor, view.map_changed)
        self.session: RetrievalSession | None = None
        self.model_path: Path | None = None
        self.folder: Path | None = None
        self.summary: IndexSummary | None = None  # the last finished run of the current folder
        self.k = 10
        self.dim: int | None = None  # None: the model's full dimension
        self.expand = 0  # rank by query expansion with this many neighbours (0: off)
        self.index_wanted = False  # index the current folder as soon as possible
        self.index_declined = False  # Cancel pressed while the model loaded: no run starts by itself
        self.launch_folder: Path | None = None  # reopened at launch: a cancelled run there is offered
        self.queries = QueryCoalescer()
        self.source: Any = None  # the query: a Path, or a picture handed over by the window
        self.label = ""
        self.embedding: Any = None  # of the current source under the current session
        self.previous: tuple[Any, str, Any] | None = None  # restored when a new query cannot be used
        self.examples: list[Example] = []  # results added as "more / less like this" to the current query
        self.base_label = ""  # the query's own label, before its examples
        self.outcome: QueryOutcome | None = None
        self.closing = False
        self.library = LibraryController(
            view, executor, library_store, watcher, on_indexed=self._library_folder_indexed
        )

    # -- the model --------------------------------------------------------------------------------------------
    def start_session(self) -> None:
        """Load `model_path`'s session (the bundled model when None) in a worker."""
        self.session = None
        self.embedding = None
        self.view.model_loading()
        path, load = self.model_path, self.load_session
        self.session_job.start(
            "load model", lambda _task: load(path), Reply(done=self._session_loaded, failed=self._session_failed)
        )

    def set_model(self, path: Path | None) -> None:
        """Switch models: a new session, and the folder indexed again under it (catalogs are per model)."""
        self.model_path = path
        self.index_job.cancel()
        self.summary = None
        self.folder_recall.model_changed()
        self.collection_map.forget()  # another model places the images elsewhere: made again after the index
        self.view.map_changed(None, "The map is made again for the new model once the folder is indexed.")
        self.index_wanted = self.folder is not None
        self.queries.settings_changed()  # an answer from the old model must not be shown under the new one
        self.clear_results("Loading the model…")
        self.start_session()

    def _session_loaded(self, session: RetrievalSession) -> None:
        if self.closing:
            return
        self.session = session
        self.view.model_ready(session)
        self.library.set_session(session)
        self.library.sync_watches(self.folder)
        self.library.index_all(but=self.folder)  # what changed while the window was closed (or the model changed)
        launch, self.launch_folder = self.launch_folder, None
        if self.folder is not None and self.folder == launch and session.last_run_cancelled(self.folder):
            self._offer_to_continue(session, self.folder)
        elif self.folder is not None and not self.index_declined and (self.index_wanted or self.summary is None):
            self.reindex()
        if self.source is not None:
            self.schedule_query()  # embeds now; searches once the folder's index is settled

    def _session_failed(self, message: str) -> None:
        self.view.model_failed(message, self.model_path)
        if self.model_path is not None:
            self.set_model(None)

    # -- the folder and its index -----------------------------------------------------------------------------
    def open_folder(self, folder: Path, at_launch: bool = False) -> None:
        """Search in `folder` (an existing directory, resolved) and bring its index up to date."""
        self.folder = folder
        self.summary = None
        self.folder_recall.forget()
        self.collection_map.forget()
        if at_launch:
            self.launch_folder = folder
        self.view.folder_opened(folder)
        self.library.sync_watches(folder)
        self.view.recall_changed(None, "", False)
        self.clear_results("Indexing the folder…")
        self.reindex()

    def reindex(self) -> None:
        """Bring the current folder's index up to date (incremental; resumes a cancelled run)."""
        if self.folder is None:
            self.view.status("Choose a folder first (Ctrl+Shift+O).", 5000)
            return
        self.index_declined = False
        self.index_wanted = True
        if self.session is None:
            self.view.indexing_progress("Loading the model…", None)
            return
        if self.index_job.running:
            self.index_job.cancel()  # restarted for the current folder when it ends
            return
        self.index_wanted = False
        session, folder, engine = self.session, self.folder, self.engine

        def work(task: Task) -> IndexSummary:
            return engine.index_folder(session, folder, progress=task.report, cancel=task.cancelled)

        self.index_job.start(
            f"index {folder}",
            work,
            Reply(
                done=self._index_finished,
                failed=self._index_failed,
                cancelled=self._index_cancelled,  # while waiting for another process's run
                progress=lambda progress: self.view.indexing_progress(
                    indexing_text(folder.name, progress, self.index_job.stopping), progress
                ),
            ),
        )
        self.view.indexing_progress(f"Indexing {folder.name}: scanning…", None)
        self.view.placeholder(INDEXING)

    def files_changed(self, folder: Path) -> None:
        """The watcher saw photos added, changed or removed in `folder`: index what changed, then search again."""
        if self.closing:
            return
        if folder != self.folder:
            if folder in self.library.folders():
                self.library.index_later(folder)
            return
        if self.index_job.running:
            self.index_wanted = True  # once more when this run ends: it may have listed the folder already
        elif self.session is not None:
            self.reindex()

    def _library_folder_indexed(self, folder: Path) -> None:
        if self.library.searching and self.source is not None and not self.closing:
            self.queries.settings_changed()
            self.schedule_query()

    def set_library_search(self, on: bool) -> None:
        """Search the whole library (True) or the current folder."""
        self.library.set_searching(on)
        self.queries.settings_changed()
        self.schedule_query()

    def set_folder_searched(self, folder: Path, on: bool) -> None:
        """Leave a library folder out of library-wide queries (False), or take it back in."""
        self.library.set_searched(folder, on)
        if self.library.searching:
            self.queries.settings_changed()
            self.schedule_query()

    def _offer_to_continue(self, session: RetrievalSession, folder: Path) -> None:
        self.index_wanted = False
        self.view.indexing_ended()
        search = self.engine.searchable_now
        self.index_job.start(
            f"open {folder}",
            lambda _task: search(session, folder),
            Reply(done=self._index_finished, failed=self._index_failed),
        )

    @property
    def indexing(self) -> bool:
        return self.index_job.running

    def cancel(self) -> None:
        """Stop indexing after the batch in flight (what is done is kept), and metrics in progress."""
        if not self.index_job.running and self.index_wanted:  # asked for while the model loads: it will not start
            self.index_wanted = False
            self.index_declined = True
            self.view.indexing_ended()
            self.view.status("Indexing will not start. Re-index (Ctrl+R) starts it.", 10000)
            return
        stopped = False
        if self.index_job.running:
            self.index_job.cancel()
            self.index_wanted = False
            self.view.indexing_progress("Cancelling…", None)
            stopped = True
        if self.folder_recall.job.running:
            self.folder_recall.job.cancel()
            stopped = True
        if not stopped:
            self.view.status("", 0)

    def _index_finished(self, summary: IndexSummary) -> None:
        self.view.indexing_ended()
        if self.closing:
            return
        if summary.folder != self.folder or self.index_wanted:
            self.reindex()  # the folder or the model changed meanwhile
            return
        self.summary = summary
        self.library.refresh()  # the current folder may be one of the library's: its count changed
        message, timeout = index_outcome_text(summary)
        self.view.index_finished(summary, message, timeout)
        if self.source is not None:
            self.queries.settings_changed()
            self.schedule_query()
        else:
            self.clear_results()
        if not summary.report.cancelled:
            self.start_recall(summary)
            if self.session is not None:
                self.collection_map.start(self.session, summary)

    def _index_cancelled(self) -> None:
        self.view.indexing_ended()
        if self.index_wanted:
            self.reindex()  # another folder or model was chosen meanwhile

    def _index_failed(self, message: str) -> None:
        self.view.indexing_ended()
        self.view.index_failed(message)
        if self.index_wanted:
            self.reindex()

    # -- Recall@K of a labelled folder (explorer.app.folder_recall) --------------------------------------------
    def start_recall(self, summary: IndexSummary) -> None:
        if self.session is not None:
            self.folder_recall.start(self.session, summary)

    def recall_or_reason(self) -> tuple[RecallTable | None, str]:
        return self.folder_recall.recall_or_reason()

    # -- the query --------------------------------------------------------------------------------------------
    def set_query(self, source: Any, label: str) -> None:
        """A new query image (a Path or a picture `to_image` understands)."""
        if self.outcome is not None and self.source is not None:  # kept if the new one cannot be used
            self.previous = (self.source, self.label, self.embedding)
        self.source, self.label, self.embedding = source, label, None
        self.examples, self.base_label = [], label
        self.queries.source_changed()
        self.schedule_query()

    def add_example(self, path: Path, wanted: bool) -> None:
        """ "More like this" (wanted) or "less like this" on a result: the query keeps its picture and is refined
        (explorer.app.query_examples); the example leaves the results."""
        if self.source is None or any(e.path == path for e in self.examples):
            return
        self.examples.append(Example(path, wanted))
        self.label = examples_label(self.base_label, self.examples)
        self.queries.settings_changed()  # the query's own embedding is kept: only the combination changes
        self.schedule_query()

    def set_k(self, k: int) -> None:
        self.k = k
        self.queries.settings_changed()
        self.schedule_query()

    def set_expand(self, on: bool) -> None:
        self.expand = EXPAND_NEIGHBOURS if on else 0
        self.queries.settings_changed()
        self.schedule_query()

    def set_dim(self, dim: int | None) -> None:
        self.dim = dim
        self.queries.settings_changed()
        self.schedule_query()

    @property
    def settled(self) -> bool:
        """The folder's index may be searched: no run is going on and one has finished."""
        return not self.index_job.running and self.summary is not None

    def schedule_query(self) -> None:
        if self.source is None or self.session is None or self.closing:
            return
        session = self.session
        if self.queries.start(session) is None:
            return  # searched again with the latest state when the running one ends
        query = self.embedding if self.embedding is not None else self.source
        picture = self.embedding is None and not isinstance(self.source, Path)  # converted in the worker
        folder = self.folder if self.settled else None  # embed meanwhile; search once settled
        k, dim, label, to_image, run = self.k, self.dim, self.label, self.to_image, self.engine.run_query
        expand, examples = self.expand, list(self.examples)
        query_path = self.source if isinstance(self.source, Path) else None
        # The library's folders; the current one only once its run ended (its collection is reloaded at the end).
        library = [f for f in self.library.searched_folders() if f != self.folder or folder is not None]
        run_library = self.engine.run_library_query if self.library.searching else None

        def work(task: Task) -> QueryOutcome:
            q = to_image(query) if picture else query
            if examples:
                where = {"folders": library} if run_library is not None else {"folder": folder}
                return answer_with_examples(
                    run_library or run, session, q, examples, k, dim=dim, label=label, check=task.check,
                    query_path=query_path, expand=expand, **where,
                )  # fmt: skip
            if run_library is not None:
                return run_library(
                    session, q, library, k, dim, label, check=task.check, query_path=query_path, expand=expand
                )
            return run(session, q, folder, k, dim, label, check=task.check, query_path=query_path, expand=expand)

        self.query_job.start(
            "query", work, Reply(done=self._query_finished, failed=self._query_failed, cancelled=self._query_ended)
        )
        if folder is None and self.folder is not None and run_library is None:
            self.view.placeholder(INDEXING)

    def _query_ended(self) -> None:
        if self.queries.end():
            self.schedule_query()

    def _query_finished(self, outcome: QueryOutcome) -> None:
        ticket = self.queries.running
        current = ticket is not None and self.queries.is_current(ticket)
        if ticket is not None and self.queries.same_image(ticket, self.session):
            self.embedding = outcome.embedding
        self._query_ended()
        if not current or self.closing:
            return
        self.outcome = outcome
        self.view.query_answered(outcome)

    def _query_failed(self, message: str) -> None:
        ticket = self.queries.running
        self._query_ended()
        if ticket is None or not self.queries.same_image(ticket):
            return
        label, previous, self.previous = self.label, self.previous, None
        if previous is not None and self.outcome is not None:  # a mistaken drop does not wipe what was shown
            self.source, self.label, self.embedding = previous
            self.view.query_failed(label, message, restored=True)
            return
        self.source = None
        self.clear_results("The query image could not be read.")
        self.view.query_failed(label, message, restored=False)

    def clear_results(self, placeholder: str = "") -> None:
        self.outcome = None
        self.view.results_cleared(placeholder or (DROP_A_QUERY if self.folder is not None else ""))

    def empty_ranking_text(self, searched: bool) -> str:
        """The grid's message when an answer has no neighbours to show (`searched`: the folder was searched)."""
        if searched:
            return no_results_text(self.summary)
        if self.folder is None:
            return NO_FOLDER
        if self.index_job.running:
            return INDEXING
        return "Nothing is indexed in this folder."

    def close(self) -> None:
        """No answer is shown from now on; running jobs are asked to stop."""
        self.closing = True
        self.library.close()
        for job in (self.index_job, self.query_job, self.folder_recall.job, self.collection_map.job):
            job.cancel()
