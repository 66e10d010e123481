"""Watching folders: a photo written is reported once the folder is quiet; no watch left means periodic rescans."""

from __future__ import annotations

import errno
import threading
import time
from collections.abc import Iterator
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

from explorer.engine.watcher import FolderWatcher, _concerns_photos


class Calls:
    def __init__(self) -> None:
        self.folders: list[Path] = []
        self.event = threading.Event()

    def __call__(self, folder: Path) -> None:
        self.folders.append(folder)
        self.event.set()

    def wait(self, count: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.folders) < count:
            assert time.monotonic() < deadline, f"{len(self.folders)} of {count} changes reported in {timeout} s"
            self.event.wait(0.05)
            self.event.clear()


@pytest.fixture
def calls() -> Calls:
    return Calls()


@pytest.fixture
def watcher(calls: Calls) -> Iterator[FolderWatcher]:
    w = FolderWatcher(calls, settle=0.3, rescan_seconds=3600)
    yield w
    w.close()


def test_which_events_concern_photos() -> None:
    assert _concerns_photos(FileCreatedEvent("/p/IMG_1.JPG"))
    assert _concerns_photos(FileModifiedEvent("/p/a.dng"))
    assert _concerns_photos(FileMovedEvent("/p/.a.jpg.part", "/p/a.jpg"))  # a download finished under its name
    assert _concerns_photos(DirCreatedEvent("/p/card 2"))  # a folder copied in: its files may come as one event
    assert not _concerns_photos(FileCreatedEvent("/p/notes.txt"))
    assert _concerns_photos(FileClosedEvent("/p/a.jpg"))  # closed after writing: the file is complete now
    assert not _concerns_photos(FileOpenedEvent("/p/a.jpg"))  # the app's own reading is no change
    assert not _concerns_photos(FileModifiedEvent("/p/a.xmp"))  # a sidecar of settings, not a picture


def test_a_photo_written_is_reported_once_the_folder_is_quiet(
    watcher: FolderWatcher, calls: Calls, tmp_path: Path
) -> None:
    folder = tmp_path / "photos"
    (folder / "deep" / "er").mkdir(parents=True)
    assert watcher.watch(folder).events
    for i in range(20):  # a card copied in: many files, one report
        make_image(folder / "deep" / "er" / f"img_{i}.jpg", seed=i)
    calls.wait(1)
    assert calls.folders == [folder.resolve()]
    time.sleep(3 * watcher.settle)  # and no second report for the same burst
    assert len(calls.folders) == 1
    (folder / "deep" / "er" / "img_3.jpg").unlink()
    calls.wait(2)
    watcher.unwatch(folder)
    make_image(folder / "after.jpg", seed=99)
    time.sleep(3 * watcher.settle)
    assert len(calls.folders) == 2 and watcher.folders == []


class FullObserver(Observer):  # type: ignore[misc,valid-type]
    """An observer on a system whose inotify watches are used up."""

    def schedule(self, *args: Any, **kwargs: Any) -> Any:
        raise OSError(errno.ENOSPC, "inotify watch limit reached")


def test_no_watch_left_means_periodic_rescans(calls: Calls, tmp_path: Path) -> None:
    watcher = FolderWatcher(calls, settle=0.3, rescan_seconds=0.3, observer=FullObserver())
    try:
        mode = watcher.watch(tmp_path)
        assert not mode.events and "limit" in mode.reason and "max_user_watches" in mode.reason
        calls.wait(2)  # rescanned without any event
        assert set(calls.folders) == {tmp_path.resolve()}
    finally:
        watcher.close()
