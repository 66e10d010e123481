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
    original: Callable[..., tuple[int, int] | None] = search_module.FloatIndex.sync

    def spy(self: Any, ids: Any, vectors_for: Any, *rest: Any) -> tuple[int, int] | None:
        done = original(self, ids, vectors_for, *rest)
        assert done is not None
        calls.append((self.dim, *done))
        return done

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
    assert sync_calls == []
    assert fresh.float_index(64) is not None
    assert index_file.stat().st_mtime_ns == saved

    # Three pictures added and one deleted: a query answers exactly meanwhile, and the next indexing patches the
    # index instead of rebuilding it.
    for i in range(3):
        make_img(image_folder / "c" / f"new_{i}.jpg", seed=100 + i)
    (image_folder / "a" / "img_01.png").unlink()
    report = update_catalog(image_folder, indexed, embedder)
    assert (report.embedded, report.removed) == (3, 1)
    fresh.reload()
    sync_calls.clear()
    new_q = fresh.snapshot.embeddings[fresh.snapshot.relpaths.index("c/new_1.jpg")]
    _check_ranking(fresh.search(new_q, k=14, dim=64), fresh, new_q, 14)
    assert sync_calls == [] and fresh.float_index(64) is None
    assert fresh.prepare([64])
    assert sync_calls == [(64, 3, 1)]
    ranking = fresh.search(new_q, k=14, dim=64)
    _check_ranking(ranking, fresh, new_q, 14)
    assert ranking.results[0].relpath == "c/new_1.jpg"
    assert "a/img_01.png" not in [r.relpath for r in ranking.results]

    # ...and saved: the next session finds it complete.
    sync_calls.clear()
    assert Collection(image_folder, indexed, exact_limit=0).float_index(64) is not None
    assert sync_calls == []


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
    _check_ranking(coll.search(q, k=4, dim=64), coll, q, 4)  # the exact scan answers meanwhile
    assert sync_calls == []
    coll.prepare([64])
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
    Collection(tmp_path, old, exact_limit=0).prepare([16])
    old.close()
    for stale in path.parent.glob("catalog.sqlite*"):
        stale.unlink()
    new_vectors = rng.normal(size=(4, 16)).astype(np.float32)
    new = Catalog(path, dim=16)
    new.commit_batch([(FileStamp(f"new_{i}.jpg", 1, 1), v) for i, v in enumerate(new_vectors)], [])
    collection = Collection(tmp_path, new, exact_limit=0)
    assert collection.float_index(16) is None  # the old file is not this catalog's
    collection.prepare([16])
    index = collection.float_index(16)
    assert index is not None
    ids, _ = index.search(new_vectors, 1)
    assert ids[:, 0].tolist() == collection.snapshot.ids.tolist()  # each vector finds itself


def test_a_query_never_builds_an_index_and_says_the_exact_scan_answered(
    shared_index: tuple[Path, Catalog], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 100,000-image folder's first query built its 512- and 1024-d graphs inside the query: 292 s. Now a query
    only uses an index that is ready; the exact scan answers otherwise, right, and the person hears why."""
    built: list[int] = []
    monkeypatch.setattr(search_module.FloatIndex, "add", lambda self, *a: built.append(self.dim))
    notes: list[str] = []
    root, catalog = shared_index
    coll = Collection(root, catalog, exact_limit=0, note=notes.append)
    q = coll.snapshot.embeddings[2]
    for dim in DIMS:
        _check_ranking(coll.search(q, k=5, dim=dim), coll, q, 5)
    coll.all_distances(q, 512)
    assert built == []
    assert notes[0].startswith("the 64-d search index is not ready yet: the float ranking comes from an exact scan")
    assert len(notes) == len(DIMS)  # once per dimension
    coll.search(q, k=5, dim=64)
    assert len(notes) == len(DIMS)


def test_indexing_builds_the_indexes_the_window_asks_for_with_progress_and_stops_when_cancelled(
    image_folder: Path, indexed: Catalog
) -> None:
    from trainer.progress import Progress

    seen: list[Progress] = []
    coll = Collection(image_folder, indexed, exact_limit=12 * 128)  # 64 and 128 are scanned, wider ones indexed
    assert not coll.prepare(progress=seen.append, cancel=lambda: True)
    assert not list(indexed.path.parent.glob("float-*.hnsw"))  # a cancelled build saves nothing
    assert coll.prepare(progress=seen.append)
    assert sorted(p.name for p in indexed.path.parent.glob("float-*.hnsw")) == [
        "float-1024.hnsw", "float-1280.hnsw", "float-256.hnsw", "float-512.hnsw",
    ]  # fmt: skip
    assert [p.stage for p in seen][:1] == ["building the 256-d search index (1 of 4)"]
    assert seen[-1].done == seen[-1].total == 12
    fresh = Collection(image_folder, indexed, exact_limit=12 * 128)
    assert all(fresh.float_index(d) is not None for d in (256, 512, 1024, 1280))


def test_counting_the_images_reads_no_vector(
    shared_index: tuple[Path, Catalog], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, catalog = shared_index

    def refuse(self: Any) -> Any:
        raise AssertionError("the embeddings were read to count them")

    monkeypatch.setattr(Catalog, "snapshot", refuse)
    assert len(Collection(root, catalog)) == 12


@pytest.mark.parametrize("binary", [False, True])
def test_query_expansion_ranks_as_the_measured_reranking_does(tmp_path: Path, binary: bool) -> None:
    """The app's query expansion (Collection.search(expand=2)) is the one bench/rerank.py measures
    (trainer.rerank.query_expansion): the same ranking for every picture of the collection, its own excluded, while
    the distances shown stay the query's own."""
    from explorer.engine.catalog import Catalog, FileStamp
    from explorer.engine.search import Collection
    from trainer.rerank import query_expansion

    rng = np.random.default_rng(1)
    centres = rng.normal(size=(6, 64))
    vectors = (centres[rng.integers(0, 6, 60)] + rng.normal(size=(60, 64))).astype(np.float32)
    catalog = Catalog(tmp_path / "cache" / "catalog.sqlite", dim=64)
    catalog.commit_batch([(FileStamp(f"p{i:02d}.jpg", 1, 1), v) for i, v in enumerate(vectors)], [])
    collection = Collection(tmp_path, catalog)
    units = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    signs = np.where(vectors > 0, 1.0, -1.0)
    base = (64 - signs @ signs.T) / 2 if binary else 1 - units @ units.T
    expanded = query_expansion(vectors, base, n=2, binary=binary)
    changed = 0
    for i in range(len(vectors)):
        ranking = collection.search(vectors[i], 10, 64, binary, exclude_row=i, expand=2)
        rows = [int(r.relpath[1:3]) for r in ranking.results]
        distances = expanded[i].copy()
        distances[i] = np.inf
        if binary:  # Hamming distances tie often, and ties are broken differently: the same distances in order
            assert list(distances[rows]) == sorted(distances)[:10], i
        else:
            assert rows == [int(j) for j in np.argsort(distances, kind="stable")[:10]], i
        shown = [r.hamming_distance if binary else r.cosine_distance for r in ranking.results]
        assert shown == pytest.approx([base[i, j] for j in rows], abs=1e-5)  # the query's own distances
        changed += rows != [r.id - 1 for r in collection.search(vectors[i], 10, 64, binary, exclude_row=i).results]
    assert changed > 0  # expansion did re-rank some queries
    catalog.close()
