"""The Qt binding the app runs on: faults of PySide itself that took the app down, checked where they would show."""

from __future__ import annotations

import sys

from PySide6.QtCore import QObject, Signal


class _Emitter(QObject):
    fired = Signal(str)


def test_emitting_a_signal_keeps_the_reference_counts_of_python_constants(qapp) -> None:  # type: ignore[no-untyped-def]
    """PySide6 6.12.0 returned True from Signal.emit without a reference of its own: each emit cost True one
    reference, and after about a thousand (a page of thumbnails, the duplicates dialog) the interpreter aborted.
    pyproject.toml excludes that version; this fails (without aborting) on any binding that does it again."""
    emitter = _Emitter()
    seen: list[str] = []
    emitter.fired.connect(seen.append)
    before = sys.getrefcount(True)
    for _ in range(200):
        emitter.fired.emit("x")
    assert len(seen) == 200
    assert sys.getrefcount(True) >= before - 5  # a few references may come and go meanwhile; not 200
