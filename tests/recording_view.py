"""A stand-in for the window that the Qt-free controllers talk to (explorer.app): it records every call."""

from __future__ import annotations

from typing import Any


class RecordingView:
    """Every call the controller makes, as (name, args)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: self.calls.append((name, args + tuple(kwargs.values())))

    def named(self, name: str) -> list[tuple[Any, ...]]:
        return [args for n, args in self.calls if n == name]
