"""The worked examples in the docstrings of explorer.engine (the multi-picture query, ...)."""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

ENGINE = Path(__file__).resolve().parents[3] / "explorer" / "engine"
WITH_EXAMPLES = sorted(p.stem for p in ENGINE.glob("*.py") if ">>> " in p.read_text(encoding="utf-8"))


def test_the_modules_with_examples_are_found() -> None:
    assert "multi_query" in WITH_EXAMPLES


@pytest.mark.parametrize("name", WITH_EXAMPLES)
def test_docstring_examples_hold(name: str) -> None:
    failures, tried = doctest.testmod(importlib.import_module(f"explorer.engine.{name}"))
    assert tried > 0 and failures == 0
