"""The SQLite catalog: atomic batches, stamps, skipped files, row ids that are never reused."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from explorer.engine.cache import catalog_dir, folder_key
from explorer.engine.catalog import Catalog, CatalogError, FileStamp, SkippedFile
from explorer.paths import cache_root

DIM = 16


def _vec(seed: int) -> npt.NDArray[np.float32]:
    return np.random.default_rng(seed).normal(size=DIM).astype(np.float32)


def _stamp(name: str, size: int = 100, mtime: int = 1) -> FileStamp:
    return FileStamp(name, size, mtime)


@pytest.fixture
def catalog(tmp_path: Path) -> Iterator[Catalog]:
    c = Catalog(tmp_path / "cat" / "catalog.sqlite", DIM, {"model": "m"})
    yield c
    c.close()


def test_empty_catalog(catalog: Catalog) -> None:
    assert len(catalog) == 0
    assert catalog.stamps() == {} and catalog.skipped() == []
    snap = catalog.snapshot()
    assert snap.ids.shape == (0,) and snap.embeddings.shape == (0, DIM) and snap.relpaths == []
    assert catalog.meta()["dim"] == str(DIM) and catalog.meta()["model"] == "m"


def test_commit_and_read_back(catalog: Catalog) -> None:
    catalog.commit_batch([(_stamp("a.jpg"), _vec(1)), (_stamp("sub/b.jpg", 7, 9), _vec(2))], [])
    catalog.commit_batch([(_stamp("c.png"), _vec(3))], [(_stamp("bad.jpg", 5, 5), "truncated JPEG")])
    assert len(catalog) == 3
    assert catalog.stamps()["sub/b.jpg"] == FileStamp("sub/b.jpg", 7, 9)
    assert catalog.skipped() == [SkippedFile("bad.jpg", "truncated JPEG")]
    assert catalog.skipped_stamps() == {"bad.jpg": FileStamp("bad.jpg", 5, 5)}
    snap = catalog.snapshot()
    assert snap.relpaths == ["a.jpg", "sub/b.jpg", "c.png"]
    assert np.all(np.diff(snap.ids) > 0)
    np.testing.assert_array_equal(snap.embeddings, np.stack([_vec(1), _vec(2), _vec(3)]))
    assert "updated" in catalog.meta()


def test_changed_file_gets_a_new_id_and_ids_are_never_reused(catalog: Catalog) -> None:
    catalog.commit_batch([(_stamp("a.jpg"), _vec(1)), (_stamp("b.jpg"), _vec(2))], [])
    first = dict(zip(catalog.snapshot().relpaths, catalog.snapshot().ids.tolist(), strict=True))
    catalog.commit_batch([(_stamp("b.jpg", mtime=2), _vec(5))], [])
    snap = catalog.snapshot()
    ids = dict(zip(snap.relpaths, snap.ids.tolist(), strict=True))
    assert ids["a.jpg"] == first["a.jpg"]
    assert ids["b.jpg"] > max(first.values())
    np.testing.assert_array_equal(snap.embeddings[snap.relpaths.index("b.jpg")], _vec(5))
    assert len(catalog) == 2
    # A deleted row's id is not handed out again (persisted indexes are keyed by it).
    assert catalog.remove(["b.jpg"]) == 1
    catalog.commit_batch([(_stamp("c.jpg"), _vec(6))], [])
    assert catalog.snapshot().ids.max() > ids["b.jpg"]


def test_file_moves_between_embedded_and_skipped(catalog: Catalog) -> None:
    catalog.commit_batch([(_stamp("x.jpg"), _vec(1))], [])
    catalog.commit_batch([], [(_stamp("x.jpg", mtime=2), "truncated JPEG")])
    assert len(catalog) == 0
    assert catalog.skipped() == [SkippedFile("x.jpg", "truncated JPEG")]
    catalog.commit_batch([(_stamp("x.jpg", mtime=3), _vec(2))], [])
    assert len(catalog) == 1 and catalog.skipped() == []


def test_remove_forgets_embedded_and_skipped(catalog: Catalog) -> None:
    catalog.commit_batch([(_stamp("a.jpg"), _vec(1))], [(_stamp("b.jpg"), "zero-byte file")])
    assert catalog.remove(["a.jpg", "b.jpg", "never-there.jpg"]) == 2
    assert len(catalog) == 0 and catalog.skipped() == []


def test_a_failed_batch_leaves_nothing_behind(catalog: Catalog) -> None:
    catalog.commit_batch([(_stamp("a.jpg"), _vec(1))], [])
    with pytest.raises(CatalogError, match="shape"):
        catalog.commit_batch([(_stamp("b.jpg"), _vec(2)), (_stamp("c.jpg"), np.zeros(DIM + 1, np.float32))], [])
    assert sorted(catalog.stamps()) == ["a.jpg"]


def test_reopen_keeps_everything_and_checks_the_dimension(tmp_path: Path) -> None:
    path = tmp_path / "catalog.sqlite"
    c = Catalog(path, DIM)
    c.commit_batch([(_stamp("a.jpg"), _vec(1))], [(_stamp("b.jpg"), "not an image (text file)")])
    c.close()
    again = Catalog(path, DIM)
    assert len(again) == 1 and again.skipped() == [SkippedFile("b.jpg", "not an image (text file)")]
    np.testing.assert_array_equal(again.snapshot().embeddings[0], _vec(1))
    again.close()
    with pytest.raises(CatalogError, match="16-d"):
        Catalog(path, 32)


def test_unreadable_catalog_file_is_a_catalog_error(tmp_path: Path) -> None:
    path = tmp_path / "catalog.sqlite"
    path.write_bytes(b"this is not a database" * 200)
    with pytest.raises(CatalogError, match="is damaged"):
        Catalog(path, DIM)


def test_another_reader_sees_only_committed_batches(catalog: Catalog) -> None:
    """What the crash-safety test relies on: a read-only connection sees whole batches."""
    catalog.commit_batch([(_stamp(f"{i}.jpg"), _vec(i)) for i in range(3)], [])
    reader = sqlite3.connect(f"file:{catalog.path}?mode=ro", uri=True)
    try:
        assert reader.execute("SELECT COUNT(*) FROM images").fetchone()[0] == 3
        blobs = [r[0] for r in reader.execute("SELECT embedding FROM images")]
        assert all(len(b) == DIM * 4 for b in blobs)
    finally:
        reader.close()


def test_catalogs_live_in_the_cache_per_folder_and_model(tmp_path: Path, isolated_cache: Path) -> None:
    assert cache_root() == isolated_cache
    a, b = tmp_path / "photos", tmp_path / "other" / "photos"
    assert folder_key(a) != folder_key(b)
    assert folder_key(a).startswith("photos-")
    assert folder_key(a) == folder_key(tmp_path / "x" / ".." / "photos")
    d = catalog_dir(a, "abc123")
    assert d.is_relative_to(isolated_cache)
    assert d.name == "abc123" and catalog_dir(a, "def456") != d
    assert not d.is_relative_to(a)


def test_an_embedding_that_is_not_a_number_is_never_stored_or_searched(tmp_path: Path) -> None:
    from explorer.engine.catalog import Catalog, FileStamp

    catalog = Catalog(tmp_path / "c.sqlite", dim=4)
    good, bad = FileStamp("good.jpg", 1, 1), FileStamp("bad.jpg", 1, 1)
    catalog.commit_batch([(good, np.ones(4, np.float32)), (bad, np.array([1, np.nan, 0, 0], np.float32))], [])
    assert list(catalog.stamps()) == ["good.jpg"]
    assert [s.relpath for s in catalog.skipped()] == ["bad.jpg"] and "not a number" in catalog.skipped()[0].reason
    # A row written by an older version (or altered on disk) is left out of what is searched.
    with catalog._lock:
        catalog._db.execute(
            "INSERT INTO images (relpath, size, mtime_ns, embedding) VALUES ('old.jpg', 1, 1, ?)",
            (np.array([np.inf, 0, 0, 0], np.float32).tobytes(),),
        )
    assert catalog.snapshot().relpaths == ["good.jpg"]
