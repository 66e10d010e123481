"""A folder chosen for training or testing, and its check running in the background (pages 1 and 2)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLineEdit,
    QPushButton,
    QWidget,
)

from explorer.app.fine_tune import (
    FolderReport,
    check_folder,
)
from explorer.ui.workers import Job, JobRunner
from trainer.progress import Progress

if TYPE_CHECKING:
    from trainer.progress import Progress


class FolderRow(QWidget):
    """A path field with a Choose… button; `chosen` fires on a pick or on Enter/focus-out after an edit."""

    chosen = Signal(object)  # Path

    def __init__(self, caption: str, placeholder: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.caption = caption
        self.edit = QLineEdit()
        self.edit.setPlaceholderText(placeholder)
        self.edit.editingFinished.connect(self._edited)
        button = QPushButton("Choose…")
        button.clicked.connect(self._browse)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.edit, 1)
        layout.addWidget(button)
        self._last = ""

    def path(self) -> Path | None:
        text = self.edit.text().strip()
        return Path(text).expanduser() if text else None

    def set_path(self, path: Path | None, emit: bool = True) -> None:
        self.edit.setText(str(path) if path else "")
        self.edit.deselect()
        self._last = self.edit.text()
        if emit and path is not None:
            self.chosen.emit(path)

    def _edited(self) -> None:
        if self.edit.text() != self._last:
            self._last = self.edit.text()
            path = self.path()
            if path is not None:
                self.chosen.emit(path)

    def _browse(self) -> None:
        start = str(self.path() or Path.home())
        name = QFileDialog.getExistingDirectory(self, self.caption, start)
        if name:
            self.set_path(Path(name))


class FolderCheck(QObject):
    """The latest check of one chosen folder, run in a worker; `changed` whenever its state changes.

    A check that is overtaken by a newer choice is dropped when it ends (scanning cannot be interrupted
    mid-way, but its answer is no longer anyone's).
    """

    changed = Signal()

    def __init__(self, runner: JobRunner, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.runner = runner
        self.path: Path | None = None
        self.report: FolderReport | None = None
        self.error = ""
        self.progress: Progress | None = None  # the running check's last report
        self._job: Job | None = None

    @property
    def busy(self) -> bool:
        return self._job is not None

    def check(self, path: Path, force: bool = False) -> None:
        path = Path(path).expanduser()
        if not force and path == self.path and (self._job is not None or self.report is not None):
            return
        if self._job is not None:
            self._job.cancel()
        self.path, self.report, self.error, self._job = path, None, "", None
        if not path.is_dir():
            self.error = f"{path} is not a folder."
            self.changed.emit()
            return
        self.progress = None
        job = Job(f"check {path}", lambda job: check_folder(path, job.report, job.cancelled))
        job.signals.progress.connect(self._progressed)
        job.signals.finished.connect(self._finished)
        job.signals.failed.connect(self._failed)
        job.signals.cancelled.connect(self._ended)
        self._job = job
        self.runner.start(job)
        self.changed.emit()

    def adopt(self, report: FolderReport) -> None:
        """Use a check made elsewhere (the folder page's) instead of scanning the same folder again."""
        if self._job is not None:
            self._job.cancel()
        self.path, self.report, self.error, self._job = report.folder.root, report, "", None
        self.changed.emit()

    def _progressed(self, job: Job, progress: Progress) -> None:
        if job is self._job:
            self.progress = progress
            self.changed.emit()

    def _finished(self, job: Job, report: FolderReport) -> None:
        if job is self._job:
            self._job, self.report = None, report
            self.changed.emit()

    def _failed(self, job: Job, message: str) -> None:
        if job is self._job:
            self._job, self.error = None, message.split(": ", 1)[-1]
            self.changed.emit()

    def _ended(self, job: Job) -> None:
        if job is self._job:
            self._job = None
            self.changed.emit()
