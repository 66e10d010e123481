"""Search against an indexed folder: both distances match brute force; the persisted index stays in sync."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from explorer.engine import search as search_module
from explorer.engine.catalog import Catalog
from explorer.engine.indexer import update_catalog
from explorer.engine.search import Collection, Ranking
from trainer.inference import BatchEmbedder
from trainer.model import EmbeddingModel

DIMS = [64, 128, 256, 1280]


@pytest.fixture
def indexed(image_folder: Path, catalog: Catalog, embedder: BatchEmbedder) -> Catalog:
    """A freshly indexed folder that a test may change."""
    update_catalog(image_folder, catalog, embedder)
    return catalog


@pytest.fixture(scope="module")
def shared_index(
    tmp_path_factory: pytest.TempPathFactory, small_model: EmbeddingModel, make_img: Callable[..., Path]
) -> Iterator[tuple[Path, Catalog]]:
    """One indexed folder of 12 pictures for the read-only tests (indexing once keeps the module fast)."""
    root = tmp_path_factory.mktemp("shared") / "photos"
    for i in range(12):
        make_img(root / ("a" if i < 6 else "b") / f"img_{i:02d}{'.jpg' if i % 2 == 0 else '.png'}", seed=i)
    catalog = Catalog(root.parent / "cache" / "catalog.sqlite", 1280)
    update_catalog(root, catalog, BatchEmbedder(small_model, "cpu", batch_size=12, decode_workers=2))
    yield root, catalog
    catalog.close()


def _brute_force(
    embeddings: npt.NDArray[np.float32], query: npt.NDArray[np.float32], dim: int
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """Cosine distance and Hamming distance of every row to the query, from first principles."""
    e = embeddings[:, :dim].astype(np.float64)
    q = query[:dim].astype(np.float64)
    cos = 1.0 - (e @ q) / (np.linalg.norm(e, axis=1) * np.linalg.norm(q))
    ham = ((e > 0) != (q > 0)).sum(axis=1)
    return cos, ham


def _check_ranking(ranking: Ranking, coll: Collection, query: npt.NDArray[np.float32], k: int) -> None:
    snap = coll.snapshot
    cos, ham = _brute_force(snap.embeddings, query, ranking.dim)
    res = ranking.results
    assert [r.rank for r in res] == list(range(1, k + 1))
    rows = [snap.relpaths.index(r.relpath) for r in res]
    assert len(set(rows)) == k
    for r, row in zip(res, rows, strict=True):
        assert r.path == coll.folder / r.relpath and r.path.is_file()
        assert r.id == snap.ids[row]
        assert r.cosine_distance == pytest.approx(max(cos[row], 0.0), abs=1e-5)
        assert r.hamming_distance == ham[row]
    if ranking.binary:
        assert [r.hamming_distance for r in res] == sorted(ham)[:k]
    else:
        got = [r.cosine_distance for r in res]
        assert got == sorted(got)
        np.testing.assert_allclose(got, np.maximum(np.sort(cos)[:k], 0.0), atol=1e-5)


@pytest.mark.parametrize("binary", [False, True])
@pytest.mark.parametrize("dim", DIMS)
def test_search_matches_brute_force(shared_index: tuple[Path, Catalog], dim: int, binary: bool) -> None:
    coll = Collection(*shared_index)
    assert len(coll) == 12
    rng = np.random.default_rng(dim)
    # A catalog image (which must find itself first) and an unrelated query vector.
    self_query = coll.snapshot.embeddings[5]
    for query in (self_query, rng.normal(size=1280).astype(np.float32)):
        ranking = coll.search(query, k=6, dim=dim, binary=binary)
        assert (ranking.dim, ranking.binary) == (dim, binary)
        assert ranking.bytes_per_image == (dim // 8 if binary else dim * 4)
        _check_ranking(ranking, coll, query, 6)
    first = coll.search(self_query, k=3, dim=dim, binary=binary).results[0]
    assert first.relpath == coll.snapshot.relpaths[5]
    assert first.cosine_distance < 1e-5 and first.hamming_distance == 0


def test_k_bounds_and_bad_dimensions(shared_index: tuple[Path, Catalog]) -> None:
    coll = Collection(*shared_index)
    q = coll.snapshot.embeddings[0]
    assert len(coll.search(q, k=100).results) == 12
    assert coll.search(q, k=0).results == []
    assert coll.search(q).dim == 1280
    with pytest.raises(ValueError, match="outside"):
        coll.search(q, dim=2048)
    with pytest.raises(ValueError, match="outside"):
        coll.search(q, dim=0)
    with pytest.raises(ValueError, match=r"multiple of 8|divisible by 8"):
        coll.search(q, dim=100, binary=True)
    with pytest.raises(ValueError, match="dimensions"):
        coll.search(q[:64])
    # A float ranking at a dimension that is not a multiple of 8 still works (no Hamming distance then).
    ranking = coll.search(q, k=4, dim=100)
    assert ranking.results[0].relpath == coll.snapshot.relpaths[0]
    assert all(r.hamming_distance == 0 for r in ranking.results)


def test_all_distances_match_brute_force(shared_index: tuple[Path, Catalog]) -> None:
    coll = Collection(*shared_index)
    q = np.random.default_rng(0).normal(size=1280).astype(np.float32)
    for dim in (64, 1280):
        cos, ham = coll.all_distances(q, dim)
        want_cos, want_ham = _brute_force(coll.snapshot.embeddings, q, dim)
        np.testing.assert_allclose(cos, np.maximum(want_cos, 0.0), atol=1e-5)
        np.testing.assert_array_equal(ham, want_ham)
    assert len(coll.paths) == 12 and all(p.is_file() for p in coll.paths)


def test_empty_collection(catalog: Catalog, tmp_path: Path) -> None:
    coll = Collection(tmp_path, catalog)
    assert len(coll) == 0
    assert coll.search(np.ones(1280, np.float32), k=5).results == []
    assert coll.search(np.ones(1280, np.float32), k=5, binary=True).results == []


@pytest.fixture
def sync_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int, int]]:
    """(dim, added, removed) for every FloatIndex.sync the search layer makes."""
    calls: list[tuple[int, int, int]] = []
    original: Callable[..., tuple[int, int]] = search_module.FloatIndex.sync

    def spy(self: Any, ids: Any, vectors_for: Any) -> tuple[int, int]:
        added, removed = original(self, ids, vectors_for)
        calls.append((self.dim, added, removed))
        return added, removed

    monkeypatch.setattr(search_module.FloatIndex, "sync", spy)
    return calls


def test_persisted_float_index_is_saved_reloaded_and_extended(
    image_folder: Path,
    indexed: Catalog,
    embedder: BatchEmbedder,
    sync_calls: list[tuple[int, int, int]],
    make_img: Callable[..., Path],
) -> None:
    coll = Collection(image_folder, indexed, exact_limit=0)
    assert not coll.uses_exact_float(64)
    coll.prepare([64, 256])
    assert sync_calls == [(64, 12, 0), (256, 12, 0)]
    index_file = indexed.path.parent / "float-64.hnsw"
    assert index_file.is_file() and (indexed.path.parent / "float-256.hnsw").is_file()
    q = coll.snapshot.embeddings[3]
    _check_ranking(coll.search(q, k=5, dim=64), coll, q, 5)
    saved = index_file.stat().st_mtime_ns

    # A new session loads the saved index: nothing to add, nothing rewritten.
    fresh = Collection(image_folder, indexed, exact_limit=0)
    sync_calls.clear()
    _check_ranking(fresh.search(q, k=5, dim=64), fresh, q, 5)
    assert sync_calls == [(64, 0, 0)]
    assert index_file.stat().st_mtime_ns == saved

    # Three pictures added and one deleted: the index is patched, not rebuilt.
    for i in range(3):
        make_img(image_folder / "c" / f"new_{i}.jpg", seed=100 + i)
    (image_folder / "a" / "img_01.png").unlink()
    report = update_catalog(image_folder, indexed, embedder)
    assert (report.embedded, report.removed) == (3, 1)
    fresh.reload()
    sync_calls.clear()
    new_q = fresh.snapshot.embeddings[fresh.snapshot.relpaths.index("c/new_1.jpg")]
    ranking = fresh.search(new_q, k=14, dim=64)
    assert sync_calls == [(64, 3, 1)]
    _check_ranking(ranking, fresh, new_q, 14)
    assert ranking.results[0].relpath == "c/new_1.jpg"
    assert "a/img_01.png" not in [r.relpath for r in ranking.results]

    # ...and saved: the next session finds it complete.
    sync_calls.clear()
    Collection(image_folder, indexed, exact_limit=0).search(new_q, k=3, dim=64)
    assert sync_calls == [(64, 0, 0)]


def test_corrupt_persisted_index_is_rebuilt(
    image_folder: Path, indexed: Catalog, sync_calls: list[tuple[int, int, int]]
) -> None:
    Collection(image_folder, indexed, exact_limit=0).prepare([64])
    index_file = indexed.path.parent / "float-64.hnsw"
    data = index_file.read_bytes()
    index_file.write_bytes(data[: len(data) // 2])
    sync_calls.clear()
    coll = Collection(image_folder, indexed, exact_limit=0)
    q = coll.snapshot.embeddings[0]
    _check_ranking(coll.search(q, k=4, dim=64), coll, q, 4)
    assert sync_calls == [(64, 12, 0)]
    assert index_file.stat().st_size == len(data)  # rewritten whole


def test_an_index_file_of_a_recreated_catalog_is_not_reused(tmp_path: Path) -> None:
    """Row ids restart when a catalog is recreated: the old float index then answered with the neighbour one id
    off (and without the query itself). The index carries the catalog's identity and is rebuilt."""
    from explorer.engine.catalog import Catalog, FileStamp
    from explorer.engine.search import Collection

    rng = np.random.default_rng(0)
    path = tmp_path / "cache" / "catalog.sqlite"
    old = Catalog(path, dim=16)
    old.commit_batch([(FileStamp(f"old_{i}.jpg", 1, 1), rng.normal(size=16).astype(np.float32)) for i in range(5)], [])
    Collection(tmp_path, old).float_index(16)
    old.close()
    for stale in path.parent.glob("catalog.sqlite*"):
        stale.unlink()
    new_vectors = rng.normal(size=(4, 16)).astype(np.float32)
    new = Catalog(path, dim=16)
    new.commit_batch([(FileStamp(f"new_{i}.jpg", 1, 1), v) for i, v in enumerate(new_vectors)], [])
    collection = Collection(tmp_path, new)
    ids, _ = collection.float_index(16).search(new_vectors, 1)
    assert ids[:, 0].tolist() == collection.snapshot.ids.tolist()  # each vector finds itself
