"""Progress reports and cancellation shared by long jobs (indexing, evaluation, training).

Callbacks instead of Qt signals keep the engine and the trainer free of Qt: the GUI's thread adapters turn
these calls into signals, the command line into a progress bar.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


class Cancelled(Exception):
    """Raised between batches when the caller asked to stop; work done so far has been kept."""


@dataclass(frozen=True)
class Progress:
    done: int
    total: int
    rate: float  # items per second, over the whole run so far
    stage: str = ""

    @property
    def seconds_left(self) -> float | None:
        if self.rate <= 0 or self.total <= 0:
            return None
        return max(0.0, (self.total - self.done) / self.rate)


ProgressCallback = Callable[[Progress], None]
CancelCheck = Callable[[], bool]


def never_cancelled() -> bool:
    return False


class RateMeter:
    """Counts items against wall time since construction."""

    def __init__(self, total: int, stage: str = "") -> None:
        self.total = total
        self.stage = stage
        self.done = 0
        self._start = time.perf_counter()

    def advance(self, n: int) -> Progress:
        self.done += n
        elapsed = max(time.perf_counter() - self._start, 1e-9)
        return Progress(self.done, self.total, self.done / elapsed, self.stage)


def format_time_left(seconds: float | None) -> str:
    """'m:ss left', or 'h:mm:ss left' from an hour on; '' when unknown.

    >>> format_time_left(75), format_time_left(3725), format_time_left(None)
    ('1:15 left', '1:02:05 left', '')
    """
    if seconds is None:
        return ""
    s = round(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d} left" if s >= 3600 else f"{s // 60}:{s % 60:02d} left"


def format_progress(p: Progress, width: int = 30) -> str:
    """One line for a terminal: bar, counts, rate and time left; with no total (a folder scan) just the count.

    >>> format_progress(Progress(3, 4, 2.0, "embedding"), width=4)
    'embedding [###.] 3/4 2.0/s 0:00 left'
    >>> format_progress(Progress(1200, 0, 800.0, "scanning"))
    'scanning 1,200 found'
    """
    if p.total <= 0:
        return f"{p.stage + ' ' if p.stage else ''}{p.done:,} found"
    frac = p.done / p.total
    filled = round(frac * width)
    eta = format_time_left(p.seconds_left)
    stage = f"{p.stage} " if p.stage else ""
    return f"{stage}[{'#' * filled}{'.' * (width - filled)}] {p.done}/{p.total} {p.rate:.1f}/s {eta}".rstrip()
