"""Background work as the application layer sees it, without Qt: an executor to submit to, and "latest job wins".

The window's controller (explorer.app.window_controller) submits every slow thing (loading a model, indexing,
searching, folder metrics) to an `Executor` and hears back through callbacks that the executor delivers on the
thread that owns the controller: the GUI thread in the app (explorer.ui.window.executor wraps Qt's thread pool),
the test's own thread with `InlineExecutor`, which runs what was submitted when the test says so.

`LatestJob` is the rule that an answer counts only from the latest job of its kind: a folder indexed, then
another chosen, must not show the first folder's summary. The window used to spell that out as
`if job is not self._index_job: return` in every slot.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

log = logging.getLogger(__name__)


class JobCancelled(Exception):
    """Raised by a job's work that stopped because it was asked to (see `Task.check`)."""


class Task(Protocol):
    """What a job's work function is handed: it may ask whether to stop and report progress."""

    def cancelled(self) -> bool: ...

    def check(self) -> None:
        """Raise JobCancelled if the job was cancelled."""

    def report(self, payload: object) -> None: ...


class Handle(Protocol):
    def cancel(self) -> None: ...

    def cancelled(self) -> bool: ...


@dataclass
class Reply:
    """Where a job's outcome goes, each called on the controller's thread: one of done, failed, cancelled."""

    done: Callable[[Any], None]
    failed: Callable[[str], None] = lambda _message: None
    cancelled: Callable[[], None] = lambda: None
    progress: Callable[[Any], None] = lambda _payload: None


class Executor(Protocol):
    def submit(self, lane: str, name: str, work: Callable[[Task], Any], reply: Reply) -> Handle:
        """Run `work` on the lane's thread (one job at a time per lane) and answer through `reply`."""


def failure_message(job_name: str, exc: BaseException) -> str:
    """One plain sentence for the window. A problem with the person's input (a file that is not a picture, a folder
    that cannot train, a damaged model or cache) is its own reason and nothing else; anything else is a fault of
    ours, whose traceback goes to the log file (explorer.paths.log_file; the About box says where), not to the
    terminal, and the sentence says where it is."""
    from explorer.engine.catalog import CatalogError
    from explorer.paths import log_file
    from trainer.card import ModelFileError
    from trainer.folders import DatasetError
    from trainer.images import ImageLoadError

    if isinstance(exc, ImageLoadError | DatasetError | ModelFileError | CatalogError | OSError):
        log.info("job %s: %s", job_name, exc)
        return " ".join(str(exc).split()) or type(exc).__name__
    log.error("job %s failed", job_name, exc_info=exc)
    return f"something went wrong ({' '.join(str(exc).split())[:200]}); the details are in {log_file()}"


@dataclass
class _InlineTask:
    name: str
    work: Callable[[Task], Any]
    reply: Reply
    stop: bool = False
    reports: list[object] = field(default_factory=list)

    def cancel(self) -> None:
        self.stop = True

    def cancelled(self) -> bool:
        return self.stop

    def check(self) -> None:
        if self.stop:
            raise JobCancelled(self.name)

    def report(self, payload: object) -> None:
        self.reports.append(payload)


class InlineExecutor:
    """Runs submitted jobs on the caller's thread when `run()` is called: tests decide what has finished.

    >>> ex = InlineExecutor()
    >>> seen = []
    >>> _ = ex.submit("query", "add", lambda task: 1 + 1, Reply(done=seen.append))
    >>> seen
    []
    >>> ex.run(), seen
    (1, [2])
    """

    def __init__(self) -> None:
        self.pending: list[_InlineTask] = []

    def submit(self, lane: str, name: str, work: Callable[[Task], Any], reply: Reply) -> Handle:
        task = _InlineTask(name, work, reply)
        self.pending.append(task)
        return task

    def run(self, count: int | None = None) -> int:
        """Run the oldest `count` pending jobs (all, and any they submit, when None); how many ran."""
        ran = 0
        while self.pending and (count is None or ran < count):
            task = self.pending.pop(0)
            ran += 1
            self._run(task)
        return ran

    @staticmethod
    def _run(task: _InlineTask) -> None:
        from trainer.progress import Cancelled  # torch-free

        try:  # run even when cancelled before it started, as Qt's pool does: the work decides what that means
            result = task.work(task)
        except (JobCancelled, Cancelled):
            task.reply.cancelled()
            return
        except Exception as exc:
            task.reply.failed(failure_message(task.name, exc))
            return
        for payload in task.reports:
            task.reply.progress(payload)
        if task.stop:
            task.reply.cancelled()
        else:
            task.reply.done(result)


class LatestJob:
    """One kind of background work of which only the latest started counts: replies of earlier ones are dropped.

    >>> ex, shown = InlineExecutor(), []
    >>> jobs = LatestJob(ex, "index")
    >>> jobs.start("first folder", lambda task: "first", Reply(done=shown.append))
    >>> jobs.start("second folder", lambda task: "second", Reply(done=shown.append))
    >>> ex.run(), shown, jobs.running
    (2, ['second'], False)
    """

    def __init__(self, executor: Executor, lane: str) -> None:
        self.executor = executor
        self.lane = lane
        self._serial = 0
        self._handle: Handle | None = None

    @property
    def running(self) -> bool:
        """A job of this kind was started and has not answered yet."""
        return self._handle is not None

    @property
    def stopping(self) -> bool:
        """The running job was asked to stop and has not answered yet."""
        return self._handle is not None and self._handle.cancelled()

    def start(self, name: str, work: Callable[[Task], Any], reply: Reply) -> None:
        """Start a job; from now on only its replies are delivered."""
        self._serial += 1
        serial = self._serial
        answered = False

        def current() -> bool:
            return serial == self._serial

        def ending(callback: Callable[..., None]) -> Callable[..., None]:
            def deliver(*args: Any) -> None:
                nonlocal answered
                if current():
                    answered = True
                    self._handle = None
                    callback(*args)

            return deliver

        def passing(payload: Any) -> None:
            if current():
                reply.progress(payload)

        self._handle = None
        handle = self.executor.submit(
            self.lane, name, work, Reply(ending(reply.done), ending(reply.failed), ending(reply.cancelled), passing)
        )
        if current() and not answered:  # an executor may answer before submit returns
            self._handle = handle

    def cancel(self) -> None:
        """Ask the running job to stop; its cancelled (or, if it finished first, done) reply still comes."""
        if self._handle is not None:
            self._handle.cancel()

    def forget(self) -> None:
        """Stop the running job and drop whatever it answers."""
        self.cancel()
        self._serial += 1
        self._handle = None
