"""The libraries file: folders added and removed, offline folders kept, damage never turned into an empty library."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from explorer.engine.library import DEFAULT_LIBRARY, LibraryError, LibraryStore


@pytest.fixture
def store(tmp_path: Path) -> LibraryStore:
    return LibraryStore(tmp_path / "data" / "libraries.json")


def folders(tmp_path: Path, *names: str) -> list[Path]:
    out = []
    for name in names:
        (tmp_path / name).mkdir(parents=True)
        out.append((tmp_path / name).resolve())
    return out


def test_add_list_remove(store: LibraryStore, tmp_path: Path) -> None:
    a, b = folders(tmp_path, "drive1/photos", "drive2/more photos")
    assert store.get().folders == () and store.names() == []
    store.add(a)
    library = store.add(b)
    assert library.folder_paths() == [a, b] and store.names() == [DEFAULT_LIBRARY]
    assert store.add(a).folder_paths() == [a, b]  # adding again changes nothing
    assert LibraryStore(store.path).get().folder_paths() == [a, b]  # on disk, read by another store (window, CLI)
    assert store.remove(a).folder_paths() == [b]
    with pytest.raises(LibraryError, match="not in the library"):
        store.remove(a)
    store.add(a, name="work")
    assert store.names() == [DEFAULT_LIBRARY, "work"] and store.get("work").folder_paths() == [a]


def test_overlapping_folders_are_refused_with_what_to_do(store: LibraryStore, tmp_path: Path) -> None:
    outer, inner = folders(tmp_path, "photos", "photos/2019")
    store.add(outer)
    with pytest.raises(LibraryError, match=r"inside .*found twice: remove"):
        store.add(inner)
    store.remove(outer)
    store.add(inner)
    with pytest.raises(LibraryError, match="around"):
        store.add(outer)
    with pytest.raises(LibraryError, match="not a folder"):
        store.add(tmp_path / "missing")


def test_an_offline_folder_stays_and_loses_nothing(store: LibraryStore, tmp_path: Path) -> None:
    a, b, c = folders(tmp_path, "usb/photos", "home/photos", "home/scans")
    store.add(a)
    store.add(b)
    a.rename(tmp_path / "usb" / "away")  # the drive is unplugged
    library = store.add(c)  # changing the library meanwhile does not drop the folder that is away
    assert library.folder_paths() == [a, b, c]
    assert [f.online for f in library.folders] == [False, True, True]
    (tmp_path / "usb" / "away").rename(a)
    assert all(f.online for f in store.get().folders)


def test_a_moved_folder_takes_its_old_place(store: LibraryStore, tmp_path: Path) -> None:
    a, b = folders(tmp_path, "photos", "scans")
    store.add(a)
    store.add(b)
    added = store.get().folders[0].added
    moved = tmp_path / "photos 2019"
    a.rename(moved)
    library = store.add(moved, replaces=a)
    assert library.folder_paths() == [b, moved.resolve()]
    assert library.folders[1].added == added


def test_a_damaged_file_falls_back_to_its_last_good_version(store: LibraryStore, tmp_path: Path) -> None:
    a, b = folders(tmp_path, "a", "b")
    store.add(a)
    store.add(b)  # the version with `a` alone is now the backup
    document = json.loads(store.path.read_text())
    document["libraries"][DEFAULT_LIBRARY].append({"path": "/etc", "added": ""})  # edited: checksum no longer fits
    store.path.write_text(json.dumps(document))
    reader = LibraryStore(store.path)
    assert reader.get().folder_paths() == [a]
    assert any("damaged" in note for note in reader.notes)
    store.path.write_bytes(b"\x00" * 40)  # a crash of the disk, say
    assert LibraryStore(store.path).get().folder_paths() == [a]
    store.backup.write_bytes(b"{")
    with pytest.raises(LibraryError, match=r"damaged .* add your folders again"):
        LibraryStore(store.path).get()
    assert store.path.read_bytes() == b"\x00" * 40  # nothing was overwritten with an empty library


@pytest.mark.skipif(sys.platform in ("win32", "darwin"), reason="file names are bytes only on Linux")
def test_a_folder_name_that_is_not_utf8(store: LibraryStore, tmp_path: Path) -> None:
    raw = os.fsencode(tmp_path) + b"/caf\xe9 photos"
    os.mkdir(raw)
    folder = Path(os.fsdecode(raw))
    store.add(folder)
    (path,) = LibraryStore(store.path).get().folder_paths()
    assert os.fsencode(path) == raw and path.is_dir()


def test_the_file_is_parsed_again_only_when_it_changed(store: LibraryStore, tmp_path: Path) -> None:
    a, b = folders(tmp_path, "a", "b")
    store.add(a)
    parsed = 0
    import explorer.engine.library as library_module

    real = library_module._parse

    def counting(raw: bytes) -> dict[str, list[dict[str, str]]]:
        nonlocal parsed
        parsed += 1
        return real(raw)

    library_module._parse = counting  # type: ignore[assignment]
    try:
        for _ in range(5):
            assert store.get().folder_paths() == [a]
        assert parsed == 0  # the window asks at every query: parsed when written, not again while unchanged
        LibraryStore(store.path).add(b)  # another process (the command line) changes it
        parsed = 0
        assert store.get().folder_paths() == [a, b] and parsed == 1
    finally:
        library_module._parse = real  # type: ignore[assignment]
