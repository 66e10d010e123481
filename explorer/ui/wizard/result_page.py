"""Page 5: the result against the starting model, saved by name, used now, or trained again on everything."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QSizePolicy,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from explorer.app.fine_tune import (
    TrainingPlan,
    evaluate_both,
    held_out_recall,
    is_worse,
    safe_name,
    save_model_as,
)
from explorer.ui.wizard.common import (
    ERROR_COLOR,
    OK_COLOR,
    WARN_COLOR,
    Page,
    colored,
    help_label,
)
from explorer.ui.workers import Job, JobRunner
from trainer.epoch_choice import RunParts, run_parts


def verdict(recall: dict[str, tuple[float, float]]) -> str:
    """One sentence on whether the new model is the better one, float and binary (rich text)."""
    float_change = recall["R@1"][1] - recall["R@1"][0]
    start, end = recall.get("binary R@1", recall["R@1"])
    binary_change = end - start
    if float_change >= 0 and binary_change >= 0 and (float_change > 0 or binary_change > 0):
        return colored("The fine-tuned model retrieves better than the starting model.", OK_COLOR)
    if float_change > 0:
        return colored(
            f"The fine-tuned model retrieves better with float embeddings, but its binary codes lost "
            f"{-100 * binary_change:.1f} points: keep the float ranking for it, or train longer.",
            WARN_COLOR,
        )
    if float_change == 0 and binary_change == 0:
        return "Both models find a same-class nearest neighbour about equally often on these classes."
    return colored(
        "The fine-tuned model is worse on these images: keep the starting model. More images per class help most; "
        "more epochs rarely do (the best epoch was already kept).",
        WARN_COLOR,
    )


def kept_sentence(kept_epoch: int | None, epochs: int, parts: RunParts) -> str:
    """Which epoch was exported and why, for the result page (rich text); with the small-folder recipe's one pass
    (`parts.stretch`, trainer.class_stretch), epoch 1 is the stretched embedding layer."""
    selection, stretched = parts.selection, parts.stretch
    if kept_epoch is None:
        return f"The last of {epochs} epochs was kept."
    if selection is not None and not selection.samples:
        return colored(
            "<b>The starting model is kept</b>: with fewer than 4 training classes nothing can judge what training "
            "does to new classes. The my-classes protocol suits such a folder.",
            WARN_COLOR,
        )
    where = (
        f"{parts.folds} folds of the {len(parts.train.samples):,} training images, each judging a "
        + ("stretch fitted on" if stretched else "copy trained on")
        + " the others"
        if parts.folds
        else f"{len(selection.samples):,} training images set aside"
        if selection is not None
        else "training images"
    )
    if kept_epoch == 0:
        what = "The stretched embedding layer <b>did not beat" if stretched else "<b>No epoch beat"
        return colored(
            f"{what} the starting model</b> on the {where}, so the starting model is kept: the explorer can go on "
            "with the model it has.",
            WARN_COLOR,
        )
    if stretched:
        return (
            "The embedding layer, stretched along the directions that tell your classes apart, was kept: it beat "
            f"the starting model on the {where}; the held-out images chose nothing."
        )
    return f"Epoch {kept_epoch} of {epochs} was kept: the best on the {where}; the held-out images chose nothing."


# -- 5. result -------------------------------------------------------------------------------------------


class ResultPage(Page):
    """The new model against the starting one on the held-out classes; save it, or use it at once."""

    def __init__(self, runner: JobRunner, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setTitle("5 · Result")
        self.setSubTitle("Recall@1 on the held-out images: the share of them whose nearest neighbour (among the "
                         "other held-out images) is of the same class.")  # fmt: skip
        self.runner = runner
        self.saved: Path | None = None
        self._save_job: Job | None = None
        self._eval_job: Job | None = None
        self._then: Any = None

        self.table = QTableWidget(2, 3)
        self.table.setHorizontalHeaderLabels(["Starting model", "Fine-tuned", "Change"])
        header = self.table.horizontalHeaderItem(0)
        if header is not None:
            header.setToolTip(
                "The run's starting point (epoch 0): the starting weights, with the new embedding layer initialised"
            )
        self.table.setVerticalHeaderLabels(["Float (cosine)", "Binary (Hamming)"])
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.table.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.table.setFixedHeight(
            self.table.horizontalHeader().sizeHint().height() + 2 * self.table.verticalHeader().defaultSectionSize() + 4
        )
        self.verdict = QLabel()
        self.verdict.setWordWrap(True)
        self.verdict.setTextFormat(Qt.TextFormat.RichText)

        self.detail_button = QPushButton("Evaluate every dimension")
        self.detail_button.setToolTip("Recall@1 of both models at every nested dimension, float and binary")
        self.detail_button.clicked.connect(self.evaluate_details)
        self.detail_status = help_label()
        self.details = QTableWidget(0, 5)
        self.details.setHorizontalHeaderLabels(["Dimension", "Start float", "New float", "Start binary", "New binary"])
        self.details.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.details.verticalHeader().hide()
        self.details.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.details.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.details.hide()

        self.name = QLineEdit()
        self.name.textEdited.connect(self._name_edited)
        self.save_button = QPushButton("Save")
        self.save_button.clicked.connect(lambda: self.save())
        self.save_as_button = QPushButton("Save as…")
        self.save_as_button.clicked.connect(self.save_as)
        self.use_button = QPushButton("Use it now")
        self.use_button.setToolTip("Save it and switch the explorer to it: the open folder is indexed again")
        self.use_button.setDefault(True)
        self.use_button.setStyleSheet("font-weight: bold; padding: 4px 14px;")
        self.use_button.clicked.connect(self.use_now)
        self.again_button = QPushButton("Train again on everything with these settings")
        self.again_button.setToolTip(
            "The same settings on every image of the folder (nothing held out): the model to keep, once these "
            "settings are known to help"
        )
        self.again_button.clicked.connect(lambda: self.fw().train_on_everything())
        self.save_status = help_label()

        detail_row = QHBoxLayout()
        detail_row.addWidget(self.detail_button)
        detail_row.addWidget(self.detail_status, 1)
        save_box = QGroupBox("Save the model")
        save_layout = QGridLayout(save_box)
        save_layout.addWidget(QLabel("Name"), 0, 0)
        save_layout.addWidget(self.name, 0, 1)
        save_layout.addWidget(self.save_button, 0, 2)
        save_layout.addWidget(self.save_as_button, 0, 3)
        save_layout.addWidget(self.save_status, 1, 1, 1, 3)
        use_row = QHBoxLayout()
        use_row.addWidget(self.again_button)
        use_row.addStretch(1)
        use_row.addWidget(self.use_button)

        layout = QVBoxLayout(self)
        layout.addWidget(self.table)
        layout.addWidget(self.verdict)
        layout.addLayout(detail_row)
        layout.addWidget(self.details)
        layout.addStretch(1)
        layout.addWidget(save_box)
        layout.addLayout(use_row)
        self.use_button.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Fixed)

    def initializePage(self) -> None:
        plan, result = self.fw().training_outcome()
        if result is None or plan is None:
            return
        self.saved = None
        self.details.hide()
        self.details.setRowCount(0)
        self.detail_status.setText("")
        recall = held_out_recall(result.history, result.kept_epoch)
        self.recall = recall
        for row, key in enumerate(("R@1", "binary R@1")):
            start, end = recall.get(key, (math.nan, math.nan)) if recall else (math.nan, math.nan)
            change = end - start
            cells = [f"{100 * start:.1f}%", f"{100 * end:.1f}%", f"{100 * change:+.1f} points"]
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text if math.isfinite(start if col == 0 else end) else "n/a")
                item.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
                if col == 2 and math.isfinite(change):
                    item.setForeground(pg.mkColor(OK_COLOR if change > 0 else ERROR_COLOR if change < 0 else "#333"))
                self.table.setItem(row, col, item)
        test = plan.test
        kept = kept_sentence(result.kept_epoch, plan.config.epochs, run_parts(plan.train, plan.selection, plan.config))
        if test is None:
            self.verdict.setText(
                f"Trained on every image of {plan.train.root}: nothing was held out to measure. {kept}"
            )
        elif recall and "R@1" in recall:
            judged = f"{len(test.samples):,} held-out images of {len(test.classes)} classes"
            self.verdict.setText(f"Judged on {judged}. {kept} {verdict(recall)}")
        else:
            self.verdict.setText(f"No held-out measurement was recorded for this run. {kept}")
        self.again_button.setVisible(test is not None and self.fw().source_folder() is not None)
        keep_start = result.kept_epoch == 0 or is_worse(recall)
        self.use_button.setDefault(not keep_start)
        self.use_button.setText("Use it now…" if keep_start else "Use it now")
        name = f"{safe_name(plan.train.root.name) or 'model'}-{plan.config.method}"
        self.name.setText(self._unique(name))
        self._show_saved()

    # -- saving ---------------------------------------------------------------------------------------------
    def _unique(self, name: str) -> str:
        folder = self.fw().models_dir
        candidate, n = name, 2
        while Path(str(folder / candidate) + ".json").exists():
            candidate, n = f"{name}-{n}", n + 1
        return candidate

    def _name_edited(self, _text: str) -> None:
        self.saved = None
        self._show_saved()

    def _show_saved(self) -> None:
        busy = self._save_job is not None
        self.save_button.setEnabled(not busy and self.saved is None and bool(safe_name(self.name.text())))
        self.save_button.setText("Saved" if self.saved is not None else "Save")
        self.save_as_button.setEnabled(not busy)
        self.use_button.setEnabled(not busy)
        if busy:
            self.save_status.setText("Saving…")
        elif self.saved is not None:
            self.save_status.setText(
                f"Saved as <b>{self.saved.name}</b> in {self.saved.parent}. Choose it any time with "
                "File ▸ Model… (Ctrl+M)."
            )
        else:
            self.save_status.setText(f"Saved in {self.fw().models_dir}, or anywhere with Save as….")

    def target(self) -> Path | None:
        name = safe_name(self.name.text())
        return self.fw().models_dir / name if name else None

    def save(self, target: Path | None = None, then: Any = None) -> bool:
        """Save (in a worker) to `target` (default: the models folder under the name); then call `then(path)`."""
        result, plan = self.fw().training_outcome()[::-1]
        if result is None or plan is None or self._save_job is not None:
            return False
        if target is None:
            target = self.target()
            if target is None:
                self.save_status.setText(colored("Give the model a name first.", ERROR_COLOR))
                return False
            if Path(str(target) + ".json").exists() and self.saved != target:
                answer = QMessageBox.question(self, "Replace the model?", f"{target.name} exists. Replace it?")
                if answer != QMessageBox.StandardButton.Yes:
                    return False
        notes = self._notes(plan)
        source, cleanup = result.model_path.with_suffix(""), plan.run_dir
        name = target.name
        job = Job("save model", lambda _job: save_model_as(source, target, name, notes, cleanup))
        job.signals.finished.connect(self._saved)
        job.signals.failed.connect(self._save_failed)
        self._save_job, self._then = job, then
        self.runner.start(job)
        self._show_saved()
        return True

    def save_as(self) -> None:
        start = str(self.target() or self.fw().models_dir)
        name, _ = QFileDialog.getSaveFileName(self, "Save the model", start, "Models (*.safetensors)")
        if name:
            target = Path(name)
            target = target.with_suffix("") if target.suffix in (".safetensors", ".json") else target
            self.name.setText(target.name)
            self.save(target)

    def use_now(self) -> None:
        """Save if needed, then hand the model to whoever listens (the main window switches to it); a model that
        is worse than the starting one on the held-out images, or is the starting one, is switched to only
        after a question."""
        result = self.fw().training_outcome()[1]
        recall = getattr(self, "recall", None)
        doubtful = result is not None and (result.kept_epoch == 0 or is_worse(recall))
        if doubtful and result is not None and not self.confirm_use(result.kept_epoch, recall):
            return
        if self.saved is not None:
            self.fw().use_model(self.saved)
        else:
            self.save(then=self.fw().use_model)

    def confirm_use(self, kept_epoch: int | None, recall: dict[str, tuple[float, float]] | None) -> bool:
        """Ask before switching to a model that is no better than the starting one."""
        if kept_epoch == 0:
            text = ("No epoch beat the starting model, so this is the starting model under a new name. Switch the "
                    "explorer to it anyway?")  # fmt: skip
        else:
            changes = ", ".join(
                f"{'float' if k == 'R@1' else 'binary'} {100 * a:.1f} → {100 * b:.1f}"
                for k, (a, b) in (recall or {}).items()
            )
            text = (f"On the held-out images the fine-tuned model finds fewer same-class neighbours than the starting "
                    f"model (Recall@1 {changes}). Switch the explorer to it anyway?")  # fmt: skip
        answer = QMessageBox.question(self, "Use a model that is not better?", text)
        return answer == QMessageBox.StandardButton.Yes

    def _notes(self, plan: TrainingPlan) -> dict[str, Any]:
        recall = getattr(self, "recall", None) or {}
        if plan.test is None:
            return {"held_out": {"none": "trained on every image"}}
        held_out = {
            "test_folder": str(plan.test.root), "classes": len(plan.test.classes), "images": len(plan.test.samples),
        }  # fmt: skip
        for key, (start, end) in recall.items():
            held_out[key] = end
            held_out[f"starting model {key}"] = start
        return {"held_out": held_out}

    def _saved(self, job: Job, path: Path) -> None:
        if job is not self._save_job:
            return
        self._save_job, self.saved = None, path
        self._show_saved()
        then, self._then = self._then, None
        if then is not None:
            then(path)

    def _save_failed(self, job: Job, message: str) -> None:
        if job is not self._save_job:
            return
        self._save_job, self._then = None, None
        self._show_saved()
        self.save_status.setText(colored(f"Cannot save: {message}", ERROR_COLOR))

    def validatePage(self) -> bool:
        """Finish saves the model first (in a worker) and closes the wizard when it is written."""
        if self.saved is not None:
            return True
        if self._save_job is None:
            self.save(then=lambda _path: self.fw().accept())
        return False

    # -- every dimension ------------------------------------------------------------------------------------
    def evaluate_details(self) -> None:
        result, plan = self.fw().training_outcome()[::-1]
        if result is None or plan is None or self._eval_job is not None or plan.test is None:
            return
        base, test, device = plan.base, plan.test, plan.config.device
        new, limit = result.model_path.with_suffix(""), plan.config.eval_max_images
        job = Job("evaluate", lambda j: evaluate_both(base, new, test, device, limit, j.cancelled))
        job.signals.finished.connect(self._evaluated)
        job.signals.failed.connect(self._evaluate_failed)
        self._eval_job = job
        self.detail_button.setEnabled(False)
        self.detail_status.setText(f"Embedding {min(len(test.samples), limit):,} test images with both models…")
        self.runner.start(job)

    def _evaluated(self, job: Job, metrics: dict[str, Any]) -> None:
        self._eval_job = None
        self.detail_button.setEnabled(True)
        self.detail_status.setText(
            "Recall@1 (%) at every nested dimension, both models on the same held-out images. Here the starting "
            "model is judged as it was, with its own dimensions (the table above starts from it after the new "
            "embedding layer was initialised)."
        )
        dims = sorted({d for m in metrics.values() for per in m.values() for d in per})
        self.details.setRowCount(len(dims))
        for row, d in enumerate(dims):
            values = [str(d)]
            for label, rep in (("start", "float"), ("new", "float"), ("start", "binary"), ("new", "binary")):
                r = metrics[label].get(rep, {}).get(d, {}).get("R@1")
                values.append(f"{100 * r:.1f}" if r is not None else "")
            for col, text in enumerate(values):
                item = QTableWidgetItem(text)
                item.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
                self.details.setItem(row, col, item)
        rows_height = len(dims) * self.details.verticalHeader().defaultSectionSize()
        self.details.setFixedHeight(self.details.horizontalHeader().sizeHint().height() + rows_height + 4)
        self.details.show()

    def _evaluate_failed(self, job: Job, message: str) -> None:
        self._eval_job = None
        self.detail_button.setEnabled(True)
        self.detail_status.setText(colored(f"Evaluation failed: {message}", ERROR_COLOR))
