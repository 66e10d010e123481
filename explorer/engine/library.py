"""A library: several folders, on several drives, searched as one.

Each folder keeps its own catalog (explorer.engine.cache: one per folder and model); the library is only the list of
folders, kept in `libraries.json` in the data folder (not the cache: clearing the cache must not forget which folders
a person collected). The file is written to a temporary file and renamed, carries a SHA-256 of its content, and the
previous good version is kept beside it (`.bak`): a damaged file is never silently replaced by an empty library.

A folder whose path is missing is *offline* (a drive that is away, a share that is down): it stays in the library,
its catalog stays in the cache and is still searched, and nothing about it is dropped until the user removes it.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from explorer.paths import data_root
from trainer.atomic import atomic_write

DEFAULT_LIBRARY = "library"
_VERSION = 1


class LibraryError(RuntimeError):
    """A library operation that cannot be done; `str(err)` says what to do."""


@dataclass(frozen=True)
class LibraryFolder:
    path: Path
    added: str  # when it was added ("YYYY-MM-DD HH:MM:SS")

    @property
    def online(self) -> bool:
        """Reachable now. A path that is not a folder (drive away, share down) is offline, not gone."""
        try:
            return self.path.is_dir()
        except OSError:
            return False


@dataclass(frozen=True)
class Library:
    name: str
    folders: tuple[LibraryFolder, ...]

    def folder_paths(self) -> list[Path]:
        return [f.path for f in self.folders]


def libraries_file() -> Path:
    return data_root() / "libraries.json"


def _digest(libraries: dict[str, list[dict[str, str]]]) -> str:
    canonical = json.dumps(libraries, sort_keys=True, ensure_ascii=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def _path_text(path: Path) -> str:
    """JSON holds text; a folder name that is not valid UTF-8 keeps its bytes through surrogate escapes."""
    return os.fsdecode(os.fsencode(path))


def _parse(raw: bytes) -> dict[str, list[dict[str, str]]]:
    """The libraries in a file's bytes; raises ValueError when it is damaged (bad JSON, wrong checksum)."""
    document = json.loads(raw.decode("utf-8", "surrogateescape"))
    if not isinstance(document, dict) or document.get("version") != _VERSION:
        raise ValueError("not a libraries file of this version")
    libraries = document.get("libraries")
    if not isinstance(libraries, dict) or document.get("sha256") != _digest(libraries):
        raise ValueError("its checksum does not match its content")
    return libraries


class LibraryStore:
    """Reads and writes the libraries file. Every change re-reads the file first, so two windows (or a window and
    the command line) adding folders do not undo each other's changes."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path) if path is not None else libraries_file()
        self.notes: list[str] = []  # what was done on its own (a damaged file replaced by its backup)
        self._parsed: tuple[tuple[int, int, int], dict[str, list[dict[str, str]]]] | None = None

    @property
    def backup(self) -> Path:
        return self.path.with_name(self.path.name + ".bak")

    def _read(self) -> dict[str, list[dict[str, str]]]:
        """The libraries, parsed again only when the file changed (the window asks at every query): the file's
        inode, size and time are the key, so a change by another process (the command line) is seen."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise LibraryError(f"the libraries file {self.path} cannot be read now: {exc}") from exc
        key = (st.st_ino, st.st_size, st.st_mtime_ns)
        if self._parsed is not None and self._parsed[0] == key:
            return copy.deepcopy(self._parsed[1])  # callers change what they get
        try:
            libraries = _parse(self.path.read_bytes())
            self._parsed = (key, libraries)
            return copy.deepcopy(libraries)
        except (OSError, ValueError) as damaged:
            try:
                libraries = _parse(self.backup.read_bytes())
            except (OSError, ValueError):
                raise LibraryError(
                    f"the libraries file {self.path} is damaged ({damaged}) and has no good backup; move it away "
                    "and add your folders again (their indexes are kept in the cache and are found again)"
                ) from damaged
            note = f"the libraries file was damaged ({damaged}); its previous version was used"
            if note not in self.notes:
                self.notes.append(note)
            return libraries

    def _write(self, libraries: dict[str, list[dict[str, str]]]) -> None:
        document = {"version": _VERSION, "libraries": libraries, "sha256": _digest(libraries)}
        data = json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False).encode("utf-8", "surrogateescape")
        if self.path.exists():
            try:
                _parse(self.path.read_bytes())
                shutil.copyfile(self.path, self.backup)  # the last good version, kept before it is replaced
            except (OSError, ValueError):
                pass  # a damaged current file is not worth keeping over the good backup
        atomic_write(self.path, lambda tmp: tmp.write_bytes(data))

    # -- reading --------------------------------------------------------------------------------------------
    def names(self) -> list[str]:
        return sorted(self._read())

    def get(self, name: str = DEFAULT_LIBRARY) -> Library:
        """The library (empty when it does not exist yet)."""
        entries = self._read().get(name, [])
        folders = tuple(LibraryFolder(Path(e["path"]), e.get("added", "")) for e in entries)
        return Library(name, folders)

    def exists(self, name: str) -> bool:
        return name in self._read()

    # -- changing -------------------------------------------------------------------------------------------
    def add(self, folder: Path, name: str = DEFAULT_LIBRARY, replaces: Path | None = None) -> Library:
        """Add a folder (resolved). `replaces`: the entry it takes the place of (the same folder, moved)."""
        folder = Path(folder).resolve()
        if not folder.is_dir():
            raise LibraryError(f"not a folder: {folder}; add a folder that holds your photos")
        libraries = self._read()
        entries = libraries.setdefault(name, [])
        text = _path_text(folder)
        added = time.strftime("%Y-%m-%d %H:%M:%S")
        if replaces is not None:  # the same folder, found again: it keeps its place and its date
            old = _path_text(Path(replaces))
            added = next((e.get("added", added) for e in entries if e["path"] == old), added)
            entries[:] = [e for e in entries if e["path"] != old]
        for existing in entries:
            inner, outer = Path(existing["path"]), folder
            if existing["path"] == text:
                return self.get(name)
            if outer.is_relative_to(inner) or inner.is_relative_to(outer):
                relation = "inside" if outer.is_relative_to(inner) else "around"
                raise LibraryError(
                    f"{folder} is {relation} {inner}, which the library already holds; a photo would be found twice: "
                    f"remove {inner} first, or add a folder that does not overlap it"
                )
        entries.append({"path": text, "added": added})
        self._write(libraries)
        return self.get(name)

    def remove(self, folder: Path, name: str = DEFAULT_LIBRARY) -> Library:
        """Take a folder out of the library (its catalog stays in the cache: adding it again is instant)."""
        libraries = self._read()
        entries = libraries.get(name, [])
        wanted = {_path_text(Path(folder)), _path_text(Path(folder).resolve()) if Path(folder).exists() else ""}
        kept = [e for e in entries if e["path"] not in wanted]
        if len(kept) == len(entries):
            raise LibraryError(f"{folder} is not in the library {name!r}; `explorer library list` shows what is")
        libraries[name] = kept
        self._write(libraries)
        return self.get(name)
