"""The window's building blocks on their own: jobs, thumbnails, the query area, export, the entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from PIL import Image
from PySide6.QtCore import QMimeData, QUrl
from PySide6.QtGui import QImage

from explorer.ui.query_area import QueryArea, path_from_text
from explorer.ui.thumbnails import ThumbnailCache, load_thumbnail, qimage_to_pil
from explorer.ui.workers import Job, JobRunner

PROJECT_ROOT = Path(__file__).resolve().parents[3]


def test_job_results_errors_and_cancellation_arrive_as_signals(qtbot) -> None:  # type: ignore[no-untyped-def]
    runner = JobRunner("test", 2)
    ok = Job("ok", lambda job: (job.report("half"), 42)[1])
    progress: list[object] = []
    ok.signals.progress.connect(lambda job, payload: progress.append(payload))
    with qtbot.waitSignal(ok.signals.finished, timeout=5000) as blocker:
        runner.start(ok)
    assert blocker.args == [ok, 42] and progress == ["half"]

    bad = Job("bad", lambda job: 1 / 0)
    with qtbot.waitSignal(bad.signals.failed, timeout=5000) as blocker:
        runner.start(bad)
    assert blocker.args[1].startswith("something went wrong (division by zero); the details are in ")  # no class name

    release = threading.Event()

    def long(job: Job) -> None:
        while not release.wait(0.01):
            job.check()

    stoppable = Job("long", long)
    with qtbot.waitSignal(stoppable.signals.cancelled, timeout=5000):
        runner.start(stoppable)
        stoppable.cancel()
    assert runner.wait(5000)
    qtbot.waitUntil(lambda: not runner._jobs, timeout=5000)  # released once their signals were delivered


def test_queued_jobs_cancelled_before_they_start_still_report(qtbot) -> None:  # type: ignore[no-untyped-def]
    runner = JobRunner("one", 1)
    gate = threading.Event()
    blocker_job = Job("blocker", lambda job: gate.wait(5))
    queued = Job("queued", lambda job: "ran")
    runner.start(blocker_job)
    runner.start(queued)
    with qtbot.waitSignal(queued.signals.cancelled, timeout=5000):
        runner.cancel_all()
    gate.set()
    assert runner.wait(5000) and queued.result is None


def test_thumbnails_are_upright_small_and_cached(qtbot, tmp_path, make_img) -> None:  # type: ignore[no-untyped-def]
    src = make_img(tmp_path / "wide.png", seed=1, size=(120, 60), fmt="PNG")
    rotated = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # EXIF orientation: rotate 90° clockwise to display
    Image.open(src).save(rotated, exif=exif)
    image = load_thumbnail(rotated, 64)
    assert (image.width(), image.height()) == (32, 64)  # stored 120x60, shown upright 60x120

    cache = ThumbnailCache(capacity=2)
    assert cache.get(src, 64) is None
    with qtbot.waitSignal(cache.ready, timeout=10_000) as blocker:
        pass
    assert blocker.args == [str(src)]
    pixmap = cache.get(src, 64)
    assert pixmap is not None and (pixmap.width(), pixmap.height()) == (64, 32)

    bad = tmp_path / "bad.jpg"
    bad.write_text("no")
    with qtbot.waitSignal(cache.ready, timeout=10_000):
        cache.get(bad, 64)
    assert cache.get(bad, 64) is None and "not an image" in cache.error(bad)
    for size in (16, 24, 32):  # capacity 2: the least recently used pixmaps go
        with qtbot.waitSignal(cache.ready, timeout=10_000):
            cache.get(src, size)
    assert len(cache._pixmaps) == 2
    cache.wait()


def test_pasted_qimage_with_alpha_lands_on_white() -> None:
    image = QImage(4, 2, QImage.Format.Format_ARGB32)
    image.fill(0x00000000)  # fully transparent black
    pil = qimage_to_pil(image)
    assert pil.mode == "RGB" and pil.size == (4, 2) and pil.getpixel((0, 0)) == (255, 255, 255)


def test_query_area_sorts_out_what_was_dropped(qtbot, tmp_path, make_img) -> None:  # type: ignore[no-untyped-def]
    area = QueryArea()
    qtbot.addWidget(area)
    picture = make_img(tmp_path / "p.jpg", seed=2)
    got: list[tuple[str, object]] = []
    area.imageChosen.connect(lambda p: got.append(("image", p)))
    area.folderChosen.connect(lambda p: got.append(("folder", p)))
    area.imagePasted.connect(lambda i: got.append(("pasted", i.size().toTuple())))
    area.rejected.connect(lambda why: got.append(("rejected", why)))

    def mime(**kw: object) -> QMimeData:
        m = QMimeData()
        if "urls" in kw:
            m.setUrls(kw["urls"])  # type: ignore[arg-type]
        if "text" in kw:
            m.setText(kw["text"])  # type: ignore[arg-type]
        if "image" in kw:
            m.setImageData(kw["image"])
        return m

    assert area.accept_mime(mime(urls=[QUrl.fromLocalFile(str(picture))]))
    assert area.accept_mime(mime(urls=[QUrl.fromLocalFile(str(tmp_path))]))
    assert area.accept_mime(mime(image=QImage(5, 3, QImage.Format.Format_RGB32)))
    assert area.accept_mime(mime(text=f'"{picture}"'))
    assert not area.accept_mime(mime(urls=[QUrl("https://example.com/cat.jpg")]))
    assert not area.accept_mime(mime(text="hello"))
    assert got[:4] == [("image", picture), ("folder", tmp_path), ("pasted", (5, 3)), ("image", picture)]
    assert got[4][0] == "rejected" and "local files" in got[4][1]
    assert got[5][0] == "rejected"

    assert path_from_text(QUrl.fromLocalFile(str(picture)).toString()) == picture
    assert path_from_text("") is None and path_from_text("file://host.example/x.jpg") is None


def test_python_m_explorer_shows_the_window_without_importing_torch(tmp_path: Path) -> None:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "RETRIEVAL_EXPLORER_SETTINGS": str(tmp_path / "s.ini")}
    code = (
        "import sys, explorer.__main__ as m\n"
        "import explorer.ui.window as w\n"
        "orig = w.MainWindow.show\n"
        "def show(self):\n"
        "    print('torch-before-show', 'torch' in sys.modules, flush=True)\n"
        "    orig(self)\n"
        "w.MainWindow.show = show\n"
        "sys.exit(m.main(['--exit-when-shown']))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120
    )
    assert "torch-before-show False" in out.stdout, out.stderr
    assert "window-shown" in out.stdout, out.stderr
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize("suffix", [".csv", ".json"])
def test_export_format_follows_the_suffix(tmp_path: Path, suffix: str) -> None:
    from explorer.app.export import ExportContext, export_ranking
    from explorer.engine.search import Ranking, SearchResult

    ranking = Ranking(64, True, [SearchResult(1, tmp_path / "a.jpg", "a.jpg", 0.25, 7, 3)])
    path = export_ranking(tmp_path / f"out{suffix}", ranking, ExportContext("q.jpg", tmp_path, "m"))
    text = path.read_text()
    if suffix == ".json":
        doc = json.loads(text)
        assert doc["ranking"] == "binary" and doc["dim"] == 64 and doc["results"][0]["hamming_distance"] == 7
    else:
        assert text.splitlines() == [
            "rank,path,relpath,cosine_distance,hamming_distance",
            f"1,{tmp_path / 'a.jpg'},a.jpg,0.25,7",
        ]


def test_torch_loads_normally_after_its_libraries_were_preloaded() -> None:
    code = (
        "import sys\n"
        "from explorer.ui.preload import preload_torch_libraries\n"
        "loaded = preload_torch_libraries()\n"
        "import torch\n"
        "assert float(torch.ones(3) @ torch.ones(3)) == 3.0\n"
        "print('loaded' if loaded else 'skipped', sys.platform)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[0] == ("loaded" if sys.platform.startswith("linux") else "skipped")


def test_dimension_strips_show_both_distances_under_each_neighbour(qtbot) -> None:  # type: ignore[no-untyped-def]
    """Issue 13: the Dimensions tab's thumbnails had no distance; a compact cell now holds one line for both."""
    from PySide6.QtWidgets import QStyleOptionViewItem

    from explorer.ui.results_view import ResultDelegate

    option = QStyleOptionViewItem()
    line = option.fontMetrics.height()
    compact = ResultDelegate(64, compact=True).sizeHint(option, None)  # type: ignore[arg-type]
    assert compact.height() == 64 + 2 * 4 + line + 4


