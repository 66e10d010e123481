"""Incremental indexing: only new and changed files are embedded; bad files are reported, never fatal."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from explorer.engine.catalog import Catalog
from explorer.engine.indexer import update_catalog
from trainer.images import SCAN_STAGE
from trainer.inference import BatchEmbedder
from trainer.progress import Progress


@pytest.fixture
def embedded(embedder: BatchEmbedder, monkeypatch: pytest.MonkeyPatch) -> list[list[Path]]:
    """Records the paths of every embed_paths call of `embedder`: what each run actually embedded."""
    calls: list[list[Path]] = []
    original = embedder.embed_paths

    def spy(paths: Sequence[Path], *args: Any, **kwargs: Any) -> Any:
        calls.append(list(paths))
        return original(paths, *args, **kwargs)

    monkeypatch.setattr(embedder, "embed_paths", spy)
    return calls


def _ids(catalog: Catalog) -> dict[str, int]:
    snap = catalog.snapshot()
    return dict(zip(snap.relpaths, snap.ids.tolist(), strict=True))


def _touch(path: Path, seconds: int = 10) -> None:
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + seconds * 1_000_000_000))


def test_incremental_updates(
    image_folder: Path, catalog: Catalog, embedder: BatchEmbedder, embedded: list[list[Path]]
) -> None:
    first = update_catalog(image_folder, catalog, embedder)
    assert (first.scanned, first.embedded, first.unchanged, first.removed) == (12, 12, 0, 0)
    assert first.skipped == [] and not first.cancelled
    assert len(catalog) == 12
    assert sorted(catalog.stamps()) == sorted(p.relative_to(image_folder).as_posix()
                                              for p in image_folder.rglob("img_*"))  # fmt: skip
    ids = _ids(catalog)

    calls = len(embedded)
    second = update_catalog(image_folder, catalog, embedder)
    assert (second.embedded, second.unchanged, second.indexed) == (0, 12, 12)
    assert len(embedded) == calls  # nothing to embed: the model is not even asked
    assert _ids(catalog) == ids

    touched = image_folder / "a" / "img_02.jpg"
    _touch(touched)
    third = update_catalog(image_folder, catalog, embedder)
    assert (third.embedded, third.unchanged) == (1, 11)
    assert embedded[-1] == [touched]
    after = _ids(catalog)
    assert after["a/img_02.jpg"] > max(ids.values())  # a changed file gets a new row id
    assert {k: v for k, v in after.items() if k != "a/img_02.jpg"} == {
        k: v for k, v in ids.items() if k != "a/img_02.jpg"
    }

    (image_folder / "b" / "img_07.png").unlink()
    fourth = update_catalog(image_folder, catalog, embedder)
    assert (fourth.embedded, fourth.removed, fourth.unchanged) == (0, 1, 11)
    assert "b/img_07.png" not in catalog.stamps() and len(catalog) == 11


def test_embeddings_belong_to_their_files(image_folder: Path, catalog: Catalog, embedder: BatchEmbedder) -> None:
    update_catalog(image_folder, catalog, embedder)
    snap = catalog.snapshot()
    for rel in ("a/img_00.jpg", "b/img_11.png"):
        row = snap.relpaths.index(rel)
        np.testing.assert_allclose(snap.embeddings[row], embedder.embed_file(image_folder / rel), atol=1e-4)


def test_a_corrupt_file_is_skipped_and_not_retried_while_unchanged(
    image_folder: Path, catalog: Catalog, embedder: BatchEmbedder, embedded: list[list[Path]], make_img: Callable
) -> None:
    bad = image_folder / "a" / "broken.jpg"
    data = make_img(bad, seed=99, size=(160, 120)).read_bytes()
    bad.write_bytes(data[: len(data) // 3])
    first = update_catalog(image_folder, catalog, embedder)
    assert first.embedded == 12
    assert [(s.relpath, s.reason) for s in first.skipped] == [("a/broken.jpg", "truncated JPEG")]
    assert bad in embedded[-1]

    calls = len(embedded)
    second = update_catalog(image_folder, catalog, embedder)
    assert len(embedded) == calls  # the known failure is not decoded again (nothing is)
    assert [(s.relpath, s.reason) for s in second.skipped] == [("a/broken.jpg", "truncated JPEG")]

    bad.write_bytes(data)  # the copy finished: the file changed, so it is tried again
    _touch(bad)
    third = update_catalog(image_folder, catalog, embedder)
    assert embedded[-1] == [bad]
    assert third.embedded == 1 and third.skipped == []
    assert "a/broken.jpg" in catalog.stamps()

    bad.unlink()
    fourth = update_catalog(image_folder, catalog, embedder)
    assert fourth.removed == 1 and "a/broken.jpg" not in catalog.stamps()


def test_messy_folder_indexes_and_reports_every_skipped_file(
    bad_corpus: tuple[Path, dict[str, str | None]], catalog: Catalog, embedder: BatchEmbedder
) -> None:
    root, expected = bad_corpus
    report = update_catalog(root, catalog, embedder)
    good = sorted(name for name, outcome in expected.items() if outcome is None)
    reported = {name: outcome for name, outcome in expected.items() if outcome}
    assert sorted(catalog.stamps()) == good
    assert report.indexed == len(good)
    reasons = {s.relpath: s.reason for s in report.skipped}
    assert set(reasons) == set(reported)
    for name, fragment in reported.items():
        assert fragment in reasons[name], (name, reasons[name])
    # Hidden files and OS debris are neither indexed nor reported.
    assert not any(name.startswith(".") for name in [*catalog.stamps(), *reasons])
    # Odd-but-valid pictures (CMYK, transparent palette, 16-bit) gave real embeddings.
    snap = catalog.snapshot()
    assert np.isfinite(snap.embeddings).all()
    assert (np.linalg.norm(snap.embeddings, axis=1) > 1.0).all()

    again = update_catalog(root, catalog, embedder)
    assert (again.embedded, again.unchanged) == (0, len(good))
    assert {s.relpath: s.reason for s in again.skipped} == reasons


def test_cancelled_run_keeps_finished_batches_and_resumes(
    image_folder: Path, catalog: Catalog, embedder: BatchEmbedder, embedded: list[list[Path]]
) -> None:
    committed: list[int] = []

    def cancel_after_two_batches() -> bool:
        return len(committed) >= 2

    def on_progress(p: Progress) -> None:
        if p.stage != SCAN_STAGE:
            committed.append(p.done)

    report = update_catalog(image_folder, catalog, embedder, on_progress, cancel=cancel_after_two_batches)
    assert report.cancelled
    assert report.embedded == 8 == len(catalog)  # two batches of 4, each committed
    resumed = update_catalog(image_folder, catalog, embedder)
    assert not resumed.cancelled
    assert (resumed.embedded, resumed.unchanged) == (4, 8)
    assert len(embedded[-1]) == 4 and len(catalog) == 12


def test_progress_reaches_the_total(image_folder: Path, catalog: Catalog, embedder: BatchEmbedder) -> None:
    seen = []
    update_catalog(image_folder, catalog, embedder, progress=lambda p: seen.append((p.stage, p.done, p.total)))
    assert seen[0] == (SCAN_STAGE, 12, 0)  # the scan's final count (total unknown while scanning)
    assert seen[1:] == [("embedding", 4, 12), ("embedding", 8, 12), ("embedding", 12, 12)]


def test_cancelling_during_the_scan_embeds_nothing(
    image_folder: Path, catalog: Catalog, embedder: BatchEmbedder, embedded: list[list[Path]]
) -> None:
    report = update_catalog(image_folder, catalog, embedder, cancel=lambda: True)
    assert report.cancelled
    assert (report.scanned, report.embedded, len(catalog), embedded) == (0, 0, 0, [])


def test_missing_folder_raises(tmp_path: Path, catalog: Catalog, embedder: BatchEmbedder) -> None:
    with pytest.raises(FileNotFoundError):
        update_catalog(tmp_path / "nope", catalog, embedder)


def test_renamed_folder_is_dropped_and_added_once(
    image_folder: Path, catalog: Catalog, embedder: BatchEmbedder, embedded: list[list[Path]]
) -> None:
    update_catalog(image_folder, catalog, embedder)
    shutil.move(image_folder / "b", image_folder / "c")
    report = update_catalog(image_folder, catalog, embedder)
    # Files are keyed by relative path: a renamed folder means 6 removed and 6 new, nothing duplicated.
    assert (report.removed, report.embedded, report.unchanged) == (6, 6, 6)
    assert sorted({k.split("/")[0] for k in catalog.stamps()}) == ["a", "c"]
    assert len(catalog) == 12


def test_a_folder_that_cannot_be_read_now_keeps_its_embeddings(
    image_folder: Path, catalog: Catalog, embedder: BatchEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sub-folder unreadable for a moment (a flaky share, a permission change) used to lose its embeddings."""
    import trainer.images as images_module

    update_catalog(image_folder, catalog, embedder)
    ids = _ids(catalog)
    real = images_module._scandir_sorted

    def flaky(path: str) -> Any:
        if Path(path).name == "b":
            raise PermissionError(13, "Permission denied")
        return real(path)

    monkeypatch.setattr(images_module, "_scandir_sorted", flaky)
    report = update_catalog(image_folder, catalog, embedder)
    assert (report.removed, report.kept_offline, report.indexed) == (0, 6, 12)
    assert _ids(catalog) == ids
    monkeypatch.setattr(images_module, "_scandir_sorted", real)
    (image_folder / "b" / "img_07.png").unlink()  # readable again, and one file is really gone
    report = update_catalog(image_folder, catalog, embedder)
    assert (report.removed, report.kept_offline, len(catalog)) == (1, 0, 11)


