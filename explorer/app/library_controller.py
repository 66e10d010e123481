"""The window's library, without Qt: which folders it holds, which are watched, and what is indexed in the background.

The window's controller (explorer.app.window_controller) keeps the current folder; this one keeps the rest of the
library. Its rules:

* The library's online folders and the current folder are watched (explorer.engine.watcher). A change in the current
  folder is the window controller's (it indexes it and searches again); a change in another library folder is
  indexed here, one folder at a time on the "library" lane, and `on_indexed` is told so that a library-wide query
  can be searched again.
* Adding a folder first looks for the index of the same photos under another path (a renamed folder, a drive with
  another letter): the library entry of that old path is then replaced, and its index reused.
* Folders whose drive is away stay in the library, shown offline, searched from their index.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from explorer.app.jobs import Executor, LatestJob, Reply, Task
from explorer.engine.library import DEFAULT_LIBRARY, LibraryError, LibraryStore

if TYPE_CHECKING:
    from explorer.engine.session import RetrievalSession
    from explorer.engine.watcher import WatchMode


@dataclass(frozen=True)
class LibraryRow:
    """One folder of the library as the window lists it."""

    path: Path
    online: bool
    images: int
    indexed: bool
    watching: str  # "watched", the reason it is rescanned instead, or "" (offline: nothing to watch)
    searched: bool = True  # part of a library-wide query (the person may leave folders out)


class LibraryView(Protocol):
    def library_changed(self, rows: list[LibraryRow], searching: bool) -> None: ...
    def status(self, message: str, timeout_ms: int) -> None: ...


class Watcher(Protocol):
    def watch(self, folder: Path) -> WatchMode: ...
    def unwatch(self, folder: Path) -> None: ...


class LibraryController:
    def __init__(
        self,
        view: LibraryView,
        executor: Executor,
        store: LibraryStore | None = None,
        watcher: Watcher | None = None,
        name: str = DEFAULT_LIBRARY,
        on_indexed: Callable[[Path], None] = lambda _folder: None,
    ) -> None:
        self.view = view
        self.store = store or LibraryStore()
        self.watcher = watcher
        self.name = name
        self.on_indexed = on_indexed
        self.searching = False  # queries search the whole library, not only the current folder
        self.left_out: set[Path] = set()  # folders the person unticked: not part of library-wide queries
        self.job = LatestJob(executor, "library")  # background indexing, one folder after another
        self.add_job = LatestJob(executor, "library")  # adding a folder (same lane: after the folder in progress)
        self.waiting: list[Path] = []  # library folders to index in the background, in order
        self.busy: Path | None = None  # the one being indexed: its collection is reloaded when the run ends
        self.modes: dict[Path, WatchMode] = {}
        self.session: RetrievalSession | None = None

    # -- what the library holds ---------------------------------------------------------------------------------
    def folders(self) -> list[Path]:
        try:
            return self.store.get(self.name).folder_paths()
        except LibraryError as exc:
            self.view.status(str(exc), 15000)
            return []

    def searched_folders(self) -> list[Path]:
        """The library's folders a library-wide query searches (the chosen part), less the one being indexed in the
        background: its collection is reloaded at the end of the run, and a query must not race that (it is searched
        again then, through `on_indexed`)."""
        return [f for f in self.folders() if f not in self.left_out and f != self.busy]

    def set_searched(self, folder: Path, on: bool) -> None:
        (self.left_out.discard if on else self.left_out.add)(folder)
        self.refresh()

    def rows(self) -> list[LibraryRow]:
        rows = []
        for folder in self.store.get(self.name).folders:
            mode = self.modes.get(folder.path)
            watching = "" if mode is None else "watched" if mode.events else mode.reason
            images = self.session.indexed_count(folder.path) if self.session is not None else 0
            indexed = self.session is not None and self.session.is_indexed(folder.path)
            searched = folder.path not in self.left_out
            rows.append(LibraryRow(folder.path, folder.online, images, indexed, watching, searched))
        return rows

    def refresh(self) -> None:
        try:
            self.view.library_changed(self.rows(), self.searching)
        except LibraryError as exc:
            self.view.status(str(exc), 15000)

    def set_session(self, session: RetrievalSession | None) -> None:
        """A new model: its catalogs are other ones, so what is indexed is read again."""
        self.session = session
        self.refresh()

    def set_searching(self, on: bool) -> None:
        self.searching = on
        self.refresh()

    def add(self, folder: Path, current: Path | None) -> None:
        """Add a folder (in a worker: finding a moved folder's index reads catalogs), then index it."""
        session, store, name = self.session, self.store, self.name

        def work(_task: Task) -> str:
            found = session.find_again(folder) if session is not None else None
            paths = store.get(name).folder_paths()
            replaces = found.old_folder if found and found.old_folder in paths and not found.old_folder_online else None
            store.add(folder, name, replaces=replaces)
            return f"{folder.name} was added to the library" + (f" in place of {replaces}" if replaces else "")

        def added(message: str) -> None:
            self.view.status(message, 8000)
            self.sync_watches(current)
            if Path(folder).resolve() != current:
                self.index_later(Path(folder).resolve())
            self.refresh()

        self.add_job.start(f"add {folder}", work, Reply(done=added, failed=lambda m: self.view.status(m, 15000)))

    def remove(self, folder: Path, current: Path | None) -> None:
        try:
            self.store.remove(folder, self.name)
        except LibraryError as exc:
            self.view.status(str(exc), 15000)
            return
        self.view.status(f"{folder.name} was taken out of the library (its index is kept)", 8000)
        self.sync_watches(current)
        self.refresh()

    # -- watching and background indexing ----------------------------------------------------------------------
    def sync_watches(self, current: Path | None) -> None:
        """Watch the online library folders and the current folder; stop watching the rest."""
        if self.watcher is None:
            return
        wanted = {f for f in self.folders() if f.is_dir()}
        if current is not None:
            wanted.add(current)
        for folder in list(self.modes):
            if folder not in wanted:
                self.watcher.unwatch(folder)
                del self.modes[folder]
        for folder in sorted(wanted - set(self.modes)):
            self.modes[folder] = self.watcher.watch(folder)

    def index_later(self, folder: Path) -> None:
        """Index a library folder in the background (after the ones already waiting)."""
        if folder not in self.waiting:
            self.waiting.append(folder)
        self._next()

    def index_all(self, but: Path | None = None) -> None:
        """Index every online folder of the library in the background (incremental: an unchanged folder costs its
        scan), `but` the one the window indexes itself."""
        for folder in self.folders():
            if folder.is_dir() and folder != but:
                self.index_later(folder)

    def _next(self) -> None:
        if self.job.running or not self.waiting or self.session is None:
            return
        folder = self.waiting.pop(0)
        session = self.session
        self.busy = folder

        def work(task: Task) -> Path:
            session.index(folder, cancel=task.cancelled)
            return folder

        def ended(message: str = "") -> None:
            self.busy = None
            if message:
                self.view.status(f"{folder.name}: {message}", 15000)
            self.refresh()
            self._next()

        def done(indexed: Path) -> None:
            self.on_indexed(indexed)
            ended()

        self.job.start(f"index {folder}", work, Reply(done=done, failed=ended, cancelled=ended))

    def close(self) -> None:
        self.waiting.clear()
        self.job.cancel()
        if self.watcher is not None:
            for folder in list(self.modes):
                self.watcher.unwatch(folder)
            self.modes.clear()
