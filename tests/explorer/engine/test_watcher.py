"""Watching folders: a photo written is reported; a burst of changes is one report once the folder is quiet; no
watch left means periodic rescans. The debounce and the rescans run on a clock the test steps (no sleeping)."""

from __future__ import annotations

import errno
import threading
from pathlib import Path
from typing import Any

import pytest
from imagegen import make_image
from watchdog.events import (
    DirCreatedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileOpenedEvent,
)
from watchdog.observers import Observer

from explorer.engine.watcher import FolderWatcher, _concerns_photos, _Handler


class Calls:
    def __init__(self) -> None:
        self.folders: list[Path] = []
        self.event = threading.Event()

    def __call__(self, folder: Path) -> None:
        self.folders.append(folder)
        self.event.set()


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class FakeObserver:
    """What FolderWatcher needs of an observer, with nothing watched for real."""

    def __init__(self, refuse: bool = False) -> None:
        self.refuse = refuse

    def start(self) -> None: ...
    def stop(self) -> None: ...
    def join(self, timeout: float | None = None) -> None: ...
    def unschedule(self, watch: Any) -> None: ...

    def schedule(self, *args: Any, **kwargs: Any) -> Any:
        if self.refuse:
            raise OSError(errno.ENOSPC, "inotify watch limit reached")
        return object()


@pytest.fixture
def calls() -> Calls:
    return Calls()


def test_which_events_concern_photos() -> None:
    assert _concerns_photos(FileCreatedEvent("/p/IMG_1.JPG"))
    assert _concerns_photos(FileModifiedEvent("/p/a.dng"))
    assert _concerns_photos(FileMovedEvent("/p/.a.jpg.part", "/p/a.jpg"))  # a download finished under its name
    assert _concerns_photos(DirCreatedEvent("/p/card 2"))  # a folder copied in: its files may come as one event
    assert _concerns_photos(FileClosedEvent("/p/a.jpg"))  # closed after writing: the file is complete now
    assert not _concerns_photos(FileOpenedEvent("/p/a.jpg"))  # the app's own reading is no change
    assert not _concerns_photos(FileCreatedEvent("/p/notes.txt"))
    assert not _concerns_photos(FileModifiedEvent("/p/a.xmp"))  # a sidecar of settings, not a picture


def test_a_photo_written_into_a_watched_folder_is_reported(calls: Calls, tmp_path: Path) -> None:
    watcher = FolderWatcher(calls, settle=0.3, rescan_seconds=3600, observer=Observer())
    try:
        folder = tmp_path / "photos"
        (folder / "deep" / "er").mkdir(parents=True)
        assert watcher.watch(folder).events
        make_image(folder / "deep" / "er" / "new.jpg", seed=1)  # one watch covers the sub-folders
        assert calls.event.wait(30), "no report within 30 s"
        assert calls.folders[0] == folder.resolve()
        watcher.unwatch(folder)
        assert watcher.folders == [] and watcher.mode(folder) is None
    finally:
        watcher.close()


def test_a_burst_of_changes_is_one_report_once_the_folder_is_quiet(calls: Calls, tmp_path: Path) -> None:
    clock = Clock()
    watcher = FolderWatcher(calls, settle=1.0, observer=FakeObserver(), clock=clock, poll_thread=False)  # type: ignore[arg-type]
    folder = tmp_path.resolve()
    watcher.watch(folder)
    handler = _Handler(folder, watcher._changed)  # what the observer calls, file by file
    for i in range(20):  # a card copied in, one file every 50 ms
        clock.now = 0.05 * i
        handler.on_any_event(FileCreatedEvent(str(folder / f"img_{i}.jpg")))
    handler.on_any_event(FileCreatedEvent(str(folder / "notes.txt")))  # not a photo: no change
    clock.now = 0.95 + 0.99  # still within a second of the last photo
    watcher.poll()
    assert calls.folders == []
    clock.now = 0.95 + 1.0
    watcher.poll()
    clock.now = 10.0
    watcher.poll()
    assert calls.folders == [folder]  # one report for the burst, none after it
    watcher.close()


def test_no_watch_left_means_periodic_rescans(calls: Calls, tmp_path: Path) -> None:
    clock = Clock()
    watcher = FolderWatcher(
        calls,
        settle=1.0,
        rescan_seconds=60,
        observer=FakeObserver(refuse=True),
        clock=clock,
        poll_thread=False,  # type: ignore[arg-type]
    )
    mode = watcher.watch(tmp_path)
    assert not mode.events and "limit" in mode.reason and "max_user_watches" in mode.reason
    clock.now = 59.0
    watcher.poll()
    assert calls.folders == []
    for now in (60.0, 120.0):  # rescanned every minute, with no event at all
        clock.now = now
        watcher.poll()
    assert calls.folders == [tmp_path.resolve()] * 2
    watcher.close()


def test_a_failing_listener_does_not_stop_the_watcher(tmp_path: Path) -> None:
    seen: list[Path] = []

    def listener(folder: Path) -> None:
        seen.append(folder)
        raise RuntimeError("indexing failed")

    clock = Clock()
    watcher = FolderWatcher(
        listener, rescan_seconds=1, observer=FakeObserver(refuse=True), clock=clock, poll_thread=False
    )  # type: ignore[arg-type]
    watcher.watch(tmp_path)
    for now in (1.0, 2.0):
        clock.now = now
        watcher.poll()
    assert len(seen) == 2
    watcher.close()
