"""A moved or renamed folder keeps its index; a library is searched as one folder; a folder away is still searched."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from imagegen import make_image

from explorer.engine.library_search import search_library
from explorer.engine.relocate import find_moved_catalog
from explorer.engine.session import RetrievalSession


@pytest.fixture
def session(small_model_path: Path, reuse_small_model: list[Path]) -> Iterator[RetrievalSession]:
    s = RetrievalSession(small_model_path, device="cpu", batch_size=4)
    yield s
    s.close()


def photos(folder: Path, seeds: range) -> Path:
    for seed in seeds:
        make_image(folder / f"sub{seed % 2}" / f"p{seed:02d}.jpg", seed=seed)
    return folder


def test_a_moved_folder_keeps_its_index(session: RetrievalSession, tmp_path: Path) -> None:
    old = photos(tmp_path / "drive" / "Photos 2019", range(8))
    assert session.index(old).embedded == 8
    new = tmp_path / "other drive" / "2019 Italy"
    new.parent.mkdir()
    shutil.move(old, new)  # keeps every file's size and modification time, as a move does
    session.collection(new)  # the window looks at a folder before indexing it: an empty catalog must not block
    report = session.index(new)
    assert (report.embedded, report.indexed) == (0, 8)
    assert any("Photos 2019" in note and "copied" in note for note in session.notes)
    assert session.catalog_path(old).exists()  # copied, not moved: a drive that comes back finds its index
    result = session.query(new / "sub1" / "p03.jpg", new, k=3)
    assert result.excluded_row is not None and all(r.path.is_relative_to(new) for r in result.float_ranking.results)
    # the thumbnails made when it was indexed at the old path came along (nothing was decoded again)
    assert session.stored_thumbnail(new / "sub1" / "p03.jpg") is not None
    make_image(new / "sub0" / "new.jpg", seed=50)
    assert session.index(new).embedded == 1  # and it keeps being indexed incrementally there


def test_a_folder_with_other_photos_under_the_same_names_is_not_taken_for_it(
    session: RetrievalSession, tmp_path: Path
) -> None:
    first = photos(tmp_path / "first", range(8))
    session.index(first)
    second = tmp_path / "second"
    for seed in range(8):  # same relative paths, other pictures
        make_image(second / f"sub{seed % 2}" / f"p{seed:02d}.jpg", seed=seed + 100)
    assert find_moved_catalog(second, session.fingerprint) is None
    assert session.index(second).embedded == 8
    assert not any("copied" in note for note in session.notes)


def test_a_library_is_searched_as_one_folder(session: RetrievalSession, tmp_path: Path) -> None:
    a = photos(tmp_path / "a", range(0, 6))
    b = photos(tmp_path / "b", range(6, 12))
    union = tmp_path / "union"
    shutil.copytree(a, union / "a")
    shutil.copytree(b, union / "b")
    for folder in (a, b, union):
        session.index(folder)
    query = tmp_path / "query.jpg"
    make_image(query, seed=3)
    for binary in (False, True):
        library = search_library(session, query, [a, b], k=7, binary=binary)
        single = session.query(query, union, k=7).ranking(binary)
        assert [r.path.relative_to(tmp_path) for r in library.results] == [
            r.path.relative_to(union) for r in single.results
        ]
        distances = [r.cosine_distance for r in single.results]
        assert [r.cosine_distance for r in library.results] == pytest.approx(distances)
        assert [r.rank for r in library.results] == list(range(1, 8))
        # named from where the folders part: two folders both called "photos" are told apart
        assert [r.relpath for r in library.results] == [
            r.path.relative_to(tmp_path).as_posix() for r in library.results
        ]
    own = search_library(session, b / "sub1" / "p07.jpg", [a, b], k=3)
    assert b / "sub1" / "p07.jpg" not in [r.path for r in own.results]  # the query is not its own first result


def test_a_folder_whose_drive_is_away_is_searched_from_its_index(session: RetrievalSession, tmp_path: Path) -> None:
    a = photos(tmp_path / "a", range(0, 6))
    b = photos(tmp_path / "usb" / "b", range(6, 12))
    never = tmp_path / "never indexed"
    never.mkdir()
    session.index(a)
    session.index(b)
    query = tmp_path / "query.jpg"
    make_image(query, seed=7)
    before = search_library(session, query, [a, b, never], k=12)
    (tmp_path / "usb").rename(tmp_path / "unplugged")
    away = search_library(session, query, [a, b, never], k=12)
    assert [r.path for r in away.results] == [r.path for r in before.results]  # nothing lost
    assert away.offline == [b] and away.not_indexed == [never] and before.offline == []
    assert {f for f in away.folder_of if f == b} == {b}
    (tmp_path / "unplugged").rename(tmp_path / "usb")
    assert session.index(b).embedded == 0  # back: its index was kept as it was
