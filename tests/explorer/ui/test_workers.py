"""A job's failure is one plain sentence: the person's own problem as its reason, a fault of ours with the log."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from explorer.ui.workers import failure_message
from trainer.images import ImageLoadError


def test_a_problem_with_the_input_is_its_reason_alone(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        assert failure_message("query", ImageLoadError("not an image (HTML page)")) == "not an image (HTML page)"
    assert "Traceback" not in caplog.text


def test_a_fault_of_ours_points_to_the_log_which_has_the_traceback(
    caplog: pytest.LogCaptureFixture, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RETRIEVAL_EXPLORER_CACHE", str(tmp_path))
    try:
        {}["missing"]
    except KeyError as exc:
        with caplog.at_level(logging.INFO):
            message = failure_message("query", exc)
    assert message == f"something went wrong ('missing'); the details are in {tmp_path / 'explorer.log'}"
    assert "KeyError" not in message
    assert "Traceback" in caplog.text and "KeyError: 'missing'" in caplog.text
