"""One indexing run per folder at a time, across processes: the second waits, naming the first, and then finds the
work done (issue 13: two `explorer index` runs on one folder both embedded everything, neither said a word)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from explorer.engine.index_lock import indexing_lock
from explorer.engine.session import RetrievalSession
from trainer.progress import Cancelled

ROOT = Path(__file__).resolve().parents[3]


def test_a_second_index_run_waits_for_the_first_and_names_it(
    image_folder: Path, small_model_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("RETRIEVAL_EXPLORER_CACHE", str(cache))
    session = RetrievalSession(small_model_path, device="cpu")
    lock = session.catalog_path(image_folder).with_name("index.lock")
    session.close()
    command = [sys.executable, "-m", "explorer.cli", "--model", str(small_model_path), "--device", "cpu", "index",
               str(image_folder), "--quiet"]  # fmt: skip
    env = {**os.environ, "RETRIEVAL_EXPLORER_CACHE": str(cache)}
    with indexing_lock(lock):  # this process is "the first run"
        second = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(8)  # long enough to start, load and reach the lock
        assert second.poll() is None, second.communicate()  # still waiting
    out, err = second.communicate(timeout=300)  # released: it indexes now
    assert second.returncode == 0, err
    assert f"this folder is already being indexed by process {os.getpid()}; waiting for it to finish" in err
    assert out.startswith("12 images indexed")


def test_waiting_stops_when_the_run_is_cancelled(tmp_path: Path) -> None:
    lock = tmp_path / "index.lock"
    heard: list[str] = []
    stop = threading.Event()
    with indexing_lock(lock):
        result: list[BaseException] = []

        def second() -> None:
            try:
                with indexing_lock(lock, on_wait=heard.append, cancel=stop.is_set):
                    pass
            except Cancelled as exc:
                result.append(exc)

        thread = threading.Thread(target=second)
        thread.start()
        time.sleep(0.5)
        stop.set()
        thread.join(timeout=5)
    assert [type(e) for e in result] == [Cancelled]
    assert heard == [f"this folder is already being indexed by process {os.getpid()}; waiting for it to finish"]
    with indexing_lock(lock):  # released: taken again at once
        pass
