"""Page 1: choose the labelled folder; it is checked at once, and Next waits until it can train."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QLabel,
    QProgressBar,
    QVBoxLayout,
    QWidget,
)

from explorer.app.fine_tune import (
    FolderReport,
)
from explorer.ui.skipped_table import SkippedFilesTable
from explorer.ui.wizard.common import (
    ERROR_COLOR,
    OK_COLOR,
    ClassChart,
    Page,
    _shown_name,
    colored,
    progress_words,
)
from explorer.ui.wizard.folder_check import FolderCheck, FolderRow
from explorer.ui.workers import JobRunner

if TYPE_CHECKING:
    pass


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
