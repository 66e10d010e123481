"""The fine-tune wizard's five pages: folder, split, settings, training, result.

Each page only turns worker results into widgets: scanning, measuring, training, evaluating and saving all
run as `Job`s on the wizard's runners (explorer.ui.workers), and every update reaches the widgets through
the jobs' queued signals. The pages share state through the wizard object (`FineTuneWizard`), not through
QWizard's string-keyed fields, so types survive.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListWidget,
    QMessageBox,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QRadioButton,
    QSizePolicy,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
    QWizardPage,
)

from explorer.paths import BUNDLED_MODEL
from explorer.ui.plots import BINARY_COLOR, FLOAT_COLOR
from explorer.ui.skipped_table import SkippedFilesTable
from explorer.ui.wizard_jobs import (
    DEFAULT_BACKBONE,
    MIN_SPLIT_CLASSES,
    Environment,
    FolderReport,
    TrainingPlan,
    card_summary,
    check_folder,
    evaluate_both,
    evaluation_problems,
    format_duration,
    held_out_recall,
    is_worse,
    safe_name,
    save_model_as,
    train,
)
from explorer.ui.workers import Job, JobRunner
from trainer.backbone_specs import BACKBONE_INFO
from trainer.card import ModelFileError
from trainer.estimate import RunShape, estimate_seconds  # torch-free (stage_seconds imports torch when called)
from trainer.folders import MIN_IMAGES_PER_CLASS, carve_validation
from trainer.progress import Progress, format_time_left
from trainer.recipe import CPU_CROP, CPU_STAGES, FolderShape, default_recipe, recipe_warnings

if TYPE_CHECKING:
    from explorer.ui.wizard import FineTuneWizard
    from trainer.data import LabelledFolder
    from trainer.fit import FitResult
    from trainer.progress import Progress

ERROR_COLOR = "#b00020"
WARN_COLOR = "#b36b00"
OK_COLOR = "#1b7a3a"
BAR_COLOR = "#1f6fb4"
SMALL_BAR_COLOR = "#d0453a"


# -- small widgets ---------------------------------------------------------------------------------------


def help_label(text: str = "") -> QLabel:
    """The one line of help under a setting: small and grey, so the settings themselves stay scannable."""
    label = QLabel(text)
    label.setWordWrap(True)
    label.setTextFormat(Qt.TextFormat.RichText)
    label.setStyleSheet("color: #5f6368; font-size: 11px;")
    return label


def progress_words(progress: Progress | None) -> str:
    """' 1,200 of 5,000 images, 0:40 left' for a running check; a scan (no total yet) says what it found."""
    if progress is None:
        return ""
    if progress.total <= 0:
        return f" {progress.done:,} images found so far"
    eta = format_time_left(progress.seconds_left)
    return f" {progress.done:,} of {progress.total:,} images" + (f", {eta}" if eta else "")


def _shown_name(path: Path, root: Path) -> str:
    """The path below the checked folder, or whole when it lies elsewhere."""
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return str(path)


def colored(text: str, color: str) -> str:
    return f"<span style='color:{color}'>{text}</span>"


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


def style_plot(plot: pg.PlotItem, title: str, x: str, y: str) -> None:
    plot.setTitle(title, size="10pt")
    plot.setLabel("bottom", x)
    plot.setLabel("left", y)
    plot.showGrid(x=True, y=True, alpha=0.15)
    plot.setMenuEnabled(False)
    plot.hideButtons()
    for axis in ("bottom", "left"):
        plot.getAxis(axis).enableAutoSIPrefix(False)


class ClassChart(pg.PlotWidget):
    """Images per class as bars; classes too small to train are red."""

    MAX_LABELS = 16

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        style_plot(self.getPlotItem(), "Images per class", "", "images")
        self.getPlotItem().showGrid(x=False, y=True, alpha=0.15)  # no grid lines through the bars
        self.setMouseEnabled(x=False, y=False)
        self.bars: pg.BarGraphItem | None = None
        self.setMinimumHeight(170)

    def show_counts(self, counts: dict[str, int]) -> None:
        if self.bars is not None:
            self.removeItem(self.bars)
        names = list(counts)
        heights = np.array([counts[n] for n in names], np.float64)
        brushes = [pg.mkBrush(SMALL_BAR_COLOR if h < MIN_IMAGES_PER_CLASS else BAR_COLOR) for h in heights]
        self.bars = pg.BarGraphItem(x=np.arange(len(names)), height=heights, width=0.7, brushes=brushes, pen=None)
        self.addItem(self.bars)
        step = max(1, math.ceil(len(names) / self.MAX_LABELS))
        ticks = [(i, self._short(n)) for i, n in enumerate(names) if i % step == 0]
        self.getPlotItem().getAxis("bottom").setTicks([ticks, []])
        self.getPlotItem().setLabel("bottom", "class" if step == 1 else f"class (every {step}th named)")
        self.setXRange(-0.6, max(len(names), 1) - 0.4, padding=0)
        self.setYRange(0, max(float(heights.max()) if len(heights) else 1.0, 1.0) * 1.1, padding=0)

    @staticmethod
    def _short(name: str, width: int = 12) -> str:
        return name if len(name) <= width else name[: width - 1] + "…"


class Page(QWizardPage):
    """A page that knows its wizard's type (QWizardPage.wizard() returns a plain QWizard)."""

    def fw(self) -> FineTuneWizard:
        return cast("FineTuneWizard", self.wizard())


