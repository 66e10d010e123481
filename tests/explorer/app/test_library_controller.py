"""The library's rules without a display: what is watched, what is indexed in the background and when, and what a
library-wide query searches."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from recording_view import RecordingView

from explorer.app.analysis import IndexSummary
from explorer.app.jobs import InlineExecutor
from explorer.app.library_controller import LibraryController
from explorer.app.window_controller import Engine, WindowController
from explorer.engine.library import LibraryStore
from explorer.engine.watcher import WatchMode


class FakeWatcher:
    def __init__(self) -> None:
        self.watched: set[Path] = set()

    def watch(self, folder: Path) -> WatchMode:
        self.watched.add(folder)
        return WatchMode(True)

    def unwatch(self, folder: Path) -> None:
        self.watched.discard(folder)


class FakeSession:
    def __init__(self) -> None:
        self.indexed: list[Path] = []
        self.card = SimpleNamespace(nested_dims=[8, 16], dim=16, name="m")
        self.fingerprint = "m"

    def index(self, folder: Path, cancel: Any = None) -> None:
        self.indexed.append(folder)

    def is_indexed(self, folder: Path) -> bool:
        return folder in self.indexed

    def indexed_count(self, folder: Path) -> int:
        return 3 if folder in self.indexed else 0

    def find_again(self, folder: Path) -> None:
        return None

    def last_run_cancelled(self, folder: Path) -> bool:
        return False


@pytest.fixture
def folders(tmp_path: Path) -> list[Path]:
    out = [tmp_path / name for name in ("a", "b", "c")]
    for folder in out:
        folder.mkdir()
    return out


def test_watches_follow_the_library_and_the_current_folder(tmp_path: Path, folders: list[Path]) -> None:
    a, b, c = folders
    store, watcher, view = LibraryStore(tmp_path / "libraries.json"), FakeWatcher(), RecordingView()
    store.add(a)
    store.add(b)
    library = LibraryController(view, InlineExecutor(), store, watcher)
    library.sync_watches(c)
    assert watcher.watched == {a, b, c}
    b.rename(tmp_path / "away")  # offline: nothing to watch there
    library.sync_watches(a)
    assert watcher.watched == {a}
    assert [r.watching for r in library.rows()] == ["watched", ""]


def test_background_indexing_runs_one_folder_at_a_time_and_queries_leave_it_out_meanwhile(
    tmp_path: Path, folders: list[Path]
) -> None:
    a, b, c = folders
    store, executor, view = LibraryStore(tmp_path / "libraries.json"), InlineExecutor(), RecordingView()
    for folder in folders:
        store.add(folder)
    indexed: list[Path] = []
    session = FakeSession()
    library = LibraryController(view, executor, store, FakeWatcher(), on_indexed=indexed.append)
    library.set_session(session)  # type: ignore[arg-type]
    library.index_later(b)
    library.index_later(c)
    library.index_later(c)  # already waiting: not twice
    assert library.busy == b and library.searched_folders() == [a, c]  # b's collection is about to be reloaded
    library.index_later(b)  # changed again while its run goes on: once more after, the run may have missed it
    executor.run(1)
    assert session.indexed == [b] and indexed == [b] and library.busy == c
    executor.run()
    assert session.indexed == [b, c, b] and indexed == [b, c, b] and library.busy is None
    assert library.searched_folders() == [a, b, c]
    library.set_searched(a, False)  # a chosen part
    assert library.searched_folders() == [b, c] and [r.searched for r in library.rows()] == [False, True, True]


def test_a_change_seen_by_the_watcher_is_indexed_where_it_happened(tmp_path: Path, folders: list[Path]) -> None:
    a, b, _c = folders
    indexed: list[Path] = []

    def index_folder(session: Any, folder: Path, progress: Any, cancel: Any) -> Any:
        indexed.append(folder)
        report = SimpleNamespace(cancelled=False, embedded=1, removed=0, unchanged=0, skipped=[], kept_offline=0)
        return IndexSummary(folder, report, 1, labelled=False)

    store, executor, view = LibraryStore(tmp_path / "libraries.json"), InlineExecutor(), RecordingView()
    store.add(b)
    session = FakeSession()
    controller = WindowController(
        view, executor, lambda _p: session, Engine(index_folder=index_folder), library_store=store
    )  # type: ignore[arg-type]
    controller.start_session()
    executor.run()
    assert session.indexed == [b]  # photos added while the window was closed: the library is indexed at start
    controller.open_folder(a)
    controller.files_changed(a)  # while the folder's first run is queued: once more after it, not cancelled
    executor.run()
    assert indexed == [a, a]
    controller.files_changed(b)  # another folder of the library: indexed in the background
    controller.files_changed(Path("/not/in/the/library"))  # neither: ignored
    executor.run()
    assert indexed == [a, a] and session.indexed == [b, b]