def test_dimension_strips_scroll_together(qtbot, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Issue 13: each of the 12 strips scrolled on its own; scrolling one now scrolls all, so ranks line up."""
    from explorer.engine.search import SearchResult
    from explorer.ui.dims_panel import DimensionsPanel
    from explorer.ui.thumbnails import ThumbnailCache

    panel = DimensionsPanel(ThumbnailCache())
    qtbot.addWidget(panel)
    panel.set_dims([64, 128])
    results = [SearchResult(i + 1, tmp_path / f"{i}.jpg", f"{i}.jpg", 0.1 * i, i, i) for i in range(40)]
    for model in (panel.strip_model(d, b) for d in (64, 128) for b in (False, True)):
        model.set_results(results)
    panel.left.setCurrentIndex(1)  # the strips, as after a query
    panel.resize(700, 600)
    panel.show()
    qtbot.waitExposed(panel)
    bars = [strip.view.horizontalScrollBar() for strip in panel.strips.values()]
    qtbot.waitUntil(lambda: all(bar.maximum() > 0 for bar in bars), timeout=5000)  # laid out on the event loop
    bars[0].setValue(bars[0].maximum() // 2)
    assert {bar.value() for bar in bars} == {bars[0].maximum() // 2}


def test_thumbnails_come_from_the_indexing_pass_when_it_made_them(qtbot, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A stored thumbnail is shown without decoding the file (a 12 MP photo costs 30 ms of a core); larger sizes
    than the store's, and files it does not hold, are decoded as before."""
    from explorer.engine.thumbnail_store import THUMBNAIL_SIZE, thumbnail_jpeg

    photo = tmp_path / "camera.jpg"
    photo.write_text("not decodable: only the stored thumbnail can be shown")
    stored = thumbnail_jpeg(Image.new("RGB", (400, 300), (200, 30, 30)))
    asked: list[Path] = []
    cache = ThumbnailCache(stored=lambda p: asked.append(p) or (stored if p == photo else None))
    with qtbot.waitSignal(cache.ready, timeout=10_000):
        cache.get(photo, 128)
    pixmap = cache.get(photo, 128)
    assert pixmap is not None and (pixmap.width(), pixmap.height()) == (128, 96) and asked == [photo]
    assert pixmap.toImage().pixelColor(64, 48).red() > 150
    with qtbot.waitSignal(cache.ready, timeout=10_000):
        cache.get(photo, THUMBNAIL_SIZE + 100)  # bigger than what is stored: the file is decoded (and fails here)
    assert cache.get(photo, THUMBNAIL_SIZE + 100) is None and cache.error(photo)
    cache.wait()
