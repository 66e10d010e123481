"""Fixtures for the window tests: one shared model session, windows with private settings.

Loading a model costs seconds, so one session (the bundled weights at 64x64 input, from the parent
conftest's `small_model_path`) serves every test; catalogs still go to each test's own cache directory,
since the session looks the cache up on every call.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from explorer.engine.session import RetrievalSession
from explorer.ui.settings import Settings
from explorer.ui.window import MainWindow

INDEX_TIMEOUT_MS = 120_000
QUERY_TIMEOUT_MS = 60_000

WindowMaker = Callable[..., MainWindow]


@pytest.fixture(scope="session")
def ui_session(small_model_path: Path) -> RetrievalSession:
    session = RetrievalSession(small_model_path, device="cpu", batch_size=4)
    _ = session.embedder
    return session


@pytest.fixture
def settings_file(tmp_path: Path) -> Path:
    return tmp_path / "settings.ini"


@pytest.fixture
def make_window(qtbot: QtBot, settings_file: Path, ui_session: RetrievalSession) -> Iterator[WindowMaker]:
    """`make_window()` -> a shown window over the shared session, with settings in tmp_path."""
    windows: list[MainWindow] = []

    def make(settings: Settings | None = None) -> MainWindow:
        window = MainWindow(settings or Settings.at(settings_file), session_factory=lambda _path: ui_session)
        qtbot.addWidget(window)
        windows.append(window)
        window.show()
        qtbot.waitUntil(lambda: window.session is not None, timeout=QUERY_TIMEOUT_MS)
        return window

    yield make
    for window in windows:
        window.close()


@pytest.fixture
def index_in(qtbot: QtBot) -> Callable[[MainWindow, Path], object]:
    """`index_in(window, folder)`: open the folder and wait for its indexing run; returns the IndexSummary."""

    def run(window: MainWindow, folder: Path) -> object:
        with qtbot.waitSignal(window.indexFinished, timeout=INDEX_TIMEOUT_MS) as blocker:
            window.open_folder(folder)
        return blocker.args[0]

    return run
