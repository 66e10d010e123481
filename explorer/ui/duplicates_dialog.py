"""Index ▸ Find duplicates: the folder's copies of one photo and, asked for, its bursts, with both thresholds in view.

Each group lists its pictures with their size in pixels and bytes and their date; the suggested keeper comes first,
unticked, and the copies are ticked. "Move ticked to a folder…" moves them (explorer.engine.file_moves: never a
delete, every move on the undo list), "Undo the last move" puts them back. The two thresholds are spin boxes: moving
one searches again (in a worker, like everything slow here).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSize, Qt, QTimer, Signal
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from explorer.app.jobs import Executor, LatestJob, Reply
from explorer.engine.duplicates import DUPLICATE_CORRELATION, KEEPER_RULE, SIMILAR_BITS, DuplicateReport, Member
from explorer.engine.file_moves import Moved, move_files, undo_last
from explorer.ui.thumbnails import ThumbnailCache

PathRole = Qt.ItemDataRole.UserRole + 1
THUMB = 56  # pixels: enough to see that two pictures are the same photo


def member_text(m: Member, keeper: bool) -> str:
    day = time.strftime("%Y-%m-%d %H:%M", time.localtime(m.mtime)) if m.mtime else "date unknown"
    keep = "  ·  keep" if keeper else ""
    size = f"{m.bytes / 1e6:.1f} MB" if m.bytes >= 1e6 else f"{m.bytes / 1e3:.0f} kB"
    return f"{m.path.name}  ·  {m.width}x{m.height}  ·  {size}  ·  {day}{keep}"


class DuplicatesDialog(QDialog):
    searched = Signal(object)  # DuplicateReport, each time a search ends
    moved = Signal(object)  # file_moves.Moved, after a move or an undo (the folder's watcher re-indexes it)

    def __init__(
        self,
        session: Any,
        folder: Path,
        executor: Executor,
        thumbnails: ThumbnailCache | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.thumbnails = thumbnails
        if thumbnails is not None:
            thumbnails.ready.connect(self._thumbnail_ready)
        self.setWindowTitle(f"Duplicates in {folder.name}")
        self.session, self.folder, self.executor = session, folder, executor
        self.job = LatestJob(executor, "duplicates")
        self.report: DuplicateReport | None = None
        self.correlation = QDoubleSpinBox()
        self.correlation.setRange(0.80, 1.0)
        self.correlation.setSingleStep(0.01)
        self.correlation.setDecimals(2)
        self.correlation.setValue(DUPLICATE_CORRELATION)
        self.correlation.setToolTip("How alike the pixels of two pictures must be to be copies of one photo")
        self.bits = QSpinBox()
        self.bits.setRange(32, 640)
        self.bits.setSingleStep(16)
        self.bits.setValue(SIMILAR_BITS)
        self.bits.setToolTip("How many of the 1280 bits two photos' codes may differ in to be similar (a burst)")
        self.similar = QCheckBox("Show similar photos too (bursts, the same scene)")
        form = QFormLayout()
        form.addRow("Copies of one photo: pixels alike at least", self.correlation)
        form.addRow("Similar photos: codes apart at most (bits)", self.bits)
        form.addRow("", self.similar)
        self.summary = QLabel("Searching…")
        self.summary.setWordWrap(True)
        self.tree = QTreeWidget()
        self.tree.setHeaderHidden(True)
        self.tree.setIconSize(QSize(THUMB, THUMB))
        self.move_button = QPushButton("Move ticked to a folder…")
        self.undo_button = QPushButton("Undo the last move")
        buttons = QHBoxLayout()
        buttons.addWidget(self.move_button)
        buttons.addWidget(self.undo_button)
        buttons.addStretch(1)
        close = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        close.rejected.connect(self.reject)
        buttons.addWidget(close)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.summary)
        layout.addWidget(self.tree, 1)
        layout.addLayout(buttons)
        self.resize(760, 560)
        self._again = QTimer(self)
        self._again.setSingleShot(True)
        self._again.setInterval(400)  # a threshold being stepped: search once it rests
        self._again.timeout.connect(self.search)
        self.correlation.valueChanged.connect(lambda _v: self._again.start())
        self.bits.valueChanged.connect(lambda _v: self._again.start())
        self.similar.toggled.connect(lambda _on: self._show())
        self.move_button.clicked.connect(self.move_ticked)
        self.undo_button.clicked.connect(self.undo)

    def search(self) -> None:
        from explorer.engine.duplicates import find_duplicates

        collection = self.session.collection(self.folder)
        paths, codes = collection.paths, collection.codes
        bits, correlation = self.bits.value(), self.correlation.value()
        self.summary.setText("Comparing the pictures…")
        self.job.start(
            "duplicates", lambda task: find_duplicates(paths, codes, bits, correlation, cancel=task.cancelled),
            Reply(done=self._found, failed=lambda message: self.summary.setText(f"The search failed: {message}")),
        )  # fmt: skip

    def _found(self, report: DuplicateReport) -> None:
        self.report = report
        self._show()
        self.searched.emit(report)

    def _show(self) -> None:
        report = self.report
        self.tree.clear()
        if report is None:
            return
        groups = [g for g in report.groups if g.kind == "duplicates" or self.similar.isChecked()]
        copies = sum(len(g.members) - 1 for g in report.of_kind("duplicates"))
        self.summary.setText(
            f"{len(report.of_kind('duplicates'))} photos have copies ({copies} copies) among {report.images:,} "
            f"images; {len(report.of_kind('similar'))} groups of similar photos. The keeper, first in each group, "
            f"has {KEEPER_RULE}; copies are ticked. Nothing is deleted: ticked pictures are moved, and can be put "
            "back."
        )
        for group in groups:
            top = QTreeWidgetItem([f"{group.kind}: {len(group.members)} pictures"])
            self.tree.addTopLevelItem(top)
            for i, m in enumerate(group.members):
                item = QTreeWidgetItem([member_text(m, i == 0)])
                item.setData(0, PathRole, str(m.path))
                item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
                ticked = group.kind == "duplicates" and i > 0
                item.setCheckState(0, Qt.CheckState.Checked if ticked else Qt.CheckState.Unchecked)
                top.addChild(item)
                self._set_icon(item)
            top.setExpanded(True)

    def _rows(self) -> list[QTreeWidgetItem]:
        rows = []
        for g in range(self.tree.topLevelItemCount()):
            top = self.tree.topLevelItem(g)
            for c in range(top.childCount() if top is not None else 0):
                item = top.child(c) if top is not None else None
                if item is not None:
                    rows.append(item)
        return rows

    def _set_icon(self, item: QTreeWidgetItem) -> None:
        if self.thumbnails is None:
            return
        pixmap = self.thumbnails.get(item.data(0, PathRole), THUMB)  # decoded on the cache's threads
        if pixmap is not None:
            item.setIcon(0, QIcon(pixmap))

    def _thumbnail_ready(self, path: str) -> None:
        for item in self._rows():  # no Python references to the rows are kept: Qt owns them
            if item.data(0, PathRole) == path:
                self._set_icon(item)

    def ticked(self) -> list[Path]:
        out = [Path(i.data(0, PathRole)) for i in self._rows() if i.checkState(0) == Qt.CheckState.Checked]
        return list(dict.fromkeys(out))  # a picture in a duplicates and a similar group: moved once

    def move_ticked(self) -> None:
        pictures = self.ticked()
        if not pictures:
            self.summary.setText("Nothing is ticked.")
            return
        target = QFileDialog.getExistingDirectory(self, f"Move {len(pictures)} pictures to", str(self.folder.parent))
        if not target:
            return
        self.summary.setText(f"Moving {len(pictures)} pictures…")

        def moved(done: Moved) -> None:
            failed = f"; {len(done.failed)} could not be moved: {done.failed[0][1]}" if done.failed else ""
            self.summary.setText(f"{len(done.moves)} pictures moved to {target}{failed}. Undo puts them back.")
            self.moved.emit(done)

        # a move to another drive copies: in a worker, like everything slow
        self.executor.submit(
            "files", "move copies", lambda _task: move_files(pictures, Path(target)),
            Reply(done=moved, failed=lambda message: self.summary.setText(f"Moving failed: {message}")),
        )  # fmt: skip

    def undo(self) -> None:
        def back(done: Moved) -> None:
            failed = f"; {len(done.failed)} stayed: {done.failed[0][1]}" if done.failed else ""
            self.summary.setText(f"{len(done.moves)} pictures put back{failed}.")
            self.moved.emit(done)

        self.executor.submit(
            "files", "undo move", lambda _task: undo_last(),
            Reply(done=back, failed=lambda message: self.summary.setText(f"Undo failed: {message}")),
        )  # fmt: skip
