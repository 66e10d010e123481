"""The window's menus, from the one table of actions (explorer.app.actions), which the shortcut help reads too."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QMainWindow, QMenu

from explorer.app.actions import ACTIONS, RECENT_FOLDERS, VIEW


def build_menus(window: QMainWindow) -> None:
    """Menus and shortcuts for `window`, whose methods the table names; `window.recent_menu` is the Recent-folders
    submenu, and actions with an attribute name are set on the window (`reindex_action`, ...)."""
    menus: dict[str, QMenu] = {}
    for spec in ACTIONS:
        if spec.menu not in menus:
            menus[spec.menu] = window.menuBar().addMenu(spec.menu)
        menu = menus[spec.menu]
        if spec.separator_before:
            menu.addSeparator()
        act = QAction(spec.text, window)
        if spec.shortcut:
            act.setShortcut(QKeySequence(spec.shortcut))
        act.setStatusTip(spec.tip)
        act.setCheckable(spec.checkable)
        act.triggered.connect(slot(window, spec.slot))
        menu.addAction(act)
        window.addAction(act)  # shortcuts work even with the menu bar hidden
        if spec.attribute:
            setattr(window, spec.attribute, act)
        if spec.submenu_after == RECENT_FOLDERS:
            window.recent_menu = menu.addMenu(RECENT_FOLDERS)  # type: ignore[attr-defined]
    menus[VIEW].addSeparator()
    for name in ("skipped_dock", "library_dock"):  # "Skipped files (N)", "Library": checked while shown
        dock: Any = getattr(window, name, None)
        if dock is not None:
            menus[VIEW].addAction(dock.toggleViewAction())


def slot(window: object, name: str) -> Callable[..., None]:
    """The method an action names ("method" or "method:argument"), as a slot that ignores `checked`."""
    method, _, argument = name.partition(":")
    target = getattr(window, method)
    if argument:
        value = int(argument)
        return lambda _checked=False: target(value)
    return lambda _checked=False: target()
