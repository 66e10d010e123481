"""Search results into a labelled folder: links or copies, nothing overwritten, and a folder the trainer reads."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from imagegen import make_image

from explorer.engine.labelled_set import add_to_class, check_class_name, classes
from trainer.data import scan_labelled_folder


@pytest.fixture
def photos(tmp_path: Path) -> list[Path]:
    return [make_image(tmp_path / "photos" / sub / "IMG_1.jpg", seed=i) for i, sub in enumerate(("a", "b", "c"))]


def test_links_by_default_copies_on_request_and_the_trainer_reads_it(photos: list[Path], tmp_path: Path) -> None:
    root = tmp_path / "labels"
    robin = add_to_class(root, "robin", photos[:2])
    assert [p.name for p in robin.added] == ["IMG_1.jpg", "IMG_1-2.jpg"]  # same name, other picture: not overwritten
    assert all(p.is_symlink() for p in robin.added) and not robin.copied_instead
    wren = add_to_class(root, "wren", photos[2:], copy=True)
    assert not wren.added[0].is_symlink() and wren.added[0].read_bytes() == photos[2].read_bytes()
    again = add_to_class(root, "robin", [photos[1], photos[2]])  # one already in the class, one new to it
    assert again.already == [photos[1]] and [p.name for p in again.added] == ["IMG_1-3.jpg"]
    assert classes(root) == {"robin": 3, "wren": 1}
    folder = scan_labelled_folder(root)
    assert folder.classes == ["robin", "wren"] and len(folder.samples) == 4


def test_class_names_that_cannot_be_folders_are_refused(tmp_path: Path) -> None:
    for bad in ("", "  ", ".hidden", "..", "a/b", "a\\b", "what?"):
        with pytest.raises(ValueError):
            check_class_name(bad)
    assert check_class_name(" blue tit ") == "blue tit"


def test_where_links_are_refused_the_pictures_are_copied(
    photos: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*_args: object, **_kwargs: object) -> None:
        raise OSError(1, "symbolic links are not allowed here")

    monkeypatch.setattr(os, "symlink", refuse)
    done = add_to_class(tmp_path / "labels", "robin", photos)
    assert done.copied_instead and len(done.added) == 3 and not any(p.is_symlink() for p in done.added)
