"""Progress reports: time left only when it can be known (docstring examples: tests/trainer/test_card.py)."""

from __future__ import annotations

from trainer.progress import Progress


def test_seconds_left_needs_a_total_and_a_rate() -> None:
    assert Progress(10, 40, 5.0).seconds_left == 6.0
    assert Progress(10, 0, 5.0, "scanning").seconds_left is None  # a scan does not know its total
    assert Progress(0, 40, 0.0).seconds_left is None
