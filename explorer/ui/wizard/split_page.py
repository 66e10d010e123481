"""Page 2: what is held out to judge the result (my classes, new classes, or an existing split)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QButtonGroup,
    QFormLayout,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QRadioButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from explorer.app.fine_tune import (
    MIN_SPLIT_CLASSES,
    FolderReport,
    evaluation_problems,
)
from explorer.ui.wizard.common import (
    ERROR_COLOR,
    WARN_COLOR,
    Page,
    colored,
    help_label,
)
from explorer.ui.wizard.folder_check import FolderCheck, FolderRow
from explorer.ui.workers import JobRunner

if TYPE_CHECKING:
    from trainer.data import LabelledFolder


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
        report = self.fw().folder_report()
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
