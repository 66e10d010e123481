"""RetrievalSession: the one API the CLI and the GUI use (lazy model, per-folder catalogs, queries)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from explorer.engine.session import RetrievalSession
from explorer.paths import BUNDLED_MODEL
from trainer.card import model_fingerprint
from trainer.images import SCAN_STAGE, ImageLoadError
from trainer.model import load_model, save_model
from trainer.progress import Progress


@pytest.fixture
def session(small_model_path: Path, reuse_small_model: list[Path]) -> Iterator[RetrievalSession]:
    """A session on the small test model (loaded once per run, not once per test)."""
    s = RetrievalSession(small_model_path, device="cpu", batch_size=4)
    yield s
    s.close()


def test_bundled_model_is_found() -> None:
    s = RetrievalSession()
    assert s.model_path == BUNDLED_MODEL
    assert s.card.dim == 1280 and s.card.input_size == 224
    assert s.fingerprint == model_fingerprint(BUNDLED_MODEL)


def test_model_is_loaded_on_first_use_only(
    session: RetrievalSession, image_folder: Path, reuse_small_model: list[Path]
) -> None:
    assert session.card.name == "test-small-lite0"
    assert not session.is_indexed(image_folder)
    assert len(session.collection(image_folder)) == 0  # opening a catalog needs no model
    assert not session.is_indexed(image_folder)  # ... and does not count as having indexed the folder
    assert reuse_small_model == []
    session.index(image_folder)
    session.query(image_folder / "a" / "img_00.jpg", image_folder, k=3)
    assert reuse_small_model == [session.model_path]


def test_index_and_query(session: RetrievalSession, image_folder: Path, isolated_cache: Path) -> None:
    report = session.index(image_folder)
    assert (report.embedded, report.indexed, report.skipped) == (12, 12, [])
    catalog = session.catalog_path(image_folder)
    assert session.is_indexed(image_folder)
    assert catalog.is_relative_to(isolated_cache) and session.fingerprint in catalog.parts
    assert not any(p.suffix == ".sqlite" for p in image_folder.rglob("*"))  # the photo folder is untouched

    query = image_folder / "b" / "img_08.jpg"
    result = session.query(query, image_folder, k=5)
    assert result.embedding.shape == (1280,)
    for binary in (False, True):
        ranking = result.ranking(binary)
        assert ranking.binary is binary and ranking.dim == 1280
        assert [r.rank for r in ranking.results] == [1, 2, 3, 4, 5]
        assert query.resolve() not in [r.path for r in ranking.results]  # one of the folder's images: not its own
        assert ranking.results[0].cosine_distance > 1e-3
    as_embedding = session.query(result.embedding, image_folder, k=5)  # nothing says which file it came from
    for binary in (False, True):
        top = as_embedding.ranking(binary).results[0]
        assert top.path == query.resolve()
        assert top.cosine_distance < 1e-4 and top.hamming_distance == 0

    # The same query as a picture, and as an embedding, ranks the same.
    from_image = session.query(Image.open(query), image_folder, k=5, dim=256)
    from_vector = session.query(result.embedding, image_folder, k=5, dim=256)
    assert from_image.float_ranking.dim == 256
    assert [r.relpath for r in from_image.float_ranking.results] == [
        r.relpath for r in from_vector.float_ranking.results
    ]
    np.testing.assert_allclose(from_image.embedding, result.embedding, atol=1e-4)

    # Re-indexing an unchanged folder embeds nothing; the collection is refreshed after a change.
    assert session.index(image_folder).embedded == 0
    (image_folder / "a" / "img_00.jpg").unlink()
    assert session.index(image_folder).removed == 1
    assert len(session.collection(image_folder)) == 11


def test_unreadable_query_raises_image_load_error(
    session: RetrievalSession, image_folder: Path, tmp_path: Path
) -> None:
    session.index(image_folder)
    bad = tmp_path / "query.jpg"
    bad.write_text("<html><body>not a photo</body></html>")
    with pytest.raises(ImageLoadError, match="HTML"):
        session.query(bad, image_folder)
    with pytest.raises(ImageLoadError, match="no such file"):
        session.query(tmp_path / "missing.jpg", image_folder)


def test_index_refuses_a_missing_folder(session: RetrievalSession, tmp_path: Path) -> None:
    with pytest.raises(NotADirectoryError):
        session.index(tmp_path / "nope")


def test_cancel_then_resume(session: RetrievalSession, image_folder: Path) -> None:
    embedded: list[int] = []

    def on_progress(p: Progress) -> None:
        if p.stage != SCAN_STAGE:
            embedded.append(p.done)

    def cancel_after_one_batch() -> bool:
        return len(embedded) >= 1

    report = session.index(image_folder, on_progress, cancel=cancel_after_one_batch)
    assert report.cancelled and report.embedded == 4
    assert len(session.collection(image_folder)) == 4  # what was committed is searchable
    resumed = session.index(image_folder)
    assert (resumed.embedded, resumed.unchanged, resumed.cancelled) == (8, 4, False)
    assert len(session.collection(image_folder)) == 12


def test_folders_and_models_get_separate_catalogs(
    session: RetrievalSession,
    image_folder: Path,
    tmp_path: Path,
    small_model_path: Path,
    make_img: Callable[..., Path],
) -> None:
    other = tmp_path / "other"
    for i in range(3):
        make_img(other / f"o{i}.jpg", seed=50 + i)
    session.index(image_folder)
    session.index(other)
    assert session.catalog_path(image_folder) != session.catalog_path(other)
    assert len(session.collection(other)) == 3 and len(session.collection(image_folder)) == 12
    hit = session.query(other / "o1.jpg", other, k=10).float_ranking.results
    assert [r.path.parent for r in hit] == [other.resolve()] * 2  # the other two: the query is not its own result

    # A retrained model (different weights) never reuses the first model's catalog.
    model = load_model(small_model_path)
    with torch.no_grad():
        next(model.parameters()).mul_(1.01)
    retrained = save_model(model, tmp_path / "models" / "retrained")[0]
    second = RetrievalSession(retrained, device="cpu")
    try:
        assert second.fingerprint != session.fingerprint
        assert second.catalog_path(image_folder) != session.catalog_path(image_folder)
        assert not second.is_indexed(image_folder)
    finally:
        second.close()


def test_an_indexed_empty_folder_counts_as_indexed(session: RetrievalSession, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert not session.is_indexed(empty)
    report = session.index(empty)
    assert report.indexed == 0 and session.is_indexed(empty)


def test_the_same_weights_with_another_input_contract_get_their_own_catalog(tmp_path: Path) -> None:
    model = load_model(BUNDLED_MODEL)
    model.card.input_size, model.card.resize_size = 160, 182
    other = tmp_path / "other"
    save_model(model, other)
    assert model_fingerprint(other) != model_fingerprint(BUNDLED_MODEL)


def test_a_query_that_is_an_indexed_unchanged_file_loads_no_model(
    session: RetrievalSession, image_folder: Path, small_model_path: Path, reuse_small_model: list[Path]
) -> None:
    """Issue 13: every `explorer query` took seconds to load torch and the model, also for a photo of the folder
    that was embedded when the folder was indexed; its stored embedding answers now."""
    session.index(image_folder)
    fresh = RetrievalSession(small_model_path, device="cpu")
    reuse_small_model.clear()
    query = image_folder / "a" / "img_02.jpg"
    result = fresh.query(query, image_folder, k=3)
    assert reuse_small_model == []  # no model was loaded
    np.testing.assert_allclose(result.embedding, session.embed_query(query), atol=1e-5)
    st = query.stat()
    os.utime(query, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # changed since it was indexed
    fresh.query(query, image_folder, k=3)
    assert reuse_small_model == [small_model_path]  # embedded again from the file, by the model
    fresh.close()


def test_indexing_an_unchanged_folder_loads_no_model(
    session: RetrievalSession, image_folder: Path, small_model_path: Path, reuse_small_model: list[Path]
) -> None:
    """Issue 14: `explorer index` of an unchanged folder took 4.8 s, all of it loading torch and the weights."""
    session.index(image_folder)
    fresh = RetrievalSession(small_model_path, device="cpu")
    reuse_small_model.clear()
    report = fresh.index(image_folder)
    assert (report.embedded, report.unchanged) == (0, 12)
    assert reuse_small_model == []
    fresh.close()
