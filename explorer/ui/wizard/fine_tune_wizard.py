"""Fine-tune wizard: from a labelled folder to a model the explorer can use, without a terminal.

Five pages, one module each in this package: the folder, checked at once; the split by class; the settings with
a time estimate; training with live curves, Cancel and Resume; the result against the starting model,
saved by name and, with "Use it now", handed to the main window through `modelReady`.

It is a thin layer over `trainer`: the pages build a `TrainingPlan` (explorer.app.fine_tune) and every slow
step (scanning, measuring, `trainer.fit.fit`, evaluating, saving) runs as a `Job` on this wizard's runners,
the same background-thread pattern as the main window's, so the GUI thread never waits for them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QEvent, QObject, QSize, QTimer, Signal
from PySide6.QtWidgets import QDialog, QMessageBox, QWidget, QWizard

from explorer.app.fine_tune import Environment, FolderReport, TrainingPlan, probe_environment
from explorer.paths import models_dir, runs_dir
from explorer.ui.wizard.folder_page import FolderPage
from explorer.ui.wizard.result_page import ResultPage
from explorer.ui.wizard.settings_page import SettingsPage
from explorer.ui.wizard.split_page import SplitPage
from explorer.ui.wizard.training_page import TrainingPage
from explorer.ui.workers import Job, JobRunner
from trainer.config import FitConfig  # torch-free
from trainer.folders import LabelledFolder

if TYPE_CHECKING:
    from trainer.fit import FitResult

CONFIRM_STOP_AFTER_S = 30.0
"""Closing the wizard stops a run; after this many seconds of training that deserves a question first."""


class FineTuneWizard(QWizard):
    """The wizard; `modelReady(path)` is emitted by "Use it now" with the saved model's path."""

    modelReady = Signal(object)  # Path (without suffix) of the saved model
    environmentReady = Signal(object)  # Environment

    def __init__(
        self,
        parent: QWidget | None = None,
        folder: Path | None = None,
        fit_overrides: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Fine-tune a model")
        self.setWizardStyle(QWizard.WizardStyle.ModernStyle)
        self.setOption(QWizard.WizardOption.NoBackButtonOnStartPage, True)
        self.setOption(QWizard.WizardOption.NoBackButtonOnLastPage, True)
        self.models_dir: Path = models_dir()
        self.runs_dir: Path = runs_dir()
        self.fit_overrides: dict[str, Any] = dict(fit_overrides or {})
        """Extra FitConfig fields applied over the settings page (tests: crop size, batches per epoch)."""
        self.environment: Environment | None = None
        self.everything: LabelledFolder | None = None
        """Set by the result page's "Train again on everything": the whole folder trains, nothing is held out."""

        self.scan_runner = JobRunner("wizard-scan", 2, self)
        self.work_runner = JobRunner("wizard-work", 1, self)
        self.train_runner = JobRunner("wizard-train", 1, self)

        self.folder_page = FolderPage(self.scan_runner)
        self.split_page = SplitPage(self.scan_runner)
        self.settings_page = SettingsPage(self.work_runner)
        self.training_page = TrainingPage(self.train_runner)
        self.result_page = ResultPage(self.work_runner)
        for page in (self.folder_page, self.split_page, self.settings_page, self.training_page, self.result_page):
            self.addPage(page)
        self.settings_page.setButtonText(QWizard.WizardButton.CommitButton, "Train")
        self.setButtonText(QWizard.WizardButton.FinishButton, "Save && close")

        job = Job("probe", lambda _job: probe_environment())
        job.signals.finished.connect(self._probed)
        job.signals.failed.connect(lambda _j, msg: self.settings_page.estimate.setText(f"Cannot use torch: {msg}"))
        self.work_runner.start(job)
        if folder is not None:
            self.folder_page.set_folder(Path(folder))
        if parent is not None:
            parent.installEventFilter(self)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        """When the window that owns this wizard closes, a run stops at its next batch (checkpoint kept).

        Otherwise deleting the window would wait, in the thread pool's destructor, for training to end.
        """
        if watched is self.parent() and event.type() == QEvent.Type.Close and self.training_page.running:
            self.training_page.cancel()
        return False

    def sizeHint(self) -> QSize:
        return QSize(940, 720)

    def _probed(self, _job: Job, env: Environment) -> None:
        self.environment = env
        self.settings_page.set_environment(env)
        self.environmentReady.emit(env)

    # -- what the pages decided ---------------------------------------------------------------------------
    def plan(self) -> TrainingPlan:
        """The run the settings describe (trainer.fit arguments); the same choices give the same run folder."""
        parts = self.settings_page.parts()
        if parts is None:
            raise RuntimeError("the split page is not complete")
        fields = {**self.settings_page.config_fields(), **self.fit_overrides}
        fitted, selection, test = parts
        protocol = "none" if self.everything is not None else self.split_page.protocol()
        return TrainingPlan(
            fitted, test, FitConfig(**fields), self.settings_page.base(), self.settings_page.backbone(),
            self.runs_dir, selection, protocol,
        )  # fmt: skip

    def folder_report(self) -> FolderReport | None:
        return self.folder_page.report

    def protocol(self) -> str:
        return self.split_page.protocol()

    def split(self) -> tuple[LabelledFolder, LabelledFolder] | None:
        return self.split_page.split()

    def source_folder(self) -> LabelledFolder | None:
        return self.split_page.source()

    def training_outcome(self) -> tuple[TrainingPlan | None, FitResult | None]:
        return self.training_page.plan, self.training_page.result

    def set_training_running(self, running: bool) -> None:
        """While a run trains, the settings page is a commit page: Back cannot change what is training."""
        self.settings_page.setCommitPage(running)

    def train_on_everything(self) -> None:
        """The same settings on the whole folder (nothing held out); the result page shows that run next."""
        self.everything = self.split_page.source()
        self.training_page.restart()

    def use_model(self, path: Path) -> None:
        """Hand the saved model to the window (which switches to it and re-indexes), and close."""
        self.modelReady.emit(Path(path))
        self.accept()

    # -- closing ------------------------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return any(r.busy() for r in (self.scan_runner, self.work_runner, self.train_runner))

    def done(self, result: int) -> None:
        """Closing stops a training run (its checkpoint is kept: the same settings resume it later).

        The wizard is deleted only once its workers have ended: deleting a thread pool waits for its jobs,
        which would freeze the window for as long as the current batch or folder scan takes.
        """
        page = self.training_page
        if result != QDialog.DialogCode.Accepted.value and not self._may_discard_result():
            return
        if page.running and result != QDialog.DialogCode.Accepted.value:
            if page.seconds_running() > CONFIRM_STOP_AFTER_S and self.isVisible():
                answer = QMessageBox.question(
                    self,
                    "Stop training?",
                    "Training is running. Stop it and close? The last checkpoint is kept: running the wizard "
                    "again with the same folder and settings resumes from it.",
                )
                if answer != QMessageBox.StandardButton.Yes:
                    return
            page.cancel()
        for runner in (self.scan_runner, self.work_runner):
            runner.cancel_all()
        super().done(result)
        self._delete_when_idle()

    def _may_discard_result(self) -> bool:
        """A finished run whose model was not saved: ask before closing, and say where the run stays."""
        plan, result = self.training_page.plan, self.training_page.result
        if result is None or plan is None or self.result_page.saved is not None or not self.isVisible():
            return True
        answer = QMessageBox.question(
            self,
            "Close without saving the model?",
            f"The fine-tuned model is not saved. Its run stays in {plan.out.parent} (as {plan.out.name}): opening "
            "the wizard again with the same folder and settings shows this result again without training. Close?",
        )
        return answer == QMessageBox.StandardButton.Yes

    def _delete_when_idle(self) -> None:
        if self.busy:
            QTimer.singleShot(250, self, self._delete_when_idle)
        else:
            self.deleteLater()
