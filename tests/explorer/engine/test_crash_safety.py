"""A run killed mid-index (power cut, OOM killer, closed laptop lid) leaves a consistent catalog, and the
next run embeds only what is missing."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from explorer.cli import main
from explorer.engine.catalog import Catalog
from explorer.engine.session import RetrievalSession
from trainer.inference import BatchEmbedder

N_IMAGES = 150
DIM = 1280

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")


def _explorer(model: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "explorer.cli", "--model", str(model), "--device", "cpu", *args]


def _env(cache: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["RETRIEVAL_EXPLORER_CACHE"] = str(cache)
    env["OMP_NUM_THREADS"] = "1"  # as the tests themselves run (see tests/conftest.py)
    return env


def _committed_rows(catalog: Path) -> int:
    """Rows visible to a read-only reader (committed batches only); 0 while the catalog is being created."""
    if not catalog.exists():
        return 0
    try:
        db = sqlite3.connect(f"file:{catalog}?mode=ro", uri=True, timeout=0.5)
        try:
            return int(db.execute("SELECT COUNT(*) FROM images").fetchone()[0])
        finally:
            db.close()
    except sqlite3.OperationalError:  # schema not created yet, or the file is being set up
        return 0


def test_killed_index_run_resumes(
    tmp_path: Path,
    isolated_cache: Path,
    small_model_path: Path,
    embedder: BatchEmbedder,
    make_img: Callable[..., Path],
    reuse_small_model: list[Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    folder = tmp_path / "photos"
    for i in range(N_IMAGES):
        make_img(folder / f"d{i // 50}" / f"p{i:03d}.jpg", seed=i, size=(64, 48))
    session = RetrievalSession(small_model_path)
    catalog_path = session.catalog_path(folder)
    session.close()

    # Batches of one image: every image is its own transaction, so the kill lands between or inside one.
    proc = subprocess.Popen(
        _explorer(small_model_path, "index", str(folder), "--quiet", "--batch-size", "1"),
        env=_env(isolated_cache),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 180
        rows = 0
        while time.monotonic() < deadline and proc.poll() is None:
            rows = _committed_rows(catalog_path)
            if rows >= 10:
                break
            time.sleep(0.005)
        assert proc.poll() is None, f"indexing ended before it could be killed: {proc.communicate()[1]!r}"
        assert 10 <= rows < N_IMAGES, rows
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL

    # The catalog opens, passes SQLite's own check and holds whole rows only.
    check = sqlite3.connect(str(catalog_path))
    try:
        assert check.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        sizes = {n for (n,) in check.execute("SELECT length(embedding) FROM images")}
    finally:
        check.close()
    assert sizes == {DIM * 4}
    catalog = Catalog(catalog_path, DIM)
    try:
        snap = catalog.snapshot()
        killed_at = len(snap.ids)
        assert rows <= killed_at < N_IMAGES
        assert len(set(snap.relpaths)) == killed_at
        assert all((folder / rel).is_file() for rel in snap.relpaths)
        assert np.isfinite(snap.embeddings).all()
        # What was committed is right, not just well-formed.
        for row in (0, killed_at - 1):
            expected = embedder.embed_file(folder / snap.relpaths[row])
            np.testing.assert_allclose(snap.embeddings[row], expected, rtol=1e-4, atol=1e-4)
        ids_before = dict(zip(snap.relpaths, snap.ids.tolist(), strict=True))
    finally:
        catalog.close()

    # The next run (in this process: starting Python and torch again would only cost time) embeds only
    # what is missing.
    capsys.readouterr()
    code = main(["--model", str(small_model_path), "--device", "cpu", "index", str(folder), "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    report = json.loads(out)
    assert report["unchanged"] == killed_at
    assert report["embedded"] == N_IMAGES - killed_at
    assert (report["indexed"], report["skipped"], report["cancelled"]) == (N_IMAGES, [], False)

    catalog = Catalog(catalog_path, DIM)
    try:
        snap = catalog.snapshot()
        assert sorted(snap.relpaths) == sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.jpg"))
        ids_after = dict(zip(snap.relpaths, snap.ids.tolist(), strict=True))
        assert {rel: ids_after[rel] for rel in ids_before} == ids_before  # earlier rows kept, not redone
    finally:
        catalog.close()
