"""The skipped-files table: rows in, the same rows out, and nobody edits them."""

from __future__ import annotations

from PySide6.QtWidgets import QAbstractItemView
from pytestqt.qtbot import QtBot

from explorer.ui.skipped_table import SkippedFilesTable


def test_rows_round_trip_and_are_read_only(qtbot: QtBot) -> None:
    table = SkippedFilesTable("Why")
    qtbot.addWidget(table)
    header = table.horizontalHeaderItem(1)
    assert header is not None and header.text() == "Why"
    table.set_rows([("a.jpg", "truncated JPEG"), ("b.txt", "not an image file type (.txt)")])
    assert table.rows() == [("a.jpg", "truncated JPEG"), ("b.txt", "not an image file type (.txt)")]
    table.set_rows([("c.png", "empty file")])
    assert table.rows() == [("c.png", "empty file")]  # replaced, not appended
    assert table.editTriggers() == QAbstractItemView.EditTrigger.NoEditTriggers