# -- 1. folder -------------------------------------------------------------------------------------------


class FolderPage(Page):
    """Choose the labelled folder; it is checked at once, and Next waits until it can train."""

    def __init__(self, runner: JobRunner, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setTitle("1 · Labelled folder")
        self.setSubTitle(
            "A folder with one sub-folder per class (for example photos/cats, photos/dogs). "
            "Every image is opened once now, so unreadable files show up here instead of mid-training."
        )
        self.check = FolderCheck(runner, self)
        self.check.changed.connect(self._update)
        self.row = FolderRow("Choose the labelled folder", "a folder of class sub-folders")
        self.row.chosen.connect(self.check.check)
        self.busy = QProgressBar()
        self.busy.setRange(0, 0)
        self.busy.setMaximumHeight(10)
        self.busy.setTextVisible(False)
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        self.summary.setTextFormat(Qt.TextFormat.RichText)
        self.problems = QLabel()
        self.problems.setWordWrap(True)
        self.problems.setTextFormat(Qt.TextFormat.RichText)
        self.problems.setObjectName("problems")
        self.chart = ClassChart()
        self.skipped_title = QLabel()
        self.skipped = SkippedFilesTable("Why it cannot be used")

        layout = QVBoxLayout(self)
        layout.addWidget(self.row)
        layout.addWidget(self.busy)
        layout.addWidget(self.summary)
        layout.addWidget(self.problems)
        layout.addWidget(self.chart, 1)
        layout.addWidget(self.skipped_title)
        layout.addWidget(self.skipped)
        self._update()

    @property
    def report(self) -> FolderReport | None:
        return self.check.report

    def set_folder(self, folder: Path) -> None:
        self.row.set_path(folder)

    def isComplete(self) -> bool:
        return self.check.report is not None and self.check.report.can_train and not self.check.busy

    def _update(self) -> None:
        check, report = self.check, self.check.report
        self.busy.setVisible(check.busy)
        self.chart.setVisible(report is not None and bool(report.folder.classes))
        skipped = report.folder.skipped if report is not None else []
        self.skipped.setVisible(bool(skipped))
        self.skipped_title.setVisible(bool(skipped))
        self.problems.setText("")
        if check.busy:
            self.summary.setText(f"Checking every image in <b>{check.path}</b>…{progress_words(check.progress)}")
        elif check.error:
            self.summary.setText("")
            self.problems.setText(colored(check.error, ERROR_COLOR))
        elif report is None:
            self.summary.setText(colored("No folder chosen yet.", "gray"))
        else:
            counts = report.counts
            n_images = sum(counts.values())
            where = ""
            if report.test_folder is not None:
                where = (
                    f"<br>It holds <b>{report.folder.root.name}/</b> and <b>{report.test_folder.name}/</b> "
                    f"folders: training uses {report.folder.root.name}/, the next page offers "
                    f"{report.test_folder.name}/ as the held-out test set."
                )
            verdict = (
                colored("✔ ready to train", OK_COLOR) if report.can_train else colored("cannot train", ERROR_COLOR)
            )
            smallest = min(counts.values()) if counts else 0
            self.summary.setText(
                f"<b>{len(counts)}</b> classes, <b>{n_images:,}</b> images"
                + (f" (smallest class: {smallest})" if counts else "")
                + f" · {verdict}{where}"
            )
            if report.problems:
                items = "".join(f"<li>{p}</li>" for p in report.problems)
                self.problems.setText(colored(f"This folder cannot train:<ul>{items}</ul>", ERROR_COLOR))
            if report.folder.classes:
                self.chart.show_counts(counts)
            self._show_skipped(report)
        self.problems.setVisible(bool(self.problems.text()))
        self.completeChanged.emit()

    def _show_skipped(self, report: FolderReport) -> None:
        skipped = report.folder.skipped
        self.skipped_title.setText(f"{len(skipped)} file(s) cannot be used and will be left out:")
        self.skipped.set_rows([(_shown_name(s.path, report.path), s.reason) for s in skipped])
        rows = min(len(skipped), 4)
        header = self.skipped.horizontalHeader().sizeHint().height()
        self.skipped.setFixedHeight(header + rows * self.skipped.verticalHeader().defaultSectionSize() + 4)


# -- 2. split --------------------------------------------------------------------------------------------


class SplitPage(Page):
    """What is held out to judge the model: images of every class (my classes), whole classes (new classes), or
    an existing test folder. The held-out part is only shown; the epoch kept is chosen on training images."""

    def __init__(self, runner: JobRunner, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setTitle("2 · What to hold out")
        self.setSubTitle(
            "Some images are held out from training to show you how much better the new model finds what you "
            "look for. They are never used to choose anything."
        )
        self.by_images = QRadioButton(
            "My classes: hold out a fifth of each class's images (finding more like these among my categories)"
        )
        self.auto = QRadioButton("New classes: hold out half of the classes (how it does on classes it never saw)")
        self.existing = QRadioButton("Use existing train and test folders")
        group = QButtonGroup(self)
        group.addButton(self.by_images)
        group.addButton(self.auto)
        group.addButton(self.existing)
        self.by_images.setChecked(True)
        self.by_images.toggled.connect(self._refresh)
        self.auto.toggled.connect(self._refresh)
        self.seed = QSpinBox()
        self.seed.setRange(0, 99_999)
        self.seed.setToolTip("Another seed draws another split of the classes")
        self.seed.valueChanged.connect(self._refresh)
        self.auto_note = help_label()
        self.train_title, self.test_title = QLabel(), QLabel()
        self.train_list, self.test_list = QListWidget(), QListWidget()
        for lst in (self.train_list, self.test_list):
            lst.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)

        self.train_check = FolderCheck(runner, self)
        self.test_check = FolderCheck(runner, self)
        self.train_row = FolderRow("Choose the training folder", "training folder: one sub-folder per class")
        self.test_row = FolderRow("Choose the test folder", "test folder: one sub-folder per held-out class")
        self.train_row.chosen.connect(self.train_check.check)
        self.test_row.chosen.connect(self.test_check.check)
        self.train_check.changed.connect(self._refresh)
        self.test_check.changed.connect(self._refresh)
        self.problems = QLabel()
        self.problems.setWordWrap(True)
        self.problems.setTextFormat(Qt.TextFormat.RichText)

        seed_row = QHBoxLayout()
        seed_row.addSpacing(24)
        seed_row.addWidget(QLabel("Seed"))
        seed_row.addWidget(self.seed)
        seed_row.addWidget(self.auto_note, 1)
        self.folders_box = QWidget()
        folders = QFormLayout(self.folders_box)
        folders.setContentsMargins(24, 0, 0, 0)
        folders.addRow("Train", self.train_row)
        folders.addRow("Test", self.test_row)
        lists = QGridLayout()
        lists.addWidget(self.train_title, 0, 0)
        lists.addWidget(self.test_title, 0, 1)
        lists.addWidget(self.train_list, 1, 0)
        lists.addWidget(self.test_list, 1, 1)

        layout = QVBoxLayout(self)
        layout.addWidget(self.by_images)
        layout.addWidget(self.auto)
        layout.addLayout(seed_row)
        layout.addWidget(self.existing)
        layout.addWidget(self.folders_box)
        layout.addWidget(self.problems)
        layout.addLayout(lists, 1)
        self._source: FolderReport | None = None
        self._split: tuple[LabelledFolder, LabelledFolder] | None = None
        self._problems: list[str] = []

    def initializePage(self) -> None:
        report = self.fw().folder_page.report
        if report is None or report is self._source:
            self._refresh()
            return  # back and forth over the same folder keeps the choices made here
        self._source = report
        n = len(report.folder.classes)
        self.auto.setEnabled(n >= MIN_SPLIT_CLASSES)
        self.auto_note.setText(
            f"{n} classes. The seed chooses which images (or classes) are held out."
            if n >= MIN_SPLIT_CLASSES
            else colored(
                f"New classes needs at least {MIN_SPLIT_CLASSES} classes (2 to train, 2 to test); this folder has "
                f"{n}.", WARN_COLOR,
            )
        )  # fmt: skip
        self.train_check.adopt(report)
        self.train_row.set_path(report.folder.root, emit=False)
        if report.test_folder is not None:
            self.test_row.set_path(report.test_folder)
        spare = sum(1 for count in report.folder.counts().values() if count >= 4)
        self.by_images.setEnabled(spare >= 2)
        if report.test_folder is not None or (spare < 2 and n < MIN_SPLIT_CLASSES):
            self.existing.setChecked(True)
        else:
            (self.by_images if spare >= 2 else self.auto).setChecked(True)
        self._refresh()

    def split(self) -> tuple[LabelledFolder, LabelledFolder] | None:
        return self._split if not self._problems else None

    def protocol(self) -> str:
        """How the held-out part was made: images, classes or existing (trainer.folders.carve_validation sets
        the selection part aside the same way; an existing test folder of other classes counts as classes)."""
        if self.by_images.isChecked():
            return "images"
        if self.auto.isChecked():
            return "classes"
        split = self.split()
        return "classes" if split and not set(split[0].classes) & set(split[1].classes) else "images"

    def source(self) -> LabelledFolder | None:
        """The whole folder as checked (what "train again on everything" trains on)."""
        return self._source.folder if self._source is not None else None

    def isComplete(self) -> bool:
        return self.split() is not None

    def _refresh(self) -> None:
        self.seed.setEnabled(not self.existing.isChecked())
        self.folders_box.setEnabled(self.existing.isChecked())
        self._split, self._problems, warnings = None, [], []
        busy = False
        if not self.existing.isChecked():
            report = self._source
            if report is not None:
                from trainer.folders import DatasetError, split_by_class, split_by_images

                try:
                    if self.auto.isChecked():
                        self._split = split_by_class(report.folder, seed=self.seed.value())
                    else:
                        self._split = split_by_images(report.folder, seed=self.seed.value())
                except DatasetError as exc:
                    self._problems.append(str(exc))
        else:
            busy = self.train_check.busy or self.test_check.busy
            train_r, test_r = self.train_check.report, self.test_check.report
            for check, role in ((self.train_check, "training"), (self.test_check, "test")):
                if check.error:
                    self._problems.append(f"The {role} folder: {check.error}")
            if self.test_row.path() is None:
                self._problems.append("Choose the test folder: its classes are held out to judge the model.")
            if train_r is not None and test_r is not None:
                self._problems += [f"Training folder: {p}" for p in train_r.problems]
                self._problems += [f"Test folder: {p}" for p in evaluation_problems(test_r.folder)]
                shared = sorted(set(train_r.folder.classes) & set(test_r.folder.classes))
                if shared:
                    shown = ", ".join(repr(c) for c in shared[:4]) + (" …" if len(shared) > 4 else "")
                    warnings.append(
                        f"{len(shared)} class(es) are in both folders ({shown}): the test numbers will say how "
                        "well it knows these classes, not how well it generalises to new ones."
                    )
                self._split = (train_r.folder, test_r.folder)
            elif not self._problems:
                busy = True
        self._show_lists()
        text = "".join(f"<p>{colored(p, ERROR_COLOR)}</p>" for p in self._problems)
        text += "".join(f"<p>{colored(w, WARN_COLOR)}</p>" for w in warnings)
        if busy:
            text += "<p>Checking the folders…</p>"
        self.problems.setText(text)
        self.completeChanged.emit()

    def _show_lists(self) -> None:
        for lst, title, part, role in (
            (self.train_list, self.train_title, 0, "Train"),
            (self.test_list, self.test_title, 1, "Test (held out)"),
        ):
            lst.clear()
            if self._split is None:
                title.setText(f"<b>{role}</b>")
                continue
            folder = self._split[part]
            counts = folder.counts()
            title.setText(f"<b>{role}</b>: {len(counts)} classes, {sum(counts.values()):,} images")
            lst.addItems([f"{name}  ({n})" for name, n in counts.items()])


# -- 3. settings -----------------------------------------------------------------------------------------


class SettingsPage(Page):
    """The run's settings, each with one line of help, and an honest estimate of how long it will take."""

    DIMS = (64, 128, 256, 512, 1024)
    BACKBONE_STAGES = BACKBONE_INFO[DEFAULT_BACKBONE].stages
    RESOLUTIONS = (224, 192, 160, 128)
    CPU_STAGES, CPU_RESOLUTION = CPU_STAGES, CPU_CROP  # trainer.recipe: what a CPU trains by default

    def __init__(self, runner: JobRunner, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setTitle("3 · Settings")
        self.setSubTitle(
            "The defaults suit this folder and this computer (the same as `trainer fit` with no settings): the "
            "best epoch is kept, and if none beats the starting model, the starting model is kept."
        )
        self.runner = runner
        self.environment: Environment | None = None
        self._recipe_for: tuple[Any, ...] | None = None  # (training part, device) the widgets were last set for
        self._timings: dict[tuple[str, int, str], tuple[list[float], list[float]] | str] = {}
        self._timing_job: Job | None = None
        self._shown = False  # measure the machine only once someone looks at this page

        self.model = QComboBox()
        bundled = card_summary(BUNDLED_MODEL) if Path(str(BUNDLED_MODEL) + ".json").exists() else None
        if bundled is not None:
            self.model.addItem(f"Bundled model: {bundled['name']}", str(BUNDLED_MODEL))
        self.model.addItem("ImageNet backbone (EfficientNet-Lite0, no retrieval training)", None)
        self.method = QComboBox()
        self.method.addItem("normsoftmax", "normsoftmax")
        self.epochs = QSpinBox()
        self.epochs.setRange(1, 500)
        self.epochs.setValue(10)
        self.classes_per_batch = QSpinBox()
        self.classes_per_batch.setRange(2, 1000)
        self.classes_per_batch.setValue(25)
        self.per_class = QSpinBox()
        self.per_class.setRange(2, 64)
        self.per_class.setValue(3)
        self.dim = QComboBox()
        self.device = QComboBox()
        self.device.addItem("CPU", "cpu")
        self.stages = QSpinBox()
        self.stages.setRange(1, self.BACKBONE_STAGES)
        self.stages.setValue(self.BACKBONE_STAGES)
        self.stages.setSuffix(f" of {self.BACKBONE_STAGES}")
        self.cached = QCheckBox("compute the frozen ones once (fastest; they then see one fixed crop per image)")
        self.resolution = QComboBox()

        for spin in (self.epochs, self.classes_per_batch, self.per_class):
            spin.setMinimumWidth(70)
        epochs = QHBoxLayout()
        epochs.addWidget(self.epochs)
        epochs.addStretch(1)
        batch = QHBoxLayout()
        batch.setSpacing(8)
        batch.addWidget(self.classes_per_batch)
        batch.addWidget(QLabel("classes ×"))
        batch.addWidget(self.per_class)
        batch.addWidget(QLabel("images of each"))
        batch.addStretch(1)
        cpu = QHBoxLayout()
        cpu.setSpacing(8)
        cpu.addWidget(QLabel("train the last"))
        cpu.addWidget(self.stages)
        cpu.addWidget(QLabel("backbone stages;"))
        cpu.addWidget(self.cached)
        cpu.addStretch(1)

        self.model_help, self.method_help, self.epochs_help, self.batch_help = (help_label() for _ in range(4))
        self.dim_help = help_label(
            "Every power-of-two prefix is trained too (nested), so the explorer can search with fewer "
            "dimensions; a binary code takes dimension/8 bytes."
        )
        self.cached_help = help_label(
            "The first stages are generic edge and texture detectors: freezing them saves most of the work "
            "on a CPU and costs little. Caching them is faster still but gives up crop augmentation."
        )
        self.resolution_help = help_label(
            "Searching always uses the model's input size. Training at 160 px takes about half the time of "
            "224 px and keeps most of the gain (unseen car models: Recall@1 +14.7 points, +17.6 at 224)."
        )
        self.warnings = QLabel()
        self.warnings.setWordWrap(True)
        self.warnings.setTextFormat(Qt.TextFormat.RichText)
        self.warnings.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.estimate = QLabel("Looking at this computer…")
        self.estimate.setWordWrap(True)
        self.estimate.setTextFormat(Qt.TextFormat.RichText)
        # Rich text is laid out at its one-line width unless the label may shrink: let the column decide.
        self.estimate.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)

        grid = QGridLayout(self)
        grid.setVerticalSpacing(2)
        grid.setHorizontalSpacing(12)
        grid.setColumnStretch(1, 1)
        rows: list[tuple[str, QWidget | QHBoxLayout, QLabel]] = [
            ("Starting model", self.model, self.model_help),
            ("Method", self.method, self.method_help),
            ("Epochs", epochs, self.epochs_help),
            ("Batches", batch, self.batch_help),
            ("Embedding dimension", self.dim, self.dim_help),
            ("Device", self.device, help_label("The GPU when there is one; a CPU works too, more slowly.")),
            ("Backbone", cpu, self.cached_help),
            ("Training resolution", self.resolution, self.resolution_help),
        ]
        for i, (label, field, help_) in enumerate(rows):
            # Label, field, and the help line under the field in a grid row of its own: wrapped labels
            # nested in form fields get clipped, grid rows give them their height.
            grid.addWidget(QLabel(label), 3 * i, 0)
            if isinstance(field, QHBoxLayout):
                grid.addLayout(field, 3 * i, 1)
            else:
                grid.addWidget(field, 3 * i, 1)
            grid.addWidget(help_, 3 * i + 1, 1)
            grid.setRowMinimumHeight(3 * i + 2, 8)
        time_label = QLabel("Time")
        grid.addWidget(time_label, 3 * len(rows), 0, Qt.AlignmentFlag.AlignTop)
        grid.addWidget(self.estimate, 3 * len(rows), 1)
        grid.addWidget(self.warnings, 3 * len(rows) + 1, 1)
        grid.setRowStretch(3 * len(rows) + 2, 1)

        self.model.currentIndexChanged.connect(self._model_changed)
        self.method.currentIndexChanged.connect(self._method_changed)
        self.device.currentIndexChanged.connect(self._device_changed)
        self.cached.toggled.connect(self._update_help)
        self.resolution.currentIndexChanged.connect(self._update_help)
        for spin in (self.epochs, self.classes_per_batch, self.per_class):
            spin.valueChanged.connect(self._update_help)
        self.stages.valueChanged.connect(self._stages_changed)
        self._model_changed()
        self._stages_changed()

    # -- the machine, probed once by the wizard ------------------------------------------------------------
    def set_environment(self, env: Environment) -> None:
        self.environment = env
        current = self.method.currentData() or "normsoftmax"
        self.method.blockSignals(True)
        self.method.clear()
        for name, summary in env.methods:
            self.method.addItem(name, name)
            self.method.setItemData(self.method.count() - 1, summary, Qt.ItemDataRole.ToolTipRole)
        self.method.setCurrentIndex(max(0, self.method.findData(current)))
        self.method.blockSignals(False)
        self.device.blockSignals(True)
        self.device.clear()
        if env.gpu is not None:
            self.device.addItem(f"GPU: {env.gpu_name or env.gpu}", env.gpu)
        threads = env.cpu_threads
        self.device.addItem(f"CPU ({threads} thread{'s' if threads != 1 else ''})", "cpu")
        self.device.setCurrentIndex(0)
        self.device.blockSignals(False)
        self._method_changed()
        self._device_changed()
        self.completeChanged.emit()

    def add_starting_model(self, label: str, path: Path | None, select: bool = True) -> None:
        """Offer another model to start from (tests, and models saved earlier)."""
        self.model.addItem(label, str(path) if path is not None else None)
        if select:
            self.model.setCurrentIndex(self.model.count() - 1)

    def isComplete(self) -> bool:
        return self.environment is not None

    def initializePage(self) -> None:
        parts = self.parts()
        if parts is not None:
            # A batch cannot hold more classes than there are: show the composition the trainer will use.
            self.classes_per_batch.setMaximum(max(2, len(parts[0].classes)))
        self.apply_recipe()
        self._shown = True
        self._update_help()

    def parts(self) -> tuple[LabelledFolder, LabelledFolder | None, LabelledFolder | None] | None:
        """(what trains, what chooses the epoch to keep, what is held out to show), as the run will have them."""
        wizard = self.fw()
        everything = wizard.everything
        split = wizard.split_page.split()
        if everything is not None:
            fitted, selection = carve_validation(everything, "images")
            return fitted, selection, None
        if split is None:
            return None
        fitted, selection = carve_validation(split[0], wizard.split_page.protocol())
        return fitted, selection, split[1]

    def apply_recipe(self, force: bool = False) -> None:
        """Set the widgets to the default recipe for the training part and the device (trainer.recipe), once
        per (part, device): going back and forth keeps what the person changed."""
        parts = self.parts() if self.wizard() is not None else None
        if parts is None:
            return
        fitted = parts[0]
        device = self.device.currentData() or "cpu"
        key = (str(fitted.root), len(fitted.samples), tuple(fitted.classes), device)
        if key == self._recipe_for and not force:
            return
        self._recipe_for = key
        recipe = default_recipe(FolderShape.of(fitted), device)
        self.epochs.setValue(recipe.epochs)
        self.classes_per_batch.setValue(recipe.classes_per_batch)
        self.per_class.setValue(recipe.per_class)
        self.stages.setValue(recipe.trainable_stages or self.BACKBONE_STAGES)
        self.cached.setChecked(recipe.cache_trunk)
        wanted = recipe.crop_size or self._input_size()
        self.resolution.setCurrentIndex(max(0, self.resolution.findData(wanted)))
        warnings = recipe_warnings(FolderShape.of(fitted), self.fw().split_page.protocol())
        self.warnings.setText("".join(f"<p>{colored('Note: ' + w + '.', WARN_COLOR)}</p>" for w in warnings))

    # -- the chosen settings --------------------------------------------------------------------------------
    def base(self) -> Path | None:
        data = self.model.currentData()
        return Path(data) if data else None

    def backbone(self) -> str:
        return str(self._card().get("backbone") or DEFAULT_BACKBONE)

    def config_fields(self) -> dict[str, Any]:
        """FitConfig arguments (trainer.config.FitConfig) for these settings; what the page has no widget for
        (the learning rates) keeps FitConfig's defaults, as the recipe does."""
        epochs = self.epochs.value()
        partial = self.stages.value() < self.BACKBONE_STAGES
        cached = partial and self.cached.isChecked()
        crop = self.resolution.currentData()
        return {
            "method": self.method.currentData() or "normsoftmax",
            "dim": self.dim.currentData(),
            "epochs": epochs,
            "warmup_epochs": 1 if epochs > 1 else 0,
            "classes_per_batch": self.classes_per_batch.value(),
            "per_class": self.per_class.value(),
            "trainable_stages": self.stages.value() if partial else None,
            "cache_trunk": cached,
            "crop_size": crop if crop and crop != self._input_size() else None,
            "device": self.device.currentData() or "cpu",
            "num_workers": None,  # trainer.devices.default_loader_workers: most cores on a GPU, 2 on a CPU
        }

    def _card(self) -> dict[str, Any]:
        try:
            return card_summary(self.base())
        except (OSError, ValueError, ModelFileError):
            return card_summary(None)

    def _input_size(self) -> int:
        return int(self._card().get("input_size") or 224)

    # -- reactions ------------------------------------------------------------------------------------------
    def _model_changed(self) -> None:
        card = self._card()
        full = int(card.get("dim") or 1280)
        current = self.dim.currentData()
        self.dim.blockSignals(True)
        self.dim.clear()
        self.dim.addItem(f"{full} (the starting model's)", None)
        for d in self.DIMS:
            if d < full:
                self.dim.addItem(str(d), d)
        self.dim.setCurrentIndex(max(0, self.dim.findData(current)))
        self.dim.blockSignals(False)
        self._fill_resolutions()
        if self.base() is None:
            text = "Starts from ImageNet classification features: more to learn, so more epochs help."
        elif card.get("trained"):
            text = "Already trained for retrieval on other photos: adapting it to yours needs few epochs."
        elif self.base() == BUNDLED_MODEL:
            text = "The bundled weights (not yet trained for retrieval): the same start as the ImageNet backbone."
        else:
            text = "Not trained for retrieval yet: ImageNet features, like the backbone."
        self.model_help.setText(text)
        self._update_help()

    def _method_changed(self) -> None:
        tip = self.method.currentData(Qt.ItemDataRole.ToolTipRole)
        self.method_help.setText(tip or "Softmax over cosine similarity to one learned proxy per class.")

    def _fill_resolutions(self) -> None:
        """The model's input size and the standard smaller ones; the choice survives a change of model."""
        size = self._input_size()
        current = self.resolution.currentData()
        self.resolution.blockSignals(True)
        self.resolution.clear()
        self.resolution.addItem(f"{size} px (the model's input size)", size)
        for r in self.RESOLUTIONS:
            if r < size:
                self.resolution.addItem(f"{r} px", r)
        self.resolution.setCurrentIndex(max(0, self.resolution.findData(current)))
        self.resolution.blockSignals(False)

    def _device_changed(self) -> None:
        """A GPU trains the paper's way (everything, full size); a CPU the measured CPU recipe."""
        cpu = self.device.currentData() == "cpu"
        self.stages.setValue(self.CPU_STAGES if cpu else self.BACKBONE_STAGES)
        self.cached.setChecked(False)
        wanted = self.CPU_RESOLUTION if cpu else self._input_size()
        self.resolution.setCurrentIndex(max(0, self.resolution.findData(wanted)))
        self.apply_recipe()
        self._update_help()

    def _stages_changed(self) -> None:
        self.cached.setEnabled(self.stages.value() < self.BACKBONE_STAGES)
        self._update_help()

    def _update_help(self) -> None:
        epochs = self.epochs.value()
        self.epochs_help.setText(
            "Passes over the training images; the first one trains only the new layers (warm-up)."
            if epochs > 1
            else "One pass over the training images (no warm-up epoch)."
        )
        parts = self.parts() if self.wizard() is not None else None
        n_classes = len(parts[0].classes) if parts else None
        c, k = self.classes_per_batch.value(), self.per_class.value()
        used = min(c, n_classes) if n_classes else c
        note = f" Only {n_classes} training classes: batches hold {used}." if n_classes and c > n_classes else ""
        self.batch_help.setText(
            f"Each batch holds {used} classes × {k} images = <b>{used * k}</b> images; two or more per class "
            f"give every image a positive.{note}"
        )
        self._update_estimate()

    # -- the estimate ---------------------------------------------------------------------------------------
    def _crop(self) -> int:
        overrides = self.fw().fit_overrides if self.wizard() is not None else {}
        return int(overrides.get("crop_size") or self.resolution.currentData() or self._input_size())

    def _update_estimate(self) -> None:
        if self.wizard() is None or self.environment is None or not self._shown:
            self.estimate.setText("Looking at this computer…")
            return
        device = self.device.currentData() or "cpu"
        key = (self.backbone(), self._crop(), device)
        timing = self._timings.get(key)
        if timing is None:
            self.estimate.setText("Estimating the time: measuring this computer's speed on the model…")
            self._measure(key)
            return
        if isinstance(timing, str):
            self.estimate.setText(colored(f"No time estimate: {timing}", WARN_COLOR))
            return
        shape = self.run_shape()
        if shape is None:
            self.estimate.setText("")
            return
        cfg = {**self.config_fields(), **self.fw().fit_overrides}
        train_stages, eval_stages = timing
        seconds = estimate_seconds(shape, cfg, train_stages, eval_stages)
        where = "on this CPU" if device == "cpu" else "on the GPU"
        rate = 1.0 / max(sum(eval_stages), 1e-9)
        held = f", {shape.test_images:,} held-out" if shape.test_images else ""
        text = (
            f"<b>Estimate: about {format_duration(seconds)}</b> {where}, for {shape.train_images:,} training "
            f"images × {cfg['epochs']} epochs; {shape.selection_images:,} images set aside to choose the epoch"
            f"{held} checked each epoch. Based on {rate:.0f} images/s through the model, measured here just now; "
            "the real time left shows once training runs."
        )
        self.estimate.setText(text)

    def run_shape(self) -> RunShape | None:
        parts = self.parts()
        if parts is None:
            return None
        fitted, selection, test = parts
        continuing = bool(self._card().get("trained")) and self.dim.currentData() is None
        return RunShape.of(fitted, selection, test, continuing)

    def _measure(self, key: tuple[str, int, str]) -> None:
        if self._timing_job is not None:
            return  # one at a time; the next starts when it ends if the settings moved on
        backbone, crop, device = key
        full = self._input_size()

        def measure(_job: Job) -> tuple[list[float], list[float]]:
            from trainer.estimate import stage_seconds

            return stage_seconds(backbone, crop, device), stage_seconds(backbone, full, device)

        job = Job("measure", measure)
        job.key = key  # type: ignore[attr-defined]
        job.signals.finished.connect(self._measured)
        job.signals.failed.connect(lambda j, msg: self._measured(j, msg))
        self._timing_job = job
        self.runner.start(job)

    def _measured(self, job: Job, timing: tuple[list[float], list[float]] | str) -> None:
        self._timing_job = None
        self._timings[job.key] = timing  # type: ignore[attr-defined]
        self._update_estimate()


# -- 4. training -----------------------------------------------------------------------------------------


class TrainingPage(Page):
    """Live curves, time left, Cancel and Resume over one `fit` run in a worker."""

    finished = Signal(object)  # FitResult
    batchFinished = Signal(int, int, float)  # step, epoch, loss: on the GUI thread, after each batch

    def __init__(self, runner: JobRunner, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setTitle("4 · Training")
        self.setSubTitle(
            "Loss should fall; Recall@1 on the held-out images should rise. The best epoch on the training images "
            "set aside is kept. Cancelling keeps the last checkpoint, and Resume continues from it."
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
        style_plot(self.loss_plot, "Training loss", "step", "loss")
        self.loss_curve = self.loss_plot.plot(pen=pg.mkPen("#888888", width=1))
        self.loss_mean = self.loss_plot.plot(pen=pg.mkPen("#333333", width=2))
        self.recall_plot = self.canvas.addPlot(row=0, col=1)
        style_plot(self.recall_plot, "Recall@1 on the held-out images", "epoch (0 = start)", "R@1 (%)")
        self.recall_plot.addLegend(offset=(-8, -8), labelTextSize="8pt", brush=(255, 255, 255, 210))
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
        chosen = "no images set aside"
        if plan.selection is not None:
            chosen = f"{len(plan.selection.samples):,} set aside to choose the epoch"
        self._say(
            ("Resuming" if resuming else "Training")
            + f" {cfg.method} for {cfg.epochs} epoch(s) on {cfg.device}: {len(plan.train.classes)} classes, "
            f"{len(plan.train.samples):,} images; {chosen}; {judged}."
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
            self.fw().settings_page.setCommitPage(running)
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


def kept_sentence(kept_epoch: int | None, epochs: int, selection: LabelledFolder | None) -> str:
    """Which epoch was exported and why, for the result page (rich text)."""
    if kept_epoch is None:
        return f"The last of {epochs} epochs was kept."
    if selection is not None and not selection.samples:
        return colored(
            "<b>The starting model is kept</b>: with fewer than 4 training classes nothing can judge what training "
            "does to new classes. The my-classes protocol suits such a folder.",
            WARN_COLOR,
        )
    where = f"{len(selection.samples):,} training images set aside" if selection is not None else "training images"
    if kept_epoch == 0:
        return colored(
            f"<b>No epoch beat the starting model</b> on the {where}, so the starting model is kept: the explorer "
            "can go on with the model it has.",
            WARN_COLOR,
        )
    return f"Epoch {kept_epoch} of {epochs} was kept: the best on the {where} (the held-out images chose nothing)."


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
        result = self.fw().training_page.result
        plan = self.fw().training_page.plan
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
        kept = kept_sentence(result.kept_epoch, plan.config.epochs, plan.selection)
        if test is None:
            self.verdict.setText(
                f"Trained on every image of {plan.train.root}: nothing was held out to measure. {kept}"
            )
        elif recall and "R@1" in recall:
            judged = f"{len(test.samples):,} held-out images of {len(test.classes)} classes"
            self.verdict.setText(f"Judged on {judged}. {kept} {verdict(recall)}")
        else:
            self.verdict.setText(f"No held-out measurement was recorded for this run. {kept}")
        self.again_button.setVisible(test is not None and self.fw().split_page.source() is not None)
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
        result, plan = self.fw().training_page.result, self.fw().training_page.plan
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
        result = self.fw().training_page.result
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
        result, plan = self.fw().training_page.result, self.fw().training_page.plan
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
