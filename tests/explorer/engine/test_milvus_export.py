"""Exports to Milvus Lite (for real, in tmp_path) and to parquet, from catalogs of generated embeddings.

A Milvus query must rank as the local search ranks: exactly for binary codes (ties included), and with a top-10
overlap of at least 0.95 for HNSW; another model's export is refused; a re-export replaces the old one in one
step, and a failed one leaves the old one as it was.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from explorer.engine import milvus_store
from explorer.engine.catalog import Catalog, FileStamp
from explorer.engine.export_data import ExportError, ExportSource, MissingPackage, ModelIdentity, ModelMismatch, require
from explorer.engine.milvus_store import MilvusExport, export_to_milvus
from explorer.engine.milvus_target import Target, close, collection_name, connect
from explorer.engine.parquet_export import export_to_parquet, read_parquet
from explorer.engine.search import Collection, Ranking
from trainer.binary import binarize
from trainer.progress import Cancelled

needs_milvus = pytest.mark.skipif(
    find_spec("pymilvus") is None or find_spec("milvus_lite") is None,
    reason="pymilvus and milvus-lite are not installed (pip install 'retrieval-explorer[export]'; Linux and macOS)",
)
needs_pyarrow = pytest.mark.skipif(find_spec("pyarrow") is None, reason="pyarrow is not installed")

DIM = 128
MODEL = ModelIdentity("f" * 64, "synthetic", DIM)
ODD_NAME = "caf\udce9.jpg"  # not UTF-8 on disk: the export must give back the same bytes


def _embeddings(n: int, seed: int) -> npt.NDArray[np.float32]:
    """Clustered like real embeddings (near neighbours exist), with a shared offset so codes tie often."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(1, n // 20), DIM)).astype(np.float32)
    x = centres[rng.integers(0, len(centres), n)] + 0.6 * rng.standard_normal((n, DIM)).astype(np.float32)
    return x.astype(np.float32)


def _collection(root: Path, n: int, seed: int) -> Collection:
    folder = root / f"photos{seed}"
    emb = _embeddings(n, seed)
    catalog = Catalog(root / f"cache{seed}" / "catalog.sqlite", DIM)
    names = [ODD_NAME if i == 3 else f"{'ab'[i % 2]}/img_{i:04d}.jpg" for i in range(n)]
    stamps = [FileStamp(name, 1000 + i, 1_700_000_000_000_000_000 + i) for i, name in enumerate(names)]
    catalog.commit_batch(list(zip(stamps, emb, strict=True)), [])
    return Collection(folder, catalog)


@pytest.fixture
def local(tmp_path: Path) -> Iterator[Collection]:
    c = _collection(tmp_path, 600, seed=1)
    yield c
    c.catalog.close()


def _export(tmp_path: Path, collections: list[Collection], **kw: Any) -> Target:
    target = Target.parse(f"milvus://{tmp_path / 'store.db'}")
    export_to_milvus([ExportSource.from_collection(c) for c in collections], MODEL, target, batch_size=250, **kw)
    return target


def _paths(ranking: Ranking) -> list[Path]:
    return [r.path for r in ranking.results]


