"""The worked examples in the docstrings of explorer.app (the controller's helpers, the sentences, the jobs)."""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parents[3] / "explorer" / "app"
WITH_EXAMPLES = sorted(p.stem for p in APP.glob("*.py") if ">>> " in p.read_text(encoding="utf-8"))


def test_the_modules_with_examples_are_found() -> None:
    assert {"jobs", "window_texts", "query_state"} <= set(WITH_EXAMPLES)


@pytest.mark.parametrize("name", WITH_EXAMPLES)
def test_docstring_examples_hold(name: str) -> None:
    failures, tried = doctest.testmod(importlib.import_module(f"explorer.app.{name}"))
    assert tried > 0 and failures == 0
