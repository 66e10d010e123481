"""The table of files left out and why, shared by the window's skipped-files panel and the wizard's folder page."""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableWidget, QTableWidgetItem, QWidget

from explorer.engine.catalog import readable


class SkippedFilesTable(QTableWidget):
    """Two read-only columns, file and reason; the file column fits its names, the reason takes the rest."""

    def __init__(self, reason_header: str = "Reason", parent: QWidget | None = None) -> None:
        super().__init__(0, 2, parent)
        self.setHorizontalHeaderLabels(["File", reason_header])
        self.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        self.horizontalHeader().setStretchLastSection(True)
        self.verticalHeader().hide()
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)

    def set_rows(self, rows: Sequence[tuple[str, str]]) -> None:
        self.setRowCount(len(rows))
        for row, (name, reason) in enumerate(rows):
            self.setItem(row, 0, QTableWidgetItem(readable(name)))  # names in other encodings, shown readably
            self.setItem(row, 1, QTableWidgetItem(readable(reason)))

    def rows(self) -> list[tuple[str, str]]:
        """(file, reason) as listed."""

        def cell(row: int, column: int) -> str:
            item = self.item(row, column)
            return item.text() if item is not None else ""

        return [(cell(r, 0), cell(r, 1)) for r in range(self.rowCount())]
