"""`retrieval-explorer` (the gui-script) and `python -m explorer`: open the window.

Start-up order matters for a double-click app: the window must be on screen before anything slow is
imported. Qt and the window come first; torch is imported by the model-loading worker once the window
shows, and pyqtgraph on a background thread (see `explorer.ui.window`). `freeze_support()` runs
before everything else so a frozen (PyInstaller) build does not start a second window in every child
process.
"""

from __future__ import annotations

import multiprocessing
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import argparse


def _parser() -> argparse.ArgumentParser:
    import argparse
    from pathlib import Path

    p = argparse.ArgumentParser(prog="retrieval-explorer", description="Image retrieval explorer (window).")
    p.add_argument("path", nargs="?", type=Path, help="a folder to search, or an image to query with")
    p.add_argument("--model", type=Path, default=None, help="model file (.safetensors/.json); default: last used")
    p.add_argument("--settings", type=Path, default=None, help="INI file for preferences (default: the user's)")
    # Start-up benchmark (bench/gui_responsiveness.py): print when the window is first painted, then quit.
    p.add_argument("--exit-when-shown", action="store_true", help=argparse.SUPPRESS)
    # Further modes (e.g. a --self-test) go here, and are dispatched in `main` before the GUI starts.
    return p


def main(argv: list[str] | None = None) -> int:
    multiprocessing.freeze_support()
    import sys
    import time

    if "--self-test" in (sys.argv[1:] if argv is None else argv):  # headless check of a build: no Qt, no window
        from explorer.selftest import run_self_test

        return run_self_test()
    started = time.perf_counter()
    args, qt_args = _parser().parse_known_args(sys.argv[1:] if argv is None else argv)
    # -- non-GUI modes are dispatched here (none yet) --------------------------------------------------
    from explorer.qt_libraries import window_problem

    problem = window_problem()  # before Qt starts: its own answer is an abort that names the wrong library
    if problem is not None:
        print(f"retrieval-explorer: {problem}", file=sys.stderr)
        return 1
    return _run_window(args, [sys.argv[0], *qt_args], started)


def _log_to_file() -> None:
    """Everything worth keeping goes to the log file, tracebacks included; the terminal gets warnings in one line."""
    import logging
    import logging.handlers

    from explorer.paths import log_file

    class OneLine(logging.Formatter):
        def formatException(self, ei: object) -> str:
            return ""

        def format(self, record: logging.LogRecord) -> str:
            return " ".join(super().format(record).split())

    terminal = logging.StreamHandler()
    terminal.setLevel(logging.WARNING)
    terminal.setFormatter(OneLine("%(levelname)s %(name)s: %(message)s"))
    handlers: list[logging.Handler] = [terminal]
    try:
        path = log_file()
        path.parent.mkdir(parents=True, exist_ok=True)
        to_file = logging.handlers.RotatingFileHandler(path, maxBytes=1 << 20, backupCount=2, encoding="utf-8")
        to_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handlers.append(to_file)
    except OSError:  # a cache that cannot be written: the terminal still hears of problems
        pass
    logging.basicConfig(level=logging.INFO, handlers=handlers, force=True)


def _run_window(args: argparse.Namespace, qt_argv: list[str], started: float) -> int:
    import os
    import time

    from PySide6.QtCore import QEvent, QObject
    from PySide6.QtGui import QGuiApplication
    from PySide6.QtWidgets import QApplication

    _log_to_file()
    if args.settings is not None:
        os.environ["RETRIEVAL_EXPLORER_SETTINGS"] = str(args.settings)
    app = QApplication.instance() or QApplication(qt_argv)
    app.setOrganizationName("retrieval-explorer")
    app.setApplicationName("Retrieval Explorer")
    QGuiApplication.setDesktopFileName("retrieval-explorer")  # static; `instance()` is typed as QCoreApplication

    from explorer.ui.settings import Settings
    from explorer.ui.window import MainWindow, app_icon

    QApplication.setWindowIcon(app_icon())
    settings = Settings()
    query = None
    if args.model is not None:
        settings.model_path = args.model.resolve()
    if args.path is not None:
        if args.path.is_dir():
            settings.remember_folder(args.path.resolve())
        elif args.path.is_file():
            query = args.path.resolve()
    window = MainWindow(settings)

    if args.exit_when_shown:

        class _FirstPaint(QObject):
            def eventFilter(self, obj: QObject, event: QEvent) -> bool:
                if event.type() == QEvent.Type.Paint and obj is window:
                    print(f"window-shown {time.perf_counter() - started:.3f}", flush=True)
                    # Leave at once: a normal close would wait for the model that is still loading.
                    os._exit(0)
                return False

        probe = _FirstPaint(window)
        window.installEventFilter(probe)
    window.show()
    if query is not None:
        window.set_query_path(query)
    return app.exec()


if __name__ == "__main__":
    raise SystemExit(main())
