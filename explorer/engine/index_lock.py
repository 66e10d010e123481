"""One indexing run per catalog at a time, across processes: a second run waits for the first, and says so.

Two `explorer index` runs on the same folder used to embed everything twice (the catalog stayed consistent; the
work was done twice, and neither said another run was going on). The lock is an advisory `flock` on a file beside
the catalog holding the owner's process id; the kernel releases it when that process ends, however it ends, so a
killed run never leaves the folder locked. Waiting polls, so that a cancelled run (the window's Cancel) stops
waiting at once. Where `flock` does not exist (Windows) runs are not serialised, as before.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from trainer.progress import CancelCheck, Cancelled, never_cancelled

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

POLL_S = 0.25


def holder(lock_path: Path) -> int | None:
    """The process id written by the run that holds (or last held) the lock, if readable."""
    try:
        text = Path(lock_path).read_text(encoding="ascii").strip()
        return int(text) if text.isdigit() else None
    except OSError:
        return None


@contextmanager
def indexing_lock(
    lock_path: Path,
    on_wait: Callable[[str], None] = lambda _text: None,
    cancel: CancelCheck = never_cancelled,
) -> Iterator[None]:
    """Hold the catalog's indexing lock for the block; while another process holds it, tell `on_wait` once (a
    sentence naming that process) and wait, checking `cancel` (raising `Cancelled`) between tries."""
    if fcntl is None:  # pragma: no cover
        yield
        return
    lock_path = Path(lock_path)
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not told:
                    pid = holder(lock_path)
                    who = f"process {pid}" if pid else "another process"
                    on_wait(f"this folder is already being indexed by {who}; waiting for it to finish")
                    told = True
                if cancel():
                    raise Cancelled("stopped waiting for the other indexing run") from None
                time.sleep(POLL_S)
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode("ascii"))
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
