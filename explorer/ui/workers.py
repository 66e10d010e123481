"""Background jobs: everything slow (model loading, indexing, queries, metrics) runs here, off the GUI thread.

A `Job` wraps one plain Python function that receives the job itself, so the function can ask
`job.cancelled()` and call `job.report(...)` without knowing about Qt; results, progress and errors come
back to the GUI thread as queued signals. The engine only knows callbacks (`trainer.progress`), and this is
the one adapter that turns them into signals.

PySide keeps a QObject alive only as long as Python references it, and a queued signal whose sender has
been collected is silently dropped, so `JobRunner` holds every job until its final signal has been
delivered on the GUI thread.

Pool threads keep the normal OS priority. Running them niced (below the GUI thread) was tried: it did not
shorten the longest GUI stalls (a niced thread that holds the GIL queues behind other processes before it
can hand the GIL back) and, on a busy machine, it nearly halved the indexing rate.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, QTimer, Signal

from explorer.app.jobs import Handle, JobCancelled, Reply, Task, failure_message

log = logging.getLogger(__name__)


class JobSignals(QObject):
    """The job's voice on the GUI thread; every signal carries the job so slots can drop stale ones."""

    progress = Signal(object, object)  # job, payload
    finished = Signal(object, object)  # job, result
    failed = Signal(object, str)  # job, one-line message
    cancelled = Signal(object)  # job


class Job(QRunnable):
    """One unit of background work: `fn(job) -> result`."""

    def __init__(self, name: str, fn: Callable[[Job], Any]) -> None:
        super().__init__()
        self.setAutoDelete(False)  # Python owns it; JobRunner drops it after its last signal
        self.name = name
        self.fn = fn
        self.signals = JobSignals()
        self._cancel = threading.Event()
        self.done = threading.Event()
        self.result: Any = None
        self.error: str | None = None

    # -- called from any thread -------------------------------------------------------------------------
    def cancel(self) -> None:
        self._cancel.set()

    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def check(self) -> None:
        """Raise JobCancelled if cancellation was asked for: call between steps of long work."""
        if self._cancel.is_set():
            raise JobCancelled(self.name)

    def report(self, payload: object) -> None:
        self.signals.progress.emit(self, payload)

    # -- the pool thread --------------------------------------------------------------------------------
    def run(self) -> None:
        try:
            from trainer.progress import Cancelled  # numpy-free, torch-free

            try:
                result = self.fn(self)
            except (JobCancelled, Cancelled):
                self.signals.cancelled.emit(self)
                return
            except Exception as exc:
                self.error = failure_message(self.name, exc)
                self.signals.failed.emit(self, self.error)
                return
            self.result = result
            self.signals.finished.emit(self, result)
        finally:
            self.done.set()


class JobRunner(QObject):
    """A thread pool that keeps its jobs alive until their outcome reached the GUI thread."""

    def __init__(self, name: str, threads: int = 1, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.setObjectName(name)
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(threads)
        self._jobs: set[Job] = set()

    def start(self, job: Job) -> Job:
        self._jobs.add(job)
        job.signals.finished.connect(self._release)
        job.signals.failed.connect(self._release)
        job.signals.cancelled.connect(self._release)
        self.pool.start(job)
        return job

    def _release(self, job: Job, *_: object) -> None:
        # Dropping the last reference inside the job's own signal emission would delete its sender
        # mid-delivery; let the emission finish first.
        QTimer.singleShot(0, self, lambda: self._jobs.discard(job))

    @property
    def jobs(self) -> list[Job]:
        return [j for j in self._jobs if not j.done.is_set()]

    def busy(self) -> bool:
        return bool(self.jobs)

    def cancel_all(self) -> None:
        for job in list(self._jobs):
            job.cancel()
            if self.pool.tryTake(job):  # queued, never started: it will not speak for itself
                job.done.set()
                job.signals.cancelled.emit(job)

    def wait(self, msecs: int = 30_000) -> bool:
        """Block until running jobs end (shutdown and tests only: never while the app is in use)."""
        return self.pool.waitForDone(msecs)


class _Delivery(QObject):
    """Hands a job's signals to its `Reply` on the GUI thread (a QObject receiver makes the connections queued)."""

    def __init__(self, reply: Reply, parent: QObject) -> None:
        super().__init__(parent)
        self.reply = reply

    def progress(self, _job: Job, payload: object) -> None:
        self.reply.progress(payload)

    def finished(self, _job: Job, result: object) -> None:
        self.reply.done(result)
        self.deleteLater()

    def failed(self, _job: Job, message: str) -> None:
        self.reply.failed(message)
        self.deleteLater()

    def cancelled(self, _job: Job) -> None:
        self.reply.cancelled()
        self.deleteLater()


class QtExecutor(QObject):
    """explorer.app.jobs.Executor on Qt thread pools: one `JobRunner` (one thread) per lane, replies on the GUI
    thread."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.runners: dict[str, JobRunner] = {}

    def runner(self, lane: str) -> JobRunner:
        if lane not in self.runners:
            self.runners[lane] = JobRunner(lane, 1, self)
        return self.runners[lane]

    def submit(self, lane: str, name: str, work: Callable[[Task], Any], reply: Reply) -> Handle:
        job = Job(name, work)
        delivery = _Delivery(reply, self)
        job.signals.progress.connect(delivery.progress)
        job.signals.finished.connect(delivery.finished)
        job.signals.failed.connect(delivery.failed)
        job.signals.cancelled.connect(delivery.cancelled)
        return self.runner(lane).start(job)
