"""Small widget helpers the window and the wizard share (PySide6)."""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import QSignalBlocker, Qt
from PySide6.QtWidgets import QComboBox

LAST = -2  # `refill_combo(fallback=LAST)`: select the last item when `keep` is not among the new ones


def refill_combo(
    combo: QComboBox,
    items: Sequence[tuple[str, object] | tuple[str, object, str]],
    keep: object = None,
    fallback: int = 0,
) -> None:
    """Replace a combo box's items (text, data and an optional tooltip) without emitting its change signals, and select
    the item whose data is `keep`, else the `fallback` index (-1: none; LAST: the last item).

    Refilling fires currentIndexChanged for every intermediate state; the window and the wizard refill their
    combos when a model or a machine changes and must react only to what the person chooses.
    """
    with QSignalBlocker(combo):
        combo.clear()
        for text, data, *tooltip in items:
            combo.addItem(text, data)
            if tooltip:
                combo.setItemData(combo.count() - 1, tooltip[0], Qt.ItemDataRole.ToolTipRole)
        index = combo.findData(keep) if keep is not None else -1
        if index < 0:
            index = combo.count() - 1 if fallback == LAST else fallback
        combo.setCurrentIndex(index)
