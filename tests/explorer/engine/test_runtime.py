"""Which runtime embeds: ONNX Runtime once its file is exported (into the cache, the first time torch loaded the
model), torch when asked for or when no checked file fits; a one-shot query then never imports torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from explorer.engine.runtime import RUNTIME_VARIABLE, runtime_cache, wants_onnx
from explorer.engine.session import RetrievalSession
from trainer.onnx_runtime import onnx_paths_cached

PROJECT_ROOT = Path(__file__).resolve().parents[3]


def test_the_first_session_exports_the_runtime_file_and_the_next_one_uses_it(
    small_model_path: Path, image_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(RUNTIME_VARIABLE, "auto")
    first = RetrievalSession(small_model_path, device="cpu")
    picture = next(image_folder.rglob("*.jpg"))
    embedded = first.embed_query(picture)
    assert first.runtime.startswith("ONNX Runtime")  # exported, checked, and used at once
    graph, record = onnx_paths_cached(runtime_cache(), first.fingerprint)
    assert graph.exists() and record.exists()
    second = RetrievalSession(small_model_path, device="cpu")
    assert np.allclose(second.embed_query(picture), embedded, atol=1e-5)
    assert second.runtime.startswith("ONNX Runtime")
    monkeypatch.setenv(RUNTIME_VARIABLE, "torch")
    by_torch = RetrievalSession(small_model_path, device="cpu")
    assert np.abs(by_torch.embed_query(picture) - embedded).max() < 1e-3 and by_torch.runtime == "torch (cpu)"


def test_a_damaged_runtime_file_falls_back_to_torch_and_says_why(
    small_model_path: Path, image_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(RUNTIME_VARIABLE, "auto")
    session = RetrievalSession(small_model_path, device="cpu")
    graph, record = onnx_paths_cached(runtime_cache(), session.fingerprint)
    graph.parent.mkdir(parents=True)
    graph.write_bytes(b"half a file")
    record.write_text(json.dumps({"fingerprint": session.fingerprint, "max_abs_diff": 0, "sign_agreement": 1,
                                  "probe_images": 8}))  # fmt: skip
    session.embed_query(next(image_folder.rglob("*.jpg")))
    assert session.runtime == "torch (cpu)"
    assert any("cannot be loaded by ONNX Runtime" in note for note in session.notes)


def test_the_setting_and_the_device_decide(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(RUNTIME_VARIABLE, "torch")
    assert not wants_onnx("auto") and not wants_onnx("cpu")
    monkeypatch.setenv(RUNTIME_VARIABLE, "auto")
    assert wants_onnx("cpu") and not wants_onnx("cuda")


def explorer_in_a_process(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`explorer ARGS` in a new interpreter that then prints whether torch was imported."""
    code = (
        "import sys, runpy\n"
        f"sys.argv = {['explorer', *args]!r}\n"
        "try:\n    runpy.run_module('explorer.cli', run_name='__main__')\n"
        "except SystemExit as e:\n    assert not e.code, e.code\n"
        "print('torch loaded:', 'torch' in sys.modules)\n"
    )
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300,
                          cwd=PROJECT_ROOT)  # fmt: skip


def test_neither_the_first_index_nor_a_one_shot_query_imports_torch(
    small_model_path: Path, image_folder: Path, isolated_cache: Path, make_img: object, tmp_path: Path
) -> None:
    env = {**os.environ, RUNTIME_VARIABLE: "auto", "RETRIEVAL_EXPLORER_CACHE": str(isolated_cache)}
    model = ["--model", str(small_model_path)]
    done = explorer_in_a_process([*model, "index", str(image_folder)], env)  # exports the runtime file first
    assert done.returncode == 0, done.stderr
    assert "torch loaded: False" in done.stdout
    outside = make_img(tmp_path / "outside.jpg", 99)  # type: ignore[operator]
    shot = explorer_in_a_process([*model, "query", str(outside), "--in", str(image_folder), "-k", "3"], env)
    assert shot.returncode == 0, shot.stderr
    assert "torch loaded: False" in shot.stdout and "rank" in shot.stdout
