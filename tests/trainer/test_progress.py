"""Progress reports: the worked examples in the docstrings, and time left only when it can be known."""

from __future__ import annotations

import doctest

from trainer import progress
from trainer.progress import Progress


def test_docstring_examples() -> None:
    result = doctest.testmod(progress)
    assert result.attempted >= 3
    assert result.failed == 0


def test_seconds_left_needs_a_total_and_a_rate() -> None:
    assert Progress(10, 40, 5.0).seconds_left == 6.0
    assert Progress(10, 0, 5.0, "scanning").seconds_left is None  # a scan does not know its total
    assert Progress(0, 40, 0.0).seconds_left is None
