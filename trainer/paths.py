"""Where the project's own files are: the bundled model that `trainer fit` starts from and the app ships.

Resolved from this file, so it holds in a checkout, an installed tree and a PyInstaller bundle alike (explorer.spec
copies `resources/` to the same place relative to the package); `explorer.paths` builds the app's places on it.
"""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
RESOURCES = PROJECT_ROOT / "resources"
BUNDLED_MODEL = RESOURCES / "models" / "default"
