"""Watching folders: photos added, changed or removed are noticed within seconds, without a click.

One `watchdog` observer serves every folder; each folder is one recursive watch, which on Linux is one inotify
watch per directory (never per file), on macOS one FSEvents stream, on Windows one ReadDirectoryChangesW handle.
Events are only a hint: what changed is found by the incremental index itself (explorer.engine.indexer compares
every file's size and time), so a lost or merged event costs nothing but a moment. That is why events are reduced to
"this folder changed", and reported once the folder has been quiet for `settle` seconds: a card of 500 photos
copied in is one re-index, not 500, and a file still being written is not read half-way.

Where watching cannot work, the folder is rescanned every `rescan_seconds` instead, and `mode` says why: the
system's limit on watches is reached (Linux's fs.inotify.max_user_watches), or the folder is on a network share,
whose changes made by other machines no local watch sees.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver, ObservedWatch

from trainer.images import IMAGE_EXTENSIONS

log = logging.getLogger(__name__)

NETWORK_FILESYSTEMS = frozenset({"nfs", "nfs4", "cifs", "smb", "smbfs", "smb3", "afpfs", "fuse.sshfs", "9p", "davfs"})


@dataclass(frozen=True)
class WatchMode:
    events: bool  # True: the OS reports changes; False: rescanned every `rescan_seconds`
    reason: str = ""  # why not events


def _mount_type(folder: Path) -> str:
    """The filesystem type of the mount holding `folder` (Linux's /proc/mounts; "" elsewhere or unknown)."""
    try:
        with open("/proc/mounts", encoding="utf-8", errors="replace") as mounts:
            entries = [line.split() for line in mounts]
    except OSError:
        return ""
    best, kind = "", ""
    target = str(folder)
    for fields in entries:
        if len(fields) >= 3:
            point = fields[1].replace("\\040", " ")
            inside = target == point or target.startswith(point.rstrip("/") + "/")
            if inside and len(point) > len(best):
                best, kind = point, fields[2]
    return kind


def _concerns_photos(event: FileSystemEvent) -> bool:
    """A change the index may care about: an image file, or a whole directory (copied in, moved, deleted)."""
    if event.event_type in ("opened", "closed_no_write"):
        return False
    if event.is_directory:
        return event.event_type in ("created", "deleted", "moved")
    paths = [event.src_path, event.dest_path] if event.dest_path else [event.src_path]
    return any(os.path.splitext(os.fsdecode(p))[1].lower() in IMAGE_EXTENSIONS for p in paths)


class _Handler(FileSystemEventHandler):
    def __init__(self, folder: Path, changed: Callable[[Path], None]) -> None:
        self.folder = folder
        self.changed = changed

    def on_any_event(self, event: FileSystemEvent) -> None:
        if _concerns_photos(event):
            self.changed(self.folder)


class FolderWatcher:
    """Calls `on_change(folder)` (on the watcher's own thread) when a watched folder's photos changed and the
    folder has been quiet for `settle` seconds, or every `rescan_seconds` where the OS cannot watch it."""

    def __init__(
        self,
        on_change: Callable[[Path], None],
        settle: float = 1.0,
        rescan_seconds: float = 60.0,
        observer: BaseObserver | None = None,
        clock: Callable[[], float] = time.monotonic,
        poll_thread: bool = True,
    ) -> None:
        """`clock` and `poll_thread=False` let a test step time itself and call `poll`: the debounce is then checked
        without sleeping and hoping."""
        self.on_change = on_change
        self.clock = clock
        self.settle = settle
        self.rescan_seconds = rescan_seconds
        self._observer = observer or Observer()
        self._watches: dict[Path, ObservedWatch | None] = {}  # None: rescanned
        self._modes: dict[Path, WatchMode] = {}
        self._last_event: dict[Path, float] = {}
        self._next_rescan: dict[Path, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._observer.start()
        self._timer = threading.Thread(target=self._run, name="folder-watcher", daemon=True)
        if poll_thread:
            self._timer.start()

    def watch(self, folder: Path) -> WatchMode:
        """Start watching `folder` (and everything under it); how it is watched is returned and kept in `mode`."""
        folder = Path(folder).resolve()
        with self._lock:
            if folder in self._modes:
                return self._modes[folder]
        kind = _mount_type(folder)
        watch: ObservedWatch | None = None
        if kind in NETWORK_FILESYSTEMS:
            mode = WatchMode(False, f"on a network share ({kind}): rescanned every {self.rescan_seconds:.0f} s")
        else:
            try:
                watch = self._observer.schedule(_Handler(folder, self._changed), str(folder), recursive=True)
                mode = WatchMode(True)
            except OSError as exc:  # ENOSPC: inotify's watch limit; EMFILE: too many instances
                log.info("cannot watch %s: %s", folder, exc)
                mode = WatchMode(
                    False,
                    f"the system's limit on watched folders is reached ({exc.strerror or exc}): rescanned every "
                    f"{self.rescan_seconds:.0f} s (on Linux, raise fs.inotify.max_user_watches to watch it)",
                )
        with self._lock:
            self._watches[folder] = watch
            self._modes[folder] = mode
            if not mode.events:
                self._next_rescan[folder] = self.clock() + self.rescan_seconds
        return mode

    def unwatch(self, folder: Path) -> None:
        folder = Path(folder).resolve()
        with self._lock:
            watch = self._watches.pop(folder, None)
            self._modes.pop(folder, None)
            self._last_event.pop(folder, None)
            self._next_rescan.pop(folder, None)
        if watch is not None:
            with contextlib.suppress(KeyError, OSError):  # already gone with its folder
                self._observer.unschedule(watch)

    def mode(self, folder: Path) -> WatchMode | None:
        with self._lock:
            return self._modes.get(Path(folder).resolve())

    @property
    def folders(self) -> list[Path]:
        with self._lock:
            return list(self._modes)

    def _changed(self, folder: Path) -> None:
        with self._lock:
            if folder in self._modes:
                self._last_event[folder] = self.clock()

    def _due(self) -> list[Path]:
        now = self.clock()
        due = []
        with self._lock:
            for folder, last in list(self._last_event.items()):
                if now - last >= self.settle:
                    del self._last_event[folder]
                    due.append(folder)
            for folder, at in self._next_rescan.items():
                if now >= at:
                    self._next_rescan[folder] = now + self.rescan_seconds
                    due.append(folder)
        return due

    def poll(self) -> None:
        """Report the folders that are due: quiet for `settle` after a change, or at their rescan time."""
        for folder in self._due():
            try:
                self.on_change(folder)
            except Exception:  # the watcher must outlive a failing listener
                log.exception("reacting to a change in %s failed", folder)

    def _run(self) -> None:
        while not self._stop.wait(min(0.2, self.settle / 4)):
            self.poll()

    def close(self) -> None:
        self._stop.set()
        self._observer.stop()
        self._observer.join(timeout=5)
        if self._timer.is_alive():
            self._timer.join(timeout=5)