@needs_milvus
def test_a_milvus_lite_export_ranks_as_the_local_search(tmp_path: Path, local: Collection) -> None:
    target = _export(tmp_path, [local])
    queries = _embeddings(600, seed=1)[:: 600 // 20] + 0.3  # near the data, not in it
    overlaps = []
    with MilvusExport(target, MODEL) as store:
        for q in queries:
            mine, theirs = store.search(q, 10, binary=True), local.search(q, 10, binary=True)
            assert [(r.path, r.hamming_distance, r.rank) for r in mine.results] == [
                (r.path, r.hamming_distance, r.rank) for r in theirs.results
            ]  # exact, ties and their order included
            np.testing.assert_allclose([r.cosine_distance for r in mine.results],
                                       [r.cosine_distance for r in theirs.results], atol=1e-5)  # fmt: skip
            mine, theirs = store.search(q, 10), local.search(q, 10)
            overlaps.append(len(set(_paths(mine)) & set(_paths(theirs))) / 10)
            assert [r.cosine_distance for r in mine.results] == sorted(r.cosine_distance for r in mine.results)
    assert np.mean(overlaps) >= 0.95, overlaps


@needs_milvus
def test_ties_are_broken_as_the_local_search_breaks_them(tmp_path: Path) -> None:
    """Forty images with one code: which ten come first is decided by id, locally and through Milvus."""
    c = _collection(tmp_path, 200, seed=2)
    emb = c.snapshot.embeddings.copy()
    c.catalog.close()
    emb[50:90] = np.abs(emb[50:90]) * np.sign(emb[0])  # same signs as image 0, other magnitudes
    catalog = Catalog(tmp_path / "ties" / "catalog.sqlite", DIM)
    stamps = [FileStamp(r, 1, 1) for r in c.snapshot.relpaths]
    catalog.commit_batch(list(zip(stamps, emb, strict=True)), [])
    tied = Collection(tmp_path / "tied", catalog)
    target = _export(tmp_path, [tied])
    with MilvusExport(target, MODEL) as store:
        mine, theirs = store.search(emb[0], 10, binary=True), tied.search(emb[0], 10, binary=True)
    assert [r.hamming_distance for r in theirs.results] == [0] * 10
    assert _paths(mine) == _paths(theirs)
    catalog.close()


@needs_milvus
def test_several_folders_and_odd_names(tmp_path: Path, local: Collection) -> None:
    other = _collection(tmp_path, 300, seed=3)
    target = _export(tmp_path, [local, other])
    both = np.concatenate([local.snapshot.embeddings, other.snapshot.embeddings])
    paths = [local.folder / r for r in local.snapshot.relpaths] + [other.folder / r for r in other.snapshot.relpaths]
    with MilvusExport(target, MODEL) as store:
        assert store.rows == 900
        for row in (3, 603):  # the odd name in each folder, as its own query: excluded from its own results
            got = store.search(both[row], 900, binary=True, exclude=paths[row])
            assert paths[row] not in _paths(got) and len(got.results) == 899
            ham = (np.unpackbits(binarize(both) ^ binarize(both[row])[None], axis=1)).sum(axis=1)
            want = sorted((i for i in range(900) if i != row), key=lambda i: (ham[i], i))
            assert {p for p in _paths(got)} == {paths[i] for i in want}
            assert [r.hamming_distance for r in got.results] == sorted(int(ham[i]) for i in want)
            found = store.search(both[row], 1)
            assert found.results[0].path == paths[row] and found.results[0].relpath == ODD_NAME
    other.catalog.close()


@needs_milvus
def test_another_models_export_is_refused(tmp_path: Path, local: Collection) -> None:
    target = _export(tmp_path, [local])
    with pytest.raises(ModelMismatch, match="model synthetic"):
        MilvusExport(target, ModelIdentity("0" * 64, "other", DIM))
    named = Target(target.uri, collection_name([local.folder], MODEL.fingerprint))
    with pytest.raises(ModelMismatch):
        MilvusExport(named, ModelIdentity("0" * 64, "other", DIM))
    with pytest.raises(ExportError, match="no collection named nothing_here"):
        MilvusExport(Target(target.uri, "nothing_here"), MODEL)
    with pytest.raises(ExportError, match="no Milvus Lite store"):
        MilvusExport(Target.parse(str(tmp_path / "absent.db")), MODEL)


@needs_milvus
def test_reexport_replaces_and_a_failed_one_changes_nothing(
    tmp_path: Path, local: Collection, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = _export(tmp_path, [local])
    smaller = _collection(tmp_path, 100, seed=5)
    smaller.folder = local.folder  # the same folder, re-indexed with fewer images
    export_to_milvus([ExportSource.from_collection(smaller)], MODEL, target, batch_size=40)
    with MilvusExport(target, MODEL) as store:
        assert store.rows == 100

    calls = []

    def cancel_after_two() -> bool:
        calls.append(1)
        return len(calls) > 2

    with pytest.raises(Cancelled):
        export_to_milvus([ExportSource.from_collection(local)], MODEL, target, batch_size=100, cancel=cancel_after_two)
    real_rows = milvus_store._rows

    def failing(batch: Any, lite: bool) -> Any:
        if batch.ids[0] >= 200:
            raise OSError("no space left on device")
        return real_rows(batch, lite)

    with monkeypatch.context() as m:
        m.setattr(milvus_store, "_rows", failing)
        with pytest.raises(ExportError, match=r"no space left on device.*nothing was replaced"):
            export_to_milvus([ExportSource.from_collection(local)], MODEL, target, batch_size=100)
    client = connect(target)
    try:
        assert len(client.list_collections()) == 1  # the failed ones were dropped, the previous one kept
        leftover = client.list_collections()[0] + "1"  # ...__v<time>1: as a killed export would leave one
        unfinished = {"explorer.model": MODEL.fingerprint, "explorer.dim": str(DIM), "explorer.state": "writing"}
        client.create_collection(leftover, dimension=DIM, properties=unfinished)
        assert len(client.list_collections()) == 2
    finally:
        close(client, target)
    with pytest.raises(ExportError, match="did not finish"):
        MilvusExport(Target(target.uri, leftover), MODEL)
    with MilvusExport(target, MODEL) as store:
        assert store.rows == 100
    _export(tmp_path, [local])
    client = connect(target)
    try:
        assert len(client.list_collections()) == 1  # the killed export's collection is gone too
    finally:
        close(client, target)
    with MilvusExport(target, MODEL) as store:
        assert store.rows == 600
    smaller.catalog.close()


@needs_pyarrow
def test_parquet_round_trip_equals_the_catalog(tmp_path: Path, local: Collection) -> None:
    other = _collection(tmp_path, 50, seed=4)
    out = tmp_path / "embeddings.parquet"
    summary = export_to_parquet([ExportSource.from_collection(c) for c in (local, other)], MODEL, out, batch_size=64)
    back = read_parquet(out)
    assert summary.rows == 650 and back.model == MODEL
    assert back.ids.tolist() == list(range(650))
    assert back.folders == [str(local.folder)] * 600 + [str(other.folder)] * 50
    assert back.relpaths == local.snapshot.relpaths + other.snapshot.relpaths and ODD_NAME in back.relpaths
    both = np.concatenate([local.snapshot.embeddings, other.snapshot.embeddings])
    assert np.array_equal(back.embeddings, both)
    assert np.array_equal(back.codes, binarize(both))
    stamps = local.catalog.stamps()
    assert back.sizes[:600].tolist() == [stamps[r].size for r in local.snapshot.relpaths]
    assert back.mtimes_ns[:600].tolist() == [stamps[r].mtime_ns for r in local.snapshot.relpaths]

    def stop() -> bool:
        return True

    with pytest.raises(Cancelled):
        export_to_parquet([ExportSource.from_collection(other)], MODEL, out, cancel=stop)
    assert read_parquet(out).ids.size == 650  # the previous file, untouched
    assert sorted(p.name for p in tmp_path.iterdir() if "parquet" in p.name) == ["embeddings.parquet"]
    other.catalog.close()


def test_missing_packages_are_named_with_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pymilvus", None)  # an import of it now fails as if it were not installed
    with pytest.raises(MissingPackage, match=r"pymilvus package, which is not installed: pip install"):
        require("pymilvus", "Milvus")
    with pytest.raises(MissingPackage):
        connect(Target.parse("milvus:///tmp/x.db"))


def test_target_parsing(tmp_path: Path) -> None:
    assert Target.parse("milvus://http://db:19530#lib") == Target("http://db:19530", "lib")
    assert not Target.parse("milvus://http://db:19530").lite
    lite = Target.parse(f"milvus://{tmp_path}/a.db")
    assert lite.lite and lite.uri == str(tmp_path / "a.db") and lite.collection is None
    assert Target.parse("milvus://").uri.endswith("milvus.db")
    with pytest.raises(ExportError, match=r"ending in \.db"):
        Target.parse(str(tmp_path / "store"))
    with pytest.raises(ExportError, match="not a Milvus collection name"):
        Target.parse(f"{tmp_path}/a.db#bad-name")
