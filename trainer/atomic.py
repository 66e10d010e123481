"""Atomic file writes: a crash, a kill or a full disk never leaves half a model, checkpoint or index."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def temp_path_beside(path: Path) -> Path:
    """A fresh, empty temporary file in `path`'s folder, so that the final rename stays on one filesystem."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    return Path(name)


def make_ordinary(path: Path) -> None:
    """Give a file the permissions of any file this process creates (mkstemp makes 0600)."""
    mask = os.umask(0o022)  # reading the umask means setting it; restored at once
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)


def fsync_file(path: Path) -> None:
    # Opened for writing because Windows refuses to flush a read-only handle.
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """Call `write(tmp)` on a temporary file in the same folder, fsync it, then rename it over `path`.

    The rename is atomic on POSIX and Windows (same volume), so readers see the old file or the new one.
    """
    tmp = temp_path_beside(path)
    try:
        write(tmp)
        make_ordinary(tmp)  # after writing: some writers recreate the file
        fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
