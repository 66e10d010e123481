"""Copies moved out of the way, never deleted, and put back by the undo list, even by another process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from explorer.engine.file_moves import move_files, undo_last


def test_moved_and_put_back(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    a, b = photos / "IMG_1.jpg", photos / "sub" / "IMG_1.jpg"
    b.parent.mkdir()
    a.write_bytes(b"a")
    b.write_bytes(b"b")
    undo = tmp_path / "data" / "moves.json"
    moved = move_files([a, b], tmp_path / "copies", undo)
    assert [d.name for _s, d in moved.moves] == ["IMG_1.jpg", "IMG_1-2.jpg"]  # the same name twice: nothing overwritten
    assert not a.exists() and not b.exists() and (tmp_path / "copies" / "IMG_1-2.jpg").read_bytes() == b"b"
    assert json.loads(undo.read_text())["records"][0]["moves"][1][0] == str(b)  # recorded, for another process too
    back = undo_last(undo)
    assert len(back.moves) == 2 and a.read_bytes() == b"a" and b.read_bytes() == b"b"
    assert undo_last(undo).moves == []  # nothing left to undo


def test_an_undo_never_overwrites_and_a_damaged_list_is_refused(tmp_path: Path) -> None:
    a = tmp_path / "a.jpg"
    a.write_bytes(b"old")
    undo = tmp_path / "moves.json"
    move_files([a], tmp_path / "copies", undo)
    a.write_bytes(b"a new picture under the old name")
    back = undo_last(undo)
    assert back.moves == [] and "exists again" in back.failed[0][1]
    assert a.read_bytes() == b"a new picture under the old name" and (tmp_path / "copies" / "a.jpg").exists()
    move_files([tmp_path / "copies" / "a.jpg"], tmp_path / "elsewhere", undo)
    undo.write_text(undo.read_text().replace("elsewhere", "somewhere"))
    with pytest.raises(ValueError, match="damaged"):
        undo_last(undo)
