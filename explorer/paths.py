"""Every place the app reads or writes, in one module (no Qt, no torch): resources, cache, data, models, runs.

Nothing is ever written into the user's photo folders. Catalogs and float indexes live in the cache (they can be
rebuilt); fine-tuned models and training runs in the data folder (they cannot). Both follow the platform's
conventions and can be moved with an environment variable (tests, portable installs).
"""

from __future__ import annotations

import os
from pathlib import Path

from platformdirs import user_cache_dir, user_data_dir

from trainer.paths import BUNDLED_MODEL, RESOURCES

APP_NAME = "retrieval-explorer"
ICON = RESOURCES / "icons" / "retrieval-explorer.png"
__all__ = [
    "APP_NAME",
    "BUNDLED_MODEL",
    "ICON",
    "cache_root",
    "data_root",
    "log_file",
    "models_dir",
    "pictures_folder",
    "runs_dir",
]


def _overridable(variable: str, platform_dir: str) -> Path:
    """`$variable` when set (tests, portable installs), else the platform's folder."""
    override = os.environ.get(variable)
    return Path(override) if override else Path(platform_dir)


def cache_root() -> Path:
    """`$RETRIEVAL_EXPLORER_CACHE` when set, else the platform's user cache (`~/.cache/retrieval-explorer`)."""
    return _overridable("RETRIEVAL_EXPLORER_CACHE", user_cache_dir(APP_NAME))


def log_file() -> Path:
    """Where the window writes what went wrong, tracebacks included (the terminal gets one line; About says where)."""
    return cache_root() / "explorer.log"


def pictures_folder() -> Path:
    """Where file dialogs start before a folder is chosen: the user's Pictures folder, else home (never the working
    directory the app happened to be started in)."""
    from platformdirs import user_pictures_dir

    pictures = Path(user_pictures_dir())
    return pictures if pictures.is_dir() else Path.home()


def data_root() -> Path:
    """`$RETRIEVAL_EXPLORER_DATA` when set, else the platform's user data folder (`~/.local/share/...`)."""
    return _overridable("RETRIEVAL_EXPLORER_DATA", user_data_dir(APP_NAME))


def models_dir() -> Path:
    """Where fine-tuned models are saved by name."""
    return data_root() / "models"


def runs_dir() -> Path:
    """Where training runs keep their checkpoints and trunk caches until the model is saved."""
    return data_root() / "training-runs"
