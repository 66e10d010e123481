"""What the window's mixins (folder_actions, results_actions) share: the window they are part of."""

from __future__ import annotations

from typing import Any, cast

from PySide6.QtWidgets import QMainWindow

APP_TITLE = "Retrieval Explorer"
QUERY_THUMB = 480  # the query's picture in the sidebar, in pixels


class WindowPart:
    """A side of `MainWindow`: its widgets and controller are the window's (declared where each side uses them)."""

    controller: Any
    dims: Any
    _important_until: float

    @property
    def _window(self) -> QMainWindow:
        return cast(QMainWindow, self)
