"""The map of a collection: a PCA layout of the unit embeddings, kept beside the catalog until the catalog changes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from explorer.app.collection_map import cached_layout, layout_from, pca_axes
from explorer.engine.catalog import FileStamp
from explorer.engine.session import RetrievalSession


def test_the_layout_separates_what_the_embeddings_separate(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 64)) * 3
    vectors = np.vstack([c + rng.normal(size=(40, 64)) for c in centres]).astype(np.float32)
    relpaths = [f"{name}/p{i}.jpg" for name in ("a", "b", "c") for i in range(40)]
    layout = layout_from(vectors, relpaths, tmp_path)
    assert layout.method == "PCA" and layout.groups == ["a", "b", "c"] and layout.xy.shape == (120, 2)
    centres_2d = np.array([layout.xy[layout.group_of == g].mean(axis=0) for g in range(3)])
    spread = max(layout.xy[layout.group_of == g].std(axis=0).max() for g in range(3))
    gaps = [np.linalg.norm(centres_2d[i] - centres_2d[j]) for i in range(3) for j in range(i + 1, 3)]
    assert min(gaps) > 2 * spread  # three groups, apart on the map
    # an image's own embedding is placed where it is
    assert np.allclose(layout.project(vectors[7]), layout.xy[7], atol=1e-4)
    _mean, axes = pca_axes(vectors / np.linalg.norm(vectors, axis=1, keepdims=True))
    assert np.allclose(axes @ axes.T, np.eye(2), atol=1e-6)


@pytest.fixture
def session(small_model_path: Path) -> Iterator[RetrievalSession]:
    s = RetrievalSession(small_model_path, device="cpu")
    yield s
    s.close()


def test_the_layout_is_kept_until_the_catalog_changes(session: RetrievalSession, tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(1)
    catalog = session.collection(folder).catalog
    catalog.commit_batch(
        [(FileStamp(f"x/{i}.jpg", 1, 1), rng.normal(size=1280).astype(np.float32)) for i in range(9)], []
    )
    session.collection(folder).reload()
    first = cached_layout(session, folder)
    files = list(catalog.path.parent.glob("map-*.npz"))
    assert len(files) == 1
    again = cached_layout(session, folder)
    assert np.array_equal(again.xy, first.xy) and list(catalog.path.parent.glob("map-*.npz")) == files
    files[0].write_bytes(files[0].read_bytes()[:-40])  # damaged: computed again, never a wrong map
    assert np.array_equal(cached_layout(session, folder).xy, first.xy)
    catalog.commit_batch([(FileStamp("x/new.jpg", 1, 1), rng.normal(size=1280).astype(np.float32))], [])
    session.collection(folder).reload()
    changed = cached_layout(session, folder)
    assert len(changed.paths) == 10 and len(list(catalog.path.parent.glob("map-*.npz"))) == 1
