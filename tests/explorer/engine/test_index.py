"""Behaviour of the nearest-neighbour indexes: recall, id bookkeeping, persistence and exactness."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hnswlib
import numpy as np
import numpy.typing as npt
import pytest

from explorer.engine.exact_search import BinaryIndex, exact_cosine_search
from explorer.engine.index import FloatIndex, IndexFileError
from trainer.binary import binarize, code_prefix, hamming_distances

DIM = 64


def _vectors(n: int, seed: int = 0, dim: int = DIM) -> npt.NDArray[np.float32]:
    return np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)


def _catalog_ids(n: int) -> npt.NDArray[np.int64]:
    """Sparse, shuffled ids so that a position can never be mistaken for an id."""
    rng = np.random.default_rng(123)
    return rng.permutation(np.arange(n, dtype=np.int64) * 13 + 1_000_003)


def _cosine_distance(a: npt.NDArray[np.float32], b: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    return 1.0 - (a64 * b64).sum(-1) / (np.linalg.norm(a64, axis=-1) * np.linalg.norm(b64, axis=-1))


@pytest.fixture(scope="module")
def data() -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    return _catalog_ids(2000), _vectors(2000)


@pytest.fixture(scope="module")
def built(data: tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]) -> FloatIndex:
    ids, vecs = data
    index = FloatIndex(DIM, threads=1)
    index.add(ids, vecs)
    return index


# --- exact_cosine_search ---------------------------------------------------------------------------


def test_exact_cosine_search_matches_full_sort() -> None:
    v, q = _vectors(300, 1), _vectors(7, 2)
    rows, dist = exact_cosine_search(v, q, 10)
    full = _cosine_distance(q[:, None, :], v[None, :, :])
    assert rows.shape == dist.shape == (7, 10)
    np.testing.assert_array_equal(rows, np.argsort(full, axis=1, kind="stable")[:, :10])
    np.testing.assert_allclose(dist, np.take_along_axis(full, rows, axis=1), atol=1e-5)


def test_exact_cosine_search_caps_k_and_handles_zero_vectors() -> None:
    v = np.vstack([np.zeros((1, 4), np.float32), np.eye(4, dtype=np.float32)])
    rows, dist = exact_cosine_search(v, np.array([[1.0, 0, 0, 0]], np.float32), 50)
    assert rows.shape == (1, 5)
    assert rows[0, 0] == 1 and dist[0, 0] == pytest.approx(0.0)
    assert np.isfinite(dist).all()
    assert dist[0, rows[0] == 0] == pytest.approx(1.0)


# --- FloatIndex: search quality and ids --------------------------------------------------------------


def test_recall_at_10_against_exact(
    built: FloatIndex, data: tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]
) -> None:
    ids, vecs = data
    queries = _vectors(200, seed=99)
    found, _ = built.search(queries, 10)
    truth_rows, _ = exact_cosine_search(vecs, queries, 10)
    truth = ids[truth_rows]
    recall = np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth, strict=True)])
    assert recall >= 0.95


def test_search_returns_caller_ids_and_true_cosine_distances(
    built: FloatIndex, data: tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]
) -> None:
    ids, vecs = data
    by_id = dict(zip(ids.tolist(), range(len(ids)), strict=True))
    queries = _vectors(20, seed=5)
    found, dist = built.search(queries, 10)
    assert found.dtype == np.int64 and dist.dtype == np.float32
    assert found.shape == dist.shape == (20, 10)
    assert set(found.ravel().tolist()) <= set(ids.tolist())
    rows = np.vectorize(by_id.__getitem__)(found)
    np.testing.assert_allclose(dist, _cosine_distance(queries[:, None, :], vecs[rows]), atol=1e-4)
    assert (np.diff(dist, axis=1) >= -1e-6).all()


def test_stored_vector_is_its_own_nearest_neighbour(
    built: FloatIndex, data: tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]
) -> None:
    ids, vecs = data
    found, dist = built.search(vecs[:50], 1)
    np.testing.assert_array_equal(found[:, 0], ids[:50])
    assert np.abs(dist).max() < 1e-4


def test_single_query_and_k_larger_than_index() -> None:
    index = FloatIndex(8)
    index.add([10, 20, 30], _vectors(3, dim=8))
    found, dist = index.search(_vectors(1, seed=4, dim=8)[0], 100)
    assert found.shape == dist.shape == (1, 3)
    assert sorted(found[0].tolist()) == [10, 20, 30]
    assert FloatIndex(8).search(np.ones(8, np.float32), 5)[0].shape == (1, 0)


def test_ef_is_raised_to_k() -> None:
    index = FloatIndex(16, ef_search=4)
    index.add(np.arange(500), _vectors(500, dim=16))
    found, _ = index.search(_vectors(3, seed=8, dim=16), 200)
    assert found.shape == (3, 200)
    assert all(len(set(row.tolist())) == 200 for row in found)


def test_rejects_bad_input() -> None:
    index = FloatIndex(8)
    with pytest.raises(ValueError):
        index.add([1, 2], _vectors(3, dim=8))
    with pytest.raises(ValueError):
        index.add([1, 1], _vectors(2, dim=8))
    with pytest.raises(ValueError):
        index.add([-1], _vectors(1, dim=8))
    with pytest.raises(ValueError):
        index.search(np.ones((2, 9), np.float32), 1)
    assert len(index) == 0


# --- FloatIndex: mutation -----------------------------------------------------------------------------


def test_remove_hides_ids_from_every_search() -> None:
    ids, vecs = _catalog_ids(1000), _vectors(1000, seed=3)
    index = FloatIndex(DIM)
    index.add(ids, vecs)
    removed = ids[::2]
    index.remove(np.concatenate([removed, [7, 8]]))  # unknown ids are ignored
    assert len(index) == 500
    np.testing.assert_array_equal(index.ids(), np.sort(ids[1::2]))
    # Query with the removed vectors themselves: their own id would be the top hit if it leaked.
    found, _ = index.search(vecs[::2], 20)
    assert found.shape == (500, 20)
    assert not np.isin(found, removed).any()


def test_search_still_finds_the_few_survivors_of_a_mass_removal() -> None:
    # With most of the graph deleted a narrow beam cannot collect k live points; search must widen it.
    index = FloatIndex(32, ef_search=10)
    index.add(np.arange(2000), _vectors(2000, seed=9, dim=32))
    index.remove(np.arange(1990))
    found, _ = index.search(_vectors(5, seed=10, dim=32), 10)
    assert found.shape == (5, 10)
    assert (np.sort(found, axis=1) == np.arange(1990, 2000)).all()


def test_readd_after_remove_revives_with_new_vector() -> None:
    ids, vecs = _catalog_ids(300), _vectors(300, seed=6)
    index = FloatIndex(DIM)
    index.add(ids, vecs)
    index.remove(ids[:100])
    replacement = _vectors(1, seed=77)
    index.add(ids[:1], replacement)
    assert len(index) == 201
    assert ids[0] in index.ids()
    found, dist = index.search(replacement, 1)
    assert found[0, 0] == ids[0] and dist[0, 0] < 1e-4
    # The old vector no longer maps to the revived id.
    found, _ = index.search(vecs[:1], 1)
    assert found[0, 0] != ids[0] or _cosine_distance(vecs[0], replacement[0]) < 1e-4


def test_add_existing_id_replaces_its_vector() -> None:
    index = FloatIndex(DIM)
    index.add([1, 2, 3], _vectors(3, seed=10))
    new = _vectors(1, seed=11)
    index.add([2], new)
    assert len(index) == 3
    found, dist = index.search(new, 1)
    assert found[0, 0] == 2 and dist[0, 0] < 1e-4


def test_new_ids_reuse_deleted_slots() -> None:
    index = FloatIndex(DIM)
    index.add(np.arange(1000), _vectors(1000, seed=12))
    capacity = index.capacity
    index.remove(np.arange(500))
    fresh = _vectors(500, seed=13)
    index.add(np.arange(5000, 5500), fresh)
    assert index.capacity == capacity
    assert len(index) == 1000
    found, _ = index.search(fresh[:50], 1)
    np.testing.assert_array_equal(found[:, 0], np.arange(5000, 5050))
    # A deleted id whose slot was recycled can still come back.
    index.add([3], fresh[:1] * -1)
    assert 3 in index.ids() and len(index) == 1001


def test_capacity_grows_past_initial_size() -> None:
    index = FloatIndex(16)
    start = index.capacity
    ids = np.arange(start * 3 + 5)
    vecs = _vectors(ids.size, seed=14, dim=16)
    for chunk in np.array_split(np.arange(ids.size), 7):
        index.add(ids[chunk], vecs[chunk])
    assert len(index) == ids.size > start
    assert index.capacity >= ids.size
    found, _ = index.search(vecs[-5:], 1)
    np.testing.assert_array_equal(found[:, 0], ids[-5:])


def test_sync_adds_and_removes_exactly_the_difference() -> None:
    vecs = _vectors(100, seed=15)
    index = FloatIndex(DIM)
    index.add(np.arange(0, 60), vecs[:60])
    asked: list[npt.NDArray[np.int64]] = []

    def vectors_for(missing: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        asked.append(missing.copy())
        return vecs[missing]

    wanted = np.arange(20, 100)
    assert index.sync(wanted, vectors_for) == (40, 20)
    assert len(asked) == 1
    np.testing.assert_array_equal(asked[0], np.arange(60, 100))
    np.testing.assert_array_equal(index.ids(), wanted)
    found, _ = index.search(vecs[[20, 99]], 1)
    np.testing.assert_array_equal(found[:, 0], [20, 99])
    # Nothing to do: vectors_for is not even called.
    assert index.sync(wanted, vectors_for) == (0, 0)
    assert len(asked) == 1


# --- FloatIndex: persistence --------------------------------------------------------------------------


def test_save_load_round_trip_gives_identical_results(tmp_path: Path) -> None:
    ids, vecs = _catalog_ids(800), _vectors(800, seed=16)
    index = FloatIndex(DIM, m=12, ef_construction=80, ef_search=40)
    index.add(ids, vecs)
    index.remove(ids[:50])
    path = tmp_path / "idx" / "float64.hnsw"
    index.save(path)

    loaded = FloatIndex.load(path)
    assert (loaded.dim, loaded.m, loaded.ef_construction, loaded.ef_search) == (DIM, 12, 80, 40)
    np.testing.assert_array_equal(loaded.ids(), index.ids())
    queries = _vectors(30, seed=17)
    a_ids, a_dist = index.search(queries, 10)
    b_ids, b_dist = loaded.search(queries, 10)
    np.testing.assert_array_equal(a_ids, b_ids)
    np.testing.assert_array_equal(a_dist, b_dist)
    # Deleted marks survive too, and the loaded index stays mutable.
    loaded.add(ids[:1], vecs[:1])
    assert len(loaded) == len(index) + 1


def test_save_leaves_no_temp_files_and_overwrites(tmp_path: Path) -> None:
    index = FloatIndex(DIM)
    index.add(np.arange(50), _vectors(50, seed=18))
    path = tmp_path / "a.hnsw"
    index.save(path)
    index.add(np.arange(50, 60), _vectors(10, seed=19))
    index.save(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.hnsw", "a.hnsw.meta.npz"]
    assert len(FloatIndex.load(path)) == 60


def test_failed_save_keeps_the_previous_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    index = FloatIndex(DIM)
    index.add(np.arange(40), _vectors(40, seed=20))
    path = tmp_path / "a.hnsw"
    index.save(path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def half_written(self: hnswlib.Index, name: str) -> None:
        Path(name).write_bytes(b"partial")
        raise OSError("disk full")

    index.add(np.arange(40, 80), _vectors(40, seed=21))
    monkeypatch.setattr(hnswlib.Index, "save_index", half_written)
    with pytest.raises(OSError, match="disk full"):
        index.save(path)
    monkeypatch.undo()

    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    np.testing.assert_array_equal(FloatIndex.load(path).ids(), np.arange(40))


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete_index", "delete_meta", "garbage_meta"])
def test_load_rejects_damaged_files(tmp_path: Path, damage: str) -> None:
    index = FloatIndex(DIM)
    index.add(np.arange(100), _vectors(100, seed=22))
    path = tmp_path / "a.hnsw"
    index.save(path)
    meta = tmp_path / "a.hnsw.meta.npz"
    raw = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(raw[: len(raw) // 2])
    elif damage == "flip":
        path.write_bytes(raw[:1000] + bytes([raw[1000] ^ 0xFF]) + raw[1001:])
    elif damage == "delete_index":
        path.unlink()
    elif damage == "delete_meta":
        meta.unlink()
    else:
        meta.write_bytes(b"not a zip file")
    with pytest.raises(IndexFileError):
        FloatIndex.load(path)


def test_load_of_missing_file_is_an_index_file_error(tmp_path: Path) -> None:
    with pytest.raises(IndexFileError):
        FloatIndex.load(tmp_path / "nothing.hnsw")
    assert issubclass(IndexFileError, OSError)


# --- BinaryIndex -----------------------------------------------------------------------------------------


def _brute_force(
    query: npt.NDArray[np.uint8], codes: npt.NDArray[np.uint8], ids: npt.NDArray[np.int64], k: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    d = hamming_distances(query, codes)
    order = np.lexsort((ids, d))[:k]
    return ids[order], d[order]


def _codes(n: int, nbits: int, seed: int) -> npt.NDArray[np.uint8]:
    return binarize(np.random.default_rng(seed).normal(size=(n, nbits)))


@pytest.mark.parametrize("nbits", [16, 256])
def test_binary_search_equals_brute_force(nbits: int) -> None:
    # 16 bits over 3,000 codes forces many ties; 256 bits is the realistic regime.
    ids = _catalog_ids(3000)
    codes = _codes(3000, nbits, seed=30)
    index = BinaryIndex(nbits)
    index.add(ids, codes)
    queries = _codes(25, nbits, seed=31)
    found, dist = index.search(queries, 10)
    assert found.dtype == np.int64 and dist.dtype == np.int32 and found.shape == (25, 10)
    for q, f, d in zip(queries, found, dist, strict=True):
        want_ids, want_dist = _brute_force(q, codes, ids, 10)
        np.testing.assert_array_equal(d, want_dist)
        # Ties are broken by ascending id, so even the ids are fully determined.
        np.testing.assert_array_equal(f, want_ids)


def test_binary_remove_and_replace() -> None:
    ids = np.arange(500, dtype=np.int64) * 2
    codes = _codes(500, 64, seed=32)
    index = BinaryIndex(64)
    index.add(ids, codes)
    index.remove(np.concatenate([ids[:250], [1, 3]]))
    assert len(index) == 250
    np.testing.assert_array_equal(index.ids(), ids[250:])
    found, dist = index.search(codes[:250], 5)
    assert not np.isin(found, ids[:250]).any()
    for q, f, d in zip(codes[:250], found, dist, strict=True):
        want_ids, want_dist = _brute_force(q, codes[250:], ids[250:], 5)
        np.testing.assert_array_equal(d, want_dist)
        np.testing.assert_array_equal(f, want_ids)
    # Re-adding an existing id replaces its code instead of duplicating it.
    index.add(ids[300:301], ~codes[300:301])
    assert len(index) == 250
    f, d = index.search(~codes[300:301], 1)
    assert f[0, 0] == ids[300] and d[0, 0] == 0


def test_binary_prefix_codes_make_a_smaller_exact_index() -> None:
    ids = _catalog_ids(1000)
    full = _codes(1000, 256, seed=33)
    queries = _codes(10, 256, seed=34)
    small = BinaryIndex(64)
    small.add(ids, code_prefix(full, 64))
    found, dist = small.search(code_prefix(queries, 64), 10)
    for q, f, d in zip(code_prefix(queries, 64), found, dist, strict=True):
        want_ids, want_dist = _brute_force(q, code_prefix(full, 64), ids, 10)
        np.testing.assert_array_equal(d, want_dist)
        np.testing.assert_array_equal(f, want_ids)
    assert dist.max() <= 64


def test_binary_small_and_invalid_cases() -> None:
    with pytest.raises(ValueError):
        BinaryIndex(12)
    index = BinaryIndex(8)
    assert index.search(np.zeros(1, np.uint8), 3)[0].shape == (1, 0)
    index.add([5, 9], np.array([[0b1111_0000], [0b0000_1111]], np.uint8))
    found, dist = index.search(np.array([0b1111_0001], np.uint8), 10)
    assert found.tolist() == [[5, 9]] and dist.tolist() == [[1, 7]]
    with pytest.raises(TypeError):
        index.add([1], np.zeros((1, 1), np.float32))
    with pytest.raises(ValueError):
        index.add([1], np.zeros((1, 2), np.uint8))


def test_a_single_binary_query_runs_on_one_thread_and_leaves_the_team_as_it_was(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 18: faiss woke its whole OpenMP team for one query (p99 44-48 ms on a busy 2-core machine, 4.6 ms on
    one thread); batches keep the team, and the setting is put back."""
    import faiss

    rng = np.random.default_rng(0)
    codes = rng.integers(0, 256, (500, 16), dtype=np.uint8)
    index = BinaryIndex(128)
    index.add(np.arange(500), codes)
    seen: list[int] = []
    real = faiss.knn_hamming
    monkeypatch.setattr(faiss, "knn_hamming", lambda *a: seen.append(faiss.omp_get_max_threads()) or real(*a))
    team = faiss.omp_get_max_threads()
    one_ids, one_d = index.search(codes[7], 5)
    batch_ids, batch_d = index.search(codes[[7, 8]], 5)
    assert seen == [1, team] and faiss.omp_get_max_threads() == team
    assert (one_ids[0] == batch_ids[0]).all() and (one_d[0] == batch_d[0]).all() and one_ids[0, 0] == 7


def test_a_single_float_query_walks_the_graph_on_one_thread_and_a_batch_on_all() -> None:
    """Issue 18: hnswlib was asked for every core for one query, like faiss."""
    rng = np.random.default_rng(0)
    index = FloatIndex(16)
    index.add(np.arange(200), rng.normal(size=(200, 16)).astype(np.float32))
    threads: list[int] = []
    real = index._index

    class Spy:
        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

        def knn_query(self, q: Any, k: int, num_threads: int) -> Any:
            threads.append(num_threads)
            return real.knn_query(q, k=k, num_threads=num_threads)

    index._index = Spy()  # type: ignore[assignment]
    one, _ = index.search(rng.normal(size=16).astype(np.float32), 3)
    index.search(rng.normal(size=(4, 16)).astype(np.float32), 3)
    assert threads == [1, -1] and one.shape == (1, 3)
