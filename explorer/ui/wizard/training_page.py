"""Page 4: training with live curves, Cancel and Resume."""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from explorer.app.fine_tune import (
    TrainingPlan,
    train,
)
from explorer.ui.plot_style import BINARY_COLOR, FLOAT_COLOR, TITLE_SIZE, add_legend, style_plot
from explorer.ui.wizard.common import (
    ERROR_COLOR,
    OK_COLOR,
    Page,
    colored,
)
from explorer.ui.workers import Job, JobRunner
from trainer.epoch_choice import run_parts
from trainer.progress import Progress, format_time_left

if TYPE_CHECKING:
    from trainer.fit import FitResult
    from trainer.progress import Progress


class TrainingPage(Page):
    """Live curves, time left, Cancel and Resume over one `fit` run in a worker."""

    finished = Signal(object)  # FitResult
    batchFinished = Signal(int, int, float)  # step, epoch, loss: on the GUI thread, after each batch

    def __init__(self, runner: JobRunner, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setTitle("4 · Training")
        self.setSubTitle(
            "Loss should fall; Recall@1 on the held-out images should rise. The best epoch on training images "
            "(never the held-out ones) is kept. Cancelling keeps the last checkpoint, and Resume continues from it."
        )
        self.runner = runner
        self.plan: TrainingPlan | None = None
        self.result: FitResult | None = None
        self.job: Job | None = None
        self.state = "idle"  # idle, running, cancelled, failed, done
        self.started_at = 0.0

        self.status = QLabel()
        self.status.setTextFormat(Qt.TextFormat.RichText)
        self.status.setWordWrap(True)
        self.progress = QProgressBar()
        self.progress.setTextVisible(False)
        self.progress.setMaximumHeight(12)
        self.cancel_button = QPushButton("Cancel training")
        self.cancel_button.setToolTip("Stop after the current batch; the checkpoint is kept")
        self.cancel_button.clicked.connect(self.cancel)
        self.resume_button = QPushButton("Resume")
        self.resume_button.setToolTip("Continue the same run from its last checkpoint")
        self.resume_button.clicked.connect(self.start)

        self.canvas = pg.GraphicsLayoutWidget()
        self.canvas.setMinimumHeight(220)
        self.loss_plot = self.canvas.addPlot(row=0, col=0)
        style_plot(self.loss_plot, "Training loss", "step", "loss", grid=True)
        self.loss_curve = self.loss_plot.plot(pen=pg.mkPen("#888888", width=1))
        self.loss_mean = self.loss_plot.plot(pen=pg.mkPen("#333333", width=2))
        self.recall_plot = self.canvas.addPlot(row=0, col=1)
        style_plot(self.recall_plot, "Recall@1 on the held-out images", "epoch (0 = start)", "R@1 (%)", grid=True)
        add_legend(self.recall_plot, (-8, -8))
        self.float_curve = self.recall_plot.plot(
            pen=pg.mkPen(FLOAT_COLOR, width=2), symbol="o", symbolSize=7, symbolBrush=FLOAT_COLOR, name="float"
        )
        self.binary_curve = self.recall_plot.plot(
            pen=pg.mkPen(BINARY_COLOR, width=2), symbol="t", symbolSize=8, symbolBrush=BINARY_COLOR, name="binary"
        )
        self.recall_plot.setYRange(0, 100, padding=0.02)
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(5000)
        self.log.setMaximumHeight(110)
        self.log.setPlaceholderText("Messages from the trainer appear here.")

        buttons = QHBoxLayout()
        buttons.addWidget(self.status, 1)
        buttons.addWidget(self.cancel_button)
        buttons.addWidget(self.resume_button)
        layout = QVBoxLayout(self)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.canvas, 1)
        layout.addWidget(self.log)

        self._refresh_timer = QTimer(self)
        self._refresh_timer.setSingleShot(True)
        self._refresh_timer.setInterval(150)  # redraw at most ~7 times a second, however fast the steps
        self._refresh_timer.timeout.connect(self._redraw)
        self._reset()

    def _reset(self) -> None:
        self._title_loss_plot()
        self.steps: list[float] = []
        self.losses: list[float] = []
        self.epochs: list[tuple[int, dict[str, float]]] = []
        self.last_step = 0
        self.total_steps = 0
        self.result = None
        self.state = "idle"
        self.log.clear()
        self._redraw()
        self._show_buttons()

    def initializePage(self) -> None:
        plan = self.fw().plan()
        if self.plan is not None and plan.out == self.plan.out and self.state in ("running", "done"):
            return
        self.plan = plan
        self._reset()
        self.start()

    def _title_loss_plot(self) -> None:
        """A stretch (trainer.class_stretch) takes no steps: its empty loss plot says so instead of looking stuck."""
        stretched = self.plan is not None and bool(self.plan.config.stretch)
        title = "Training loss (none: the embedding layer is stretched in one pass)" if stretched else "Training loss"
        self.loss_plot.setTitle(title, size=TITLE_SIZE)

    def isComplete(self) -> bool:
        return self.state == "done" and self.result is not None

    def restart(self) -> None:
        """A new plan from the wizard (trained on everything, say), shown and started on this page."""
        if self.state == "running":
            return
        self.plan = self.fw().plan()
        self._reset()
        if self.fw().currentPage() is not self:
            self.fw().back()
        self.start()

    # -- the run --------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Run `fit` for the plan; with a checkpoint on disk (after Cancel), it resumes from there."""
        if self.plan is None or self.state == "running":
            return
        plan = self.plan
        resuming = plan.checkpoint.exists()
        if not resuming:  # a fresh start (after a failure, or a cancel before the first checkpoint)
            self.steps, self.losses, self.epochs = [], [], []
        self.state = "running"
        self.started_at = time.monotonic()
        cfg = plan.config
        test = plan.test
        judged = (
            f"judged on {len(test.samples):,} held-out images of {len(test.classes)} classes"
            if test is not None
            else "nothing held out (trained on everything)"
        )
        parts = run_parts(plan.train, plan.selection, cfg)
        self._say(
            ("Resuming" if resuming else "Training")
            + f" {cfg.method} for {cfg.epochs} epoch(s) on {cfg.device}: {len(parts.train.classes)} classes, "
            f"{len(parts.train.samples):,} images; {parts.text()}; {judged}."
        )
        self._say(f"Run folder: {plan.run_dir}")
        self.status.setText("Loading the starting model…" if not resuming else "Resuming from the checkpoint…")
        self.progress.setRange(0, 0)

        def work(job: Job) -> FitResult:
            from trainer.fit import FitCallbacks

            callbacks = FitCallbacks(
                on_batch=lambda step, epoch, loss, _lr: job.report(("batch", step, epoch, loss)),
                on_epoch=lambda epoch, metrics: job.report(("epoch", epoch, dict(metrics))),
                on_progress=lambda p: job.report(("progress", p)),
                on_message=lambda text: job.report(("message", text)),
            )
            return train(plan, callbacks, job.cancelled)

        job = Job("train", work)
        job.signals.progress.connect(self._on_report)
        job.signals.finished.connect(self._on_finished)
        job.signals.failed.connect(self._on_failed)
        job.signals.cancelled.connect(self._on_cancelled)
        self.job = job
        self._show_buttons()
        self.runner.start(job)

    def cancel(self) -> None:
        if self.job is not None and self.state == "running":
            self.job.cancel()
            self.cancel_button.setEnabled(False)
            self.status.setText("Cancelling after the current batch…")

    @property
    def running(self) -> bool:
        return self.state == "running"

    def seconds_running(self) -> float:
        return time.monotonic() - self.started_at if self.running else 0.0

    def _on_report(self, job: Job, payload: tuple[Any, ...]) -> None:
        if job is not self.job:
            return
        kind = payload[0]
        if kind == "batch":
            _, step, epoch, loss = payload
            self.last_step = step
            self.steps.append(float(step))
            self.losses.append(float(loss))
            self.batchFinished.emit(step, epoch, loss)
        elif kind == "epoch":
            _, epoch, metrics = payload
            self.epochs = [e for e in self.epochs if e[0] != epoch] + [(epoch, metrics)]
            self._say(self._epoch_line(epoch, metrics))
        elif kind == "progress":
            self._show_progress(payload[1])
        elif kind == "message":
            self._say(str(payload[1]))
        if not self._refresh_timer.isActive():
            self._refresh_timer.start()

    def _epoch_line(self, epoch: int, metrics: dict[str, float]) -> str:
        recall = ""
        if "R@1" in metrics:
            recall = f"R@1 {100 * metrics['R@1']:.1f}% (binary {100 * metrics.get('binary R@1', math.nan):.1f}%)"
        if epoch == 0:
            return f"Starting model on the held-out images: {recall}" if recall else "Starting model measured."
        loss = metrics.get("loss", math.nan)
        cfg_epochs = self.plan.config.epochs if self.plan else "?"
        return f"Epoch {epoch}/{cfg_epochs}: mean loss {loss:.4f}" + (f", {recall}" if recall else "")

    def _show_progress(self, p: Progress) -> None:
        self.progress.setRange(0, max(1, p.total))
        self.progress.setValue(p.done)
        left = format_time_left(p.seconds_left)
        if p.stage == "training":
            self.total_steps = p.total
            per_epoch = max(1, p.total // max(1, self.plan.config.epochs if self.plan else 1))
            epoch = min((p.done - 1) // per_epoch + 1, self.plan.config.epochs if self.plan else 1)
            text = f"Epoch {epoch} of {self.plan.config.epochs if self.plan else '?'} · step {p.done:,} of {p.total:,}"
        else:
            text = f"{p.stage.capitalize()}: {p.done:,} of {p.total:,} images"
        if self.job is not None and self.job.cancelled():
            text = "Cancelling after the current batch… " + text
        self.status.setText(text + (f" · <b>{left}</b>" if left else ""))

    def _on_finished(self, job: Job, result: FitResult) -> None:
        if job is not self.job:
            return
        self.job, self.result, self.state = None, result, "done"
        for record in result.history:  # a resumed run reports only its own epochs: take the whole history
            self.epochs = [e for e in self.epochs if e[0] != record.get("epoch")] + [(int(record["epoch"]), record)]
        self.progress.setRange(0, 1)
        self.progress.setValue(1)
        self.status.setText(colored("<b>Finished.</b> Next shows how it compares with the starting model.", OK_COLOR))
        self._say(f"Finished after {result.card.recipe.get('steps', '?')} steps; model written to {result.model_path}")
        self._redraw()
        self._show_buttons()
        self.finished.emit(result)

    def _on_failed(self, job: Job, message: str) -> None:
        if job is not self.job:
            return
        self.job, self.state = None, "failed"
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.status.setText(colored(f"<b>Training failed:</b> {message}", ERROR_COLOR))
        self._say(f"Failed: {message}")
        self._show_buttons()

    def _on_cancelled(self, job: Job) -> None:
        if job is not self.job:
            return
        self.job, self.state = None, "cancelled"
        plan = self.plan
        kept = plan is not None and plan.checkpoint.exists()
        where = f"the checkpoint in {plan.run_dir} is kept" if kept and plan else "no checkpoint had been written yet"
        self.status.setText(
            f"<b>Cancelled</b> at step {self.last_step:,}: {where}. Resume continues the same run."
            if kept
            else f"<b>Cancelled</b> before training started ({where}); Resume starts it again."
        )
        self._say(f"Cancelled at step {self.last_step}; {where}.")
        self._show_buttons()

    # -- widgets --------------------------------------------------------------------------------------------
    def _say(self, text: str) -> None:
        self.log.appendPlainText(text)

    def _show_buttons(self) -> None:
        running = self.state == "running"
        self.cancel_button.setVisible(running)
        self.cancel_button.setEnabled(running)
        self.resume_button.setVisible(self.state in ("cancelled", "failed"))
        self.resume_button.setText("Try again" if self.state == "failed" else "Resume")
        # Going back while a run is training would leave it orphaned: the settings page acts as a commit
        # page (Back disabled) exactly while this page's run is going.
        wizard = self.wizard()
        if wizard is not None:
            self.fw().set_training_running(running)
        self.completeChanged.emit()

    def _redraw(self) -> None:
        if self.steps:
            steps, losses = np.array(self.steps), np.array(self.losses)
            few = len(losses) <= 40  # a short run is a handful of points: show them
            self.loss_curve.setData(steps, losses, symbol="o" if few else None, symbolSize=5, symbolBrush="#666")
            window = max(1, min(25, len(losses) // 5))
            if window > 1:
                mean = np.convolve(losses, np.ones(window) / window, mode="valid")
                self.loss_mean.setData(steps[window - 1 :], mean)
            else:
                self.loss_mean.setData([], [])
            if self.total_steps:
                self.loss_plot.setXRange(0, self.total_steps, padding=0.02)
        else:
            self.loss_curve.setData([], [])
            self.loss_mean.setData([], [])
        measured = sorted(((e, m) for e, m in self.epochs if "R@1" in m), key=lambda em: em[0])
        x = np.array([e for e, _ in measured], np.float64)
        self.float_curve.setData(x, np.array([100 * m["R@1"] for _, m in measured], np.float64))
        self.binary_curve.setData(x, np.array([100 * m.get("binary R@1", math.nan) for _, m in measured], np.float64))
        if self.plan is not None:
            n = max(1, self.plan.config.epochs)
            self.recall_plot.setXRange(0, n, padding=0.04)
            step = max(1, math.ceil(n / 10))
            self.recall_plot.getAxis("bottom").setTicks([[(e, str(e)) for e in range(0, n + 1, step)], []])
