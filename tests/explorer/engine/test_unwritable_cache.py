"""A cache that cannot be written (a full disk, a read-only drive) still answers what is indexed, and says why.

The file layer is faulted here, so that the tests run anywhere: a full disk is the float index's save failing with
ENOSPC (the catalog fit, the index did not); a read-only drive is every SQLite connection of the catalog opened
read-only, as SQLite opens a file it cannot write, and the index's save failing with EROFS. (Checked once by hand on
a real tmpfs remounted read-only and on a full one: the same answers and exit codes; see issue 11's closing note.)
"""

from __future__ import annotations

import errno
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from explorer.engine import catalog as catalog_module
from explorer.engine.catalog import Catalog, CatalogReadOnly
from explorer.engine.index import FloatIndex
from explorer.engine.indexer import update_catalog
from explorer.engine.search import Collection
from trainer.inference import BatchEmbedder


def _fail_saves(monkeypatch: pytest.MonkeyPatch, code: int) -> None:
    def save(self: FloatIndex, path: Path) -> None:
        raise OSError(code, "No space left on device" if code == errno.ENOSPC else "Read-only file system", str(path))

    monkeypatch.setattr(FloatIndex, "save", save)


def _exact_order(coll: Collection, query: np.ndarray, k: int) -> list[str]:
    unit = coll.snapshot.embeddings / np.linalg.norm(coll.snapshot.embeddings, axis=1, keepdims=True)
    sims = unit @ (query / np.linalg.norm(query))
    return [coll.snapshot.relpaths[i] for i in np.argsort(-sims, kind="stable")[:k]]


def test_a_full_cache_that_cannot_save_the_float_index_still_answers_both_rankings(
    image_folder: Path, catalog: Catalog, embedder: BatchEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The attack: the catalog fit, the float index did not, and every query crashed (--binary too) because the
    # float index insisted on being saved.
    update_catalog(image_folder, catalog, embedder)
    _fail_saves(monkeypatch, errno.ENOSPC)
    notes: list[str] = []
    coll = Collection(image_folder, catalog, exact_limit=0, note=notes.append)
    assert coll.prepare([1280])  # what indexing does last
    query = coll.snapshot.embeddings[4]
    ranking = coll.search(query, k=5)
    assert [r.relpath for r in ranking.results] == _exact_order(coll, query, 5)
    assert coll.search(query, k=5, binary=True).results[0].relpath == coll.snapshot.relpaths[4]
    assert notes == [
        "the cache folder is full: the float index is kept in memory and built again next time",
    ]
    assert coll.float_index(1280) is not None  # from memory
    assert not (catalog.path.parent / "float-1280.hnsw").exists()


def _read_only_sqlite(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every connection the catalog makes is read-only, as SQLite opens a file on a read-only drive."""
    real_connect = sqlite3.connect

    def connect(database: str, *args: Any, uri: bool = False, **kwargs: Any) -> sqlite3.Connection:
        if not uri:
            database, uri = f"file:{Path(database).resolve()}?mode=ro", True
        return real_connect(database, *args, uri=uri, **kwargs)

    monkeypatch.setattr(catalog_module.sqlite3, "connect", connect)


def test_a_read_only_cache_searches_what_is_indexed_and_refuses_to_index_with_the_reason(
    image_folder: Path,
    tmp_path: Path,
    embedder: BatchEmbedder,
    monkeypatch: pytest.MonkeyPatch,
    make_img: Callable[..., Path],
) -> None:
    # The attack: a read-only cache that holds a valid index answered "not indexed yet".
    path = tmp_path / "cache" / "catalog.sqlite"
    writable = Catalog(path, 1280)
    update_catalog(image_folder, writable, embedder)
    expected = writable.snapshot()
    writable.close()

    _read_only_sqlite(monkeypatch)
    _fail_saves(monkeypatch, errno.EROFS)
    assert Catalog.peek_meta(path)["identity"]  # `is_indexed` reads this
    catalog = Catalog(path, 1280, {"model": "changed meta cannot be written"})
    assert catalog.read_only_reason == f"the cache folder {path.parent} is read-only"
    assert np.array_equal(catalog.snapshot().embeddings, expected.embeddings)
    notes: list[str] = []
    coll = Collection(image_folder, catalog, exact_limit=0, note=notes.append)
    query = expected.embeddings[7]
    assert [r.relpath for r in coll.search(query, k=4).results] == _exact_order(coll, query, 4)
    assert coll.search(query, k=1, binary=True).results[0].relpath == expected.relpaths[7]
    assert notes == [f"the cache folder {path.parent} is read-only: the float search is exact, without its saved index"]
    make_img(image_folder / "new.jpg", seed=99)
    with pytest.raises(CatalogReadOnly, match="is read-only: nothing new can be saved; free some space on it, or set"):
        update_catalog(image_folder, catalog, embedder)
    assert len(catalog) == len(expected.ids)
    catalog.close()


def test_a_catalog_on_a_drive_that_fails_to_read_is_left_where_it_is_not_set_aside(
    image_folder: Path, tmp_path: Path, embedder: BatchEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Seen on a full tmpfs: SQLite's "disk I/O error" was taken for damage, and the catalog was moved aside.
    path = tmp_path / "cache" / "catalog.sqlite"
    writable = Catalog(path, 1280)
    update_catalog(image_folder, writable, embedder)
    writable.close()
    real_connect = sqlite3.connect

    def failing(database: str, *args: Any, **kwargs: Any) -> sqlite3.Connection:
        real_connect(database, *args, **kwargs).close()
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(catalog_module.sqlite3, "connect", failing)
    with pytest.raises(CatalogReadOnly, match=r"cannot be read now .*disk I/O error.*full or unplugged"):
        Catalog(path, 1280)
    assert not Catalog.is_damaged(path)
    monkeypatch.undo()
    assert path.exists() and len(Catalog(path, 1280)) == 12
