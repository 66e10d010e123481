"""Where catalogs live: the app's cache directory, never the user's photo folder."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from explorer.paths import cache_root


def folder_key(folder: Path) -> str:
    """A readable, collision-safe directory name for a photo folder (its name + a hash of its full path)."""
    resolved = str(Path(folder).resolve())
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(resolved).name)[:40] or "root"
    return f"{slug}-{hashlib.sha256(resolved.encode('utf-8', 'surrogateescape')).hexdigest()[:12]}"


def catalog_dir(folder: Path, model_fingerprint: str) -> Path:
    """One directory per (folder, model): a retrained model never mixes its embeddings with another's."""
    return cache_root() / "catalogs" / folder_key(folder) / model_fingerprint
