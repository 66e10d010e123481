"""Thumbnails made in the indexing pass (explorer.engine.thumbnail_store): served only for the file they came from,
made from the one decode the model needed."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

import trainer.embedding_pipeline as pipeline
from explorer.engine.catalog import Catalog
from explorer.engine.indexer import update_catalog
from explorer.engine.thumbnail_store import THUMBNAIL_SIZE, ThumbnailStore, thumbnail_jpeg
from trainer.inference import BatchEmbedder


def jpeg(colour: str = "red", size: tuple[int, int] = (40, 30)) -> bytes:
    return thumbnail_jpeg(Image.new("RGB", size, colour))


def test_a_thumbnail_is_served_only_for_the_file_as_it_was_when_made(tmp_path: Path) -> None:
    store = ThumbnailStore(tmp_path / "photos", tmp_path / "thumbs.sqlite")
    store.put_many([("a/b.jpg", 100, 5, jpeg()), ("caf\udce9.jpg", 7, 1, jpeg("blue"))])
    assert store.get("a/b.jpg", 100, 5) == jpeg()
    assert store.get("a/b.jpg", 100, 6) is None  # the photo changed (edited in place): not its thumbnail
    assert store.get("a/b.jpg", 101, 5) is None
    assert store.get("caf\udce9.jpg", 7, 1) == jpeg("blue")  # a name that is not UTF-8
    store.remove(["a/b.jpg"])
    assert store.get("a/b.jpg", 100, 5) is None and store.count() == 1


def test_lookup_stats_the_file_now(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    photo = folder / "p.jpg"
    photo.write_bytes(b"x" * 10)
    st = photo.stat()
    store = ThumbnailStore(folder, tmp_path / "thumbs.sqlite")
    store.put_many([("p.jpg", st.st_size, st.st_mtime_ns, jpeg())])
    assert store.lookup(photo) == jpeg()
    os.utime(photo, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert store.lookup(photo) is None
    assert store.lookup(tmp_path / "elsewhere.jpg") is None


def test_a_store_that_cannot_be_written_is_ignored_not_fatal(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    store = ThumbnailStore(tmp_path, blocker / "thumbs.sqlite")
    store.put_many([("a.jpg", 1, 1, jpeg())])
    assert store.get("a.jpg", 1, 1) is None and store.broken is not None and "cannot be used" in store.broken


def test_indexing_stores_a_thumbnail_of_every_embedded_picture_from_its_one_decode(
    image_folder: Path, catalog: Catalog, embedder: BatchEmbedder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoded: list[Path] = []
    real = pipeline.load_rgb

    def counting(path: Path, *args: Any, **kwargs: Any) -> Image.Image:
        decoded.append(Path(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(pipeline, "load_rgb", counting)
    store = ThumbnailStore(image_folder, tmp_path / "thumbs.sqlite")
    report = update_catalog(image_folder, catalog, embedder, thumbnails=store)
    assert report.embedded == 12 and sorted(decoded) == sorted(image_folder.rglob("img_*"))  # once each
    for photo in image_folder.rglob("img_*"):
        data = store.lookup(photo)
        assert data is not None, photo
        with Image.open(io.BytesIO(data)) as small, Image.open(photo) as full:
            assert max(small.size) <= THUMBNAIL_SIZE
            assert abs(small.width / small.height - full.width / full.height) < 0.05  # the whole picture, not a crop
    gone = next(image_folder.rglob("img_00*"))
    gone.unlink()
    update_catalog(image_folder, catalog, embedder, thumbnails=store)
    assert store.count() == 11