def test_an_empty_folder_does_not_drop_its_index(image_folder: Path, catalog: Catalog, embedder: BatchEmbedder) -> None:
    """An unplugged drive leaves its mount point empty: everything is kept, not removed with exit 0."""
    update_catalog(image_folder, catalog, embedder)
    away = image_folder.with_name("elsewhere")
    shutil.move(str(image_folder), str(away))
    image_folder.mkdir()
    report = update_catalog(image_folder, catalog, embedder)
    assert (report.removed, report.kept_offline, len(catalog)) == (0, 12, 12)
    shutil.rmtree(image_folder)
    shutil.move(str(away), str(image_folder))  # plugged back in: nothing to embed again
    report = update_catalog(image_folder, catalog, embedder)
    assert (report.embedded, report.unchanged, report.kept_offline) == (0, 12, 0)


def test_a_listing_stopped_at_the_scan_ceiling_removes_nothing_it_did_not_see(
    image_folder: Path, catalog: Catalog, embedder: BatchEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A link to `/` (followed on request) once had one run list 256,876 system paths; a run now lists at most
    MAX_SCAN_ENTRIES, says so, and an incomplete listing is no proof that anything is gone."""
    import trainer.images as images_module

    update_catalog(image_folder, catalog, embedder)
    ids = _ids(catalog)
    monkeypatch.setattr(images_module, "MAX_SCAN_ENTRIES", 3)  # the root's listing (a, b and more) reaches it
    report = update_catalog(image_folder, catalog, embedder)
    assert report.removed == 0 and report.indexed == 12
    assert _ids(catalog) == ids
    stopped = [s for s in report.skipped if s.reason.startswith(images_module.LISTING_STOPPED)]
    assert len(stopped) == 1 and "the most one run lists" in stopped[0].reason


def test_a_cancelled_run_has_indexed_a_fair_sample_of_every_folder(
    image_folder: Path, catalog: Catalog, embedder: BatchEmbedder
) -> None:
    """Issue 13: a partial index covered only the alphabetically first sub-folders."""
    embedder.batch_size = 2  # cancelled after two batches of two
    report = update_catalog(image_folder, catalog, embedder, cancel=lambda: len(catalog) >= 4)
    assert report.cancelled
    folders = {relpath.split("/")[0] for relpath in catalog.snapshot().relpaths}
    assert folders == {"a", "b"}  # both sub-folders, not the first one only
