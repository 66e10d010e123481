"""Refilling a combo box keeps the choice and says nothing: the window and the wizard react only to people."""

from __future__ import annotations

from PySide6.QtWidgets import QComboBox

from explorer.ui.widgets import LAST, refill_combo


def test_refilling_keeps_the_chosen_item_and_emits_no_change(qtbot) -> None:  # type: ignore[no-untyped-def]
    combo = QComboBox()
    qtbot.addWidget(combo)
    changes: list[int] = []
    combo.currentIndexChanged.connect(changes.append)
    refill_combo(combo, [("64", 64), ("128", 128, "the tooltip"), ("256", 256)], keep=128)
    assert combo.currentData() == 128 and combo.itemData(1, 3) == "the tooltip"  # 3: Qt.ToolTipRole
    refill_combo(combo, [("128", 128), ("512", 512)], keep=combo.currentData())
    assert combo.currentData() == 128
    refill_combo(combo, [("64", 64), ("1280", 1280)], keep=128, fallback=LAST)
    assert combo.currentData() == 1280
    refill_combo(combo, [("a", "a")], keep="b", fallback=-1)
    assert combo.currentIndex() == -1
    assert changes == []
