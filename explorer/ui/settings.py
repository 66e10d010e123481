"""Preferences kept between runs: window layout, folders, model and search controls.

QSettings stores them where each platform expects (registry, plist, ~/.config). Everything goes through
this one class with typed getters, because QSettings hands back strings from INI files and native types
elsewhere; callers should never have to care which. `RETRIEVAL_EXPLORER_SETTINGS=<file.ini>` points the
app at a private INI file, which tests, screenshots and benchmarks use so they never touch a person's
real preferences.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from PySide6.QtCore import QByteArray, QSettings

ORGANIZATION = "retrieval-explorer"
APPLICATION = "Retrieval Explorer"
SETTINGS_ENV = "RETRIEVAL_EXPLORER_SETTINGS"
MAX_RECENT_FOLDERS = 10
DEFAULT_K = 20
MAX_K = 500


def default_store() -> QSettings:
    """The INI file named by $RETRIEVAL_EXPLORER_SETTINGS, else the platform's user settings."""
    override = os.environ.get(SETTINGS_ENV)
    if override:
        return QSettings(override, QSettings.Format.IniFormat)
    return QSettings(QSettings.Format.IniFormat, QSettings.Scope.UserScope, ORGANIZATION, APPLICATION)


def _as_int(value: object, default: int) -> int:
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return default


class Settings:
    """Typed access to the stored preferences; writes are immediate, `sync()` flushes them to disk."""

    def __init__(self, store: QSettings | None = None) -> None:
        self.store = store if store is not None else default_store()

    @classmethod
    def at(cls, ini_file: Path) -> Settings:
        """Preferences in a given INI file (tests, screenshots)."""
        return cls(QSettings(str(ini_file), QSettings.Format.IniFormat))

    def sync(self) -> None:
        self.store.sync()

    # -- window -----------------------------------------------------------------------------------------
    def _bytes(self, key: str) -> QByteArray | None:
        value = self.store.value(key)
        return value if isinstance(value, QByteArray) and not value.isEmpty() else None

    @property
    def geometry(self) -> QByteArray | None:
        return self._bytes("window/geometry")

    @geometry.setter
    def geometry(self, value: QByteArray) -> None:
        self.store.setValue("window/geometry", value)

    @property
    def window_state(self) -> QByteArray | None:
        return self._bytes("window/state")

    @window_state.setter
    def window_state(self, value: QByteArray) -> None:
        self.store.setValue("window/state", value)

    # -- folders ----------------------------------------------------------------------------------------
    @property
    def last_folder(self) -> Path | None:
        value = self.store.value("folders/last", "")
        return Path(str(value)) if value else None

    @last_folder.setter
    def last_folder(self, folder: Path | None) -> None:
        self.store.setValue("folders/last", str(folder) if folder else "")

    @property
    def labelled_folder(self) -> Path | None:
        """Where "Add to class" puts results (explorer.engine.labelled_set), once chosen."""
        value = self.store.value("labels/folder", "")
        return Path(str(value)) if value else None

    @labelled_folder.setter
    def labelled_folder(self, folder: Path | None) -> None:
        self.store.setValue("labels/folder", str(folder) if folder else "")

    @property
    def label_copies(self) -> bool:
        """ "Add to a class" copies the pictures (True) or links to them (False, the default: no space used)."""
        return str(self.store.value("labels/copies", "false")).lower() == "true"

    @label_copies.setter
    def label_copies(self, value: bool) -> None:
        self.store.setValue("labels/copies", "true" if value else "false")

    @property
    def recent_folders(self) -> list[Path]:
        value = self.store.value("folders/recent", [])
        if isinstance(value, str):  # QSettings collapses a one-element list to its element
            value = [value] if value else []
        if not isinstance(value, Iterable):  # nothing stored (None)
            return []
        return [Path(str(v)) for v in value if v]

    @recent_folders.setter
    def recent_folders(self, folders: list[Path]) -> None:
        self.store.setValue("folders/recent", [str(f) for f in folders[:MAX_RECENT_FOLDERS]])

    def remember_folder(self, folder: Path) -> None:
        """Make `folder` the last and the most recent folder (moved to the front, list capped)."""
        folder = Path(folder)
        self.last_folder = folder
        self.recent_folders = [folder, *(f for f in self.recent_folders if f != folder)]

    def forget_folder(self, folder: Path) -> None:
        self.recent_folders = [f for f in self.recent_folders if f != Path(folder)]
        if self.last_folder == Path(folder):
            self.last_folder = None

    # -- model and search -------------------------------------------------------------------------------
    @property
    def model_path(self) -> Path | None:
        """None means the bundled model."""
        value = self.store.value("model/path", "")
        return Path(str(value)) if value else None

    @model_path.setter
    def model_path(self, path: Path | None) -> None:
        self.store.setValue("model/path", str(path) if path else "")

    @property
    def k(self) -> int:
        return max(1, min(MAX_K, _as_int(self.store.value("search/k", DEFAULT_K), DEFAULT_K)))

    @k.setter
    def k(self, value: int) -> None:
        self.store.setValue("search/k", int(value))

    @property
    def dim(self) -> int | None:
        """The nested dimension last searched at; None means the model's full dimension."""
        value = _as_int(self.store.value("search/dim", 0), 0)
        return value if value > 0 else None

    @dim.setter
    def dim(self, value: int | None) -> None:
        self.store.setValue("search/dim", int(value or 0))

    @property
    def binary(self) -> bool:
        return str(self.store.value("search/ranking", "float")) == "binary"

    @binary.setter
    def binary(self, value: bool) -> None:
        self.store.setValue("search/ranking", "binary" if value else "float")

    @property
    def cutoff(self) -> float:
        """The grid's cosine-distance limit (0: none)."""
        try:
            return max(0.0, min(2.0, float(str(self.store.value("search/cutoff", 0.0)))))
        except ValueError:
            return 0.0

    @cutoff.setter
    def cutoff(self, value: float) -> None:
        self.store.setValue("search/cutoff", float(value))

    @property
    def expand(self) -> bool:
        """Rank by query expansion (explorer.engine.search.Collection.search's `expand`)."""
        return str(self.store.value("search/rerank", "none")) == "qe"

    @expand.setter
    def expand(self, value: bool) -> None:
        self.store.setValue("search/rerank", "qe" if value else "none")
