"""Shared fixtures: headless Qt, an isolated cache directory, and small generated images."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest


def _register_helper(name: str) -> None:
    """Makes `tests/<name>.py` (imagegen, raw_files, recording_view) importable as `<name>` from every test file.

    Under `--import-mode=importlib` test files cannot import conftest files or each other. Putting this
    directory on sys.path would do it, but would also turn `tests/explorer` and `tests/trainer` into namespace
    packages that shadow the real (editable-installed) `explorer` and `trainer`; so only these modules are
    loaded and entered in sys.modules.
    """
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)


_register_helper("imagegen")
_register_helper("raw_files")
_register_helper("recording_view")

from imagegen import make_image  # noqa: E402

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATASETS = PROJECT_ROOT.parent / "shared" / "datasets"


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread() -> None:
    """Tests run tiny batches, where torch's thread pool on 2 shared cores costs far more than it gains."""
    import torch

    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own cache (and data) directory so catalogs and libraries never leak between tests; and
    torch runs the model unless a test asks for ONNX Runtime (tests/explorer/engine/test_runtime.py): with a fresh
    cache each, every session would export its runtime file again (seconds, hundreds of times)."""
    cache = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("RETRIEVAL_EXPLORER_CACHE", str(cache))
    monkeypatch.setenv("RETRIEVAL_EXPLORER_DATA", str(cache / "data"))  # libraries, models: never the user's
    monkeypatch.setenv("RETRIEVAL_EXPLORER_RUNTIME", "torch")
    return cache


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """A small folder of 12 generated JPEG/PNG photos in two sub-folders."""
    root = tmp_path / "photos"
    for i in range(12):
        sub = "a" if i < 6 else "b"
        ext = ".jpg" if i % 2 == 0 else ".png"
        make_image(root / sub / f"img_{i:02d}{ext}", seed=i)
    return root


@pytest.fixture
def shared_datasets() -> Path:
    if not SHARED_DATASETS.is_dir():
        pytest.skip("../shared/datasets is not present")
    return SHARED_DATASETS
