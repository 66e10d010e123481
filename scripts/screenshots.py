"""Render the explorer window's main states to PNG (docs/screenshots/) on an offscreen display.

    .venv/bin/python scripts/screenshots.py [--out docs/screenshots] [--classes 6] [--per-class 14]

Uses a few classes of ../shared/datasets/cub100 when that folder exists (copied to a temporary directory,
never into the repository), generated pictures otherwise. Settings and the catalog cache go to the same
temporary directory, so a person's preferences and caches are never touched. The bundled model is used,
exactly as the app would on first start.

States: 01 the empty window, 02 indexing in progress, 03 a query's neighbours with the float-against-
binary plots, 04 the dimension panel (neighbour strips and the folder's Recall@K per dimension), 05 a file that is
not a picture dropped as the query (the previous results stay, one sentence says why), 06 and 07 the neighbours at
1024 x 640 and at 1920 x 1080.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CUB = ROOT.parent / "shared" / "datasets" / "cub100"
SIZE = (1280, 800)


def _generated_folder(dest: Path, classes: int, per_class: int) -> Path:
    """Classes of smooth colour blobs that share a palette, so neighbours visibly resemble the query."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:120, 0:160].astype(np.float32)
    for c in range(classes):
        base = rng.uniform(0.2, 1.0, size=3)
        for i in range(per_class + 1):
            img = np.zeros((120, 160, 3), np.float32)
            for _ in range(4):
                cx, cy, r = rng.uniform(0, 160), rng.uniform(0, 120), rng.uniform(12, 40)
                blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r))
                img += blob[..., None] * (base + rng.normal(0, 0.15, 3))[None, None, :]
            img = (255 * img / max(img.max(), 1e-6)).clip(0, 255).astype(np.uint8)
            target = dest / f"class_{c + 1}" / f"img_{i:02d}.jpg"
            target.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(target, quality=90)
    return dest


def prepare_folder(work: Path, classes: int, per_class: int) -> tuple[Path, Path]:
    """A labelled folder of photos, and a query image of one of its classes that is not in the folder."""
    folder = work / ("birds" if CUB.is_dir() else "pictures")
    if CUB.is_dir():
        names = sorted(p.name for p in CUB.iterdir() if p.is_dir())
        step = max(1, len(names) // classes)
        for name in names[::step][:classes]:
            files = sorted((CUB / name).glob("*.jpg"))[: per_class + 1]
            for f in files:
                (folder / name).mkdir(parents=True, exist_ok=True)
                shutil.copy2(f, folder / name / f.name)
    else:
        _generated_folder(folder, classes, per_class)
    first_class = sorted(p for p in folder.iterdir() if p.is_dir())[0]
    query = work / f"query{sorted(first_class.iterdir())[-1].suffix}"
    shutil.move(str(sorted(first_class.iterdir())[-1]), query)  # held out: the query is not its own neighbour
    (folder / "notes.jpg").write_text("a text file someone saved with a .jpg name\n")  # shows the skipped list
    return folder, query


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--classes", type=int, default=6)
    parser.add_argument("--per-class", type=int, default=14)
    parser.add_argument("--k", type=int, default=12)
    args = parser.parse_args(argv)

    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    work = Path(tempfile.mkdtemp(prefix="explorer-shots-"))
    os.environ["RETRIEVAL_EXPLORER_CACHE"] = str(work / "cache")
    os.environ["RETRIEVAL_EXPLORER_SETTINGS"] = str(work / "settings.ini")
    folder, query = prepare_folder(work, args.classes, args.per_class)

    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(sys.argv[:1])
    from explorer.ui.settings import Settings
    from explorer.ui.window import MainWindow, app_icon

    app.setWindowIcon(app_icon())
    settings = Settings()
    settings.k = args.k
    window = MainWindow(settings)
    window.resize(*SIZE)
    window.show()
    args.out.mkdir(parents=True, exist_ok=True)

    def wait(cond: Callable[[], bool], timeout: float = 600.0, what: str = "") -> None:
        end = time.monotonic() + timeout
        while not cond():
            if time.monotonic() > end:
                raise TimeoutError(f"timed out waiting for {what}")
            app.processEvents()
            time.sleep(0.01)

    def settle(seconds: float = 0.5) -> None:
        """Let queued thumbnails decode and the views repaint."""
        wait(lambda: window.thumbnails.pool.activeThreadCount() == 0 and not window.thumbnails._pending, 60, "thumbs")
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            app.processEvents()
            time.sleep(0.01)

    def shot(name: str) -> None:
        settle()
        path = args.out / name
        window.grab().save(str(path), "PNG")
        print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")

    wait(lambda: window.session is not None and window.plots is not None, what="the model")
    shot("01-empty-window.png")

    total = sum(1 for _ in folder.rglob("*.jpg"))
    window.open_folder(folder)
    wait(lambda: window.progress_bar.maximum() > 1 and window.progress_bar.value() >= total // 3, what="progress")
    shot("02-indexing.png")

    wait(lambda: window.summary is not None and not window.controller.recall_job.running, what="indexing and recall")
    window.set_query_path(query)
    wait(lambda: window.outcome is not None and window.outcome.searched, what="the query")
    shot("03-neighbours-and-plots.png")

    window.tabs.setCurrentIndex(1)
    shot("04-dimensions.png")

    window.tabs.setCurrentIndex(0)
    not_a_picture = work / "holiday-notes.jpg"
    not_a_picture.write_text("pack the binoculars\n")
    window.set_query_path(not_a_picture)
    query_job = window.controller.query_job
    wait(lambda: not query_job.running and "cannot be used" in window.statusBar().currentMessage(), what="error")
    shot("05-not-a-picture-dropped.png")

    window.set_query_path(query)
    wait(lambda: window.outcome is not None and window.outcome.searched and not query_job.running, what="query")
    for name, size in (("06-neighbours-1024x640.png", (1024, 640)), ("07-neighbours-1920x1080.png", (1920, 1080))):
        window.resize(*size)
        shot(name)

    window.close()
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
