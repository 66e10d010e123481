"""The contiguous copy of a catalog's vectors: used only when it is exactly the catalog's, whatever happened to it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from explorer.engine.catalog import Catalog, FileStamp
from explorer.engine.vector_store import store_path

DIM = 32


def fill(catalog: Catalog, start: int, n: int, seed: int) -> None:
    vectors = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    catalog.commit_batch([(FileStamp(f"img_{start + i:05d}.jpg", 1, 1), v) for i, v in enumerate(vectors)], [])


def from_sqlite(catalog: Catalog) -> np.ndarray:
    """The truth, read past the copy."""
    count = len(catalog)
    with catalog._lock:
        catalog._db.execute("BEGIN")
        try:
            return catalog._read_vectors(count)
        finally:
            catalog._db.execute("COMMIT")


@pytest.fixture
def small(tmp_path: Path) -> Any:
    c = Catalog(tmp_path / "cache" / "catalog.sqlite", DIM)
    fill(c, 0, 50, seed=0)
    yield c
    c.close()


def spy_sqlite_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    reads: list[int] = []
    real = Catalog._read_vectors

    def spy(self: Catalog, count: int) -> Any:
        reads.append(count)
        return real(self, count)

    monkeypatch.setattr(Catalog, "_read_vectors", spy)
    return reads


def test_the_copy_is_written_once_then_mapped_instead_of_reading_sqlite(
    small: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads = spy_sqlite_reads(monkeypatch)
    first = small.snapshot()
    assert reads == [50] and store_path(small.path).is_file()
    second = small.snapshot()
    assert reads == [50]  # mapped, not read again
    assert isinstance(second.embeddings, np.memmap)
    np.testing.assert_array_equal(second.embeddings, first.embeddings)
    assert second.ids.tolist() == first.ids.tolist() and second.relpaths == first.relpaths


def test_a_change_to_the_catalog_makes_the_copy_stale(small: Catalog, monkeypatch: pytest.MonkeyPatch) -> None:
    small.snapshot()
    fill(small, 50, 3, seed=1)
    small.remove(["img_00007.jpg"])
    reads = spy_sqlite_reads(monkeypatch)
    snap = small.snapshot()
    assert reads == [52] and len(snap.ids) == 52 and "img_00007.jpg" not in snap.relpaths
    np.testing.assert_array_equal(snap.embeddings, from_sqlite(small))
    assert isinstance(small.snapshot().embeddings, np.memmap)  # written again


@pytest.mark.parametrize("damage", ["flipped", "truncated", "other catalog"])
def test_a_damaged_or_foreign_copy_is_never_used(small: Catalog, tmp_path: Path, damage: str) -> None:
    small.snapshot()
    path = store_path(small.path)
    data = bytearray(path.read_bytes())
    if damage == "flipped":
        data[-100] ^= 0xFF  # inside the vectors
        path.write_bytes(bytes(data))
    elif damage == "truncated":
        path.write_bytes(bytes(data[: -DIM * 4]))
    else:
        other = Catalog(tmp_path / "other" / "catalog.sqlite", DIM)
        fill(other, 0, 50, seed=9)
        other.snapshot()
        os.replace(store_path(other.path), path)
        other.close()
    snap = small.snapshot()
    assert not isinstance(snap.embeddings, np.memmap)
    np.testing.assert_array_equal(snap.embeddings, from_sqlite(small))


WRITER = r"""
import sys, numpy as np
from explorer.engine.catalog import Catalog, FileStamp
from explorer.engine import vector_store
c = Catalog(sys.argv[1], 32)
rng = np.random.default_rng(int(sys.argv[2]))
print("ready", flush=True)
while True:  # change the catalog and write its copy, over and over, until killed
    v = rng.standard_normal((400, 32)).astype(np.float32)
    c.commit_batch([(FileStamp(f"w_{i}.jpg", 1, int(rng.integers(1 << 30))), x) for i, x in enumerate(v)], [])
    c.snapshot()
"""


@pytest.mark.parametrize("after", [0.3, 0.7, 1.1])
def test_a_writer_killed_mid_write_leaves_a_copy_that_agrees_with_the_catalog(tmp_path: Path, after: float) -> None:
    path = tmp_path / "cache" / "catalog.sqlite"
    Catalog(path, DIM).close()
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(int(after * 10))], stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
    time.sleep(after)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    catalog = Catalog(path, DIM)
    try:
        snap = catalog.snapshot()
        truth = from_sqlite(catalog)
        np.testing.assert_array_equal(snap.embeddings, truth)
        assert len(snap.ids) == len(catalog)
        assert isinstance(catalog.snapshot().embeddings, np.memmap)  # and the copy is good again
    finally:
        catalog.close()


def test_recording_skipped_files_again_leaves_the_copy_valid(small: Catalog, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every `explorer index` records the unreadable files again; that changes no vector and must not make the next
    open read 100,000 embeddings from SQLite and write them out again."""
    small.commit_batch([], [(FileStamp("broken.jpg", 10, 1), "truncated JPEG")])
    small.snapshot()
    small.commit_batch([], [(FileStamp("broken.jpg", 10, 1), "truncated JPEG")])
    small.remove(["not-there.jpg"])
    reads = spy_sqlite_reads(monkeypatch)
    assert isinstance(small.snapshot().embeddings, np.memmap) and reads == []
