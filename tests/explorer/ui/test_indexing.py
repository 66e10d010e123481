"""Indexing runs in the background with progress, can be cancelled and resumed, and lists what it skipped."""

from __future__ import annotations

import threading

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMenu

from explorer.ui.settings import Settings
from explorer.ui.window import MainWindow
from trainer.images import SCAN_STAGE

INDEX_TIMEOUT_MS = 120_000


def test_progress_cancel_and_resume(qtbot, make_window, make_img, tmp_path, ui_session):  # type: ignore[no-untyped-def]
    folder = tmp_path / "many"
    for i in range(40):  # ten batches of four: cancelling after the first leaves most of them undone
        make_img(folder / f"p{i:02d}.png", seed=100 + i, size=(48, 40), fmt="PNG")
    window = make_window()
    seen = []
    window.indexProgress.connect(seen.append)

    with qtbot.waitSignal(
        window.indexProgress, timeout=INDEX_TIMEOUT_MS, check_params_cb=lambda p: p.stage == "embedding"
    ) as first:
        window.open_folder(folder)
    assert seen[0].stage == SCAN_STAGE and seen[0].done == 40  # the scan's count came first
    assert window.indexing
    assert not window.progress_bar.isHidden() and not window.cancel_button.isHidden()
    assert window.progress_bar.maximum() == 40
    assert "images/s" in window.progress_label.text()
    assert first.args[0].total == 40 and first.args[0].done >= 4

    with qtbot.waitSignal(window.indexFinished, timeout=INDEX_TIMEOUT_MS) as cancelled:
        qtbot.mouseClick(window.cancel_button, Qt.MouseButton.LeftButton)
    summary = cancelled.args[0]
    assert summary.cancelled
    assert 0 < summary.count < 40
    assert not window.indexing and window.cancel_button.isHidden()
    assert "(partial)" in window.stats_label.text()
    assert window.reindex_button.isEnabled()

    with qtbot.waitSignal(window.indexFinished, timeout=INDEX_TIMEOUT_MS) as resumed:
        window.reindex_action.trigger()
    summary2 = resumed.args[0]
    assert not summary2.cancelled
    assert summary2.count == 40
    assert summary2.report.unchanged == summary.count  # resumed: what was done is not embedded again
    assert summary2.report.embedded == 40 - summary.count
    assert len(ui_session.collection(folder)) == 40
    assert "40 images" in window.stats_label.text()
    assert seen[-1].done == seen[-1].total


def test_escape_cancels_indexing(qtbot, make_window, make_img, tmp_path):  # type: ignore[no-untyped-def]
    folder = tmp_path / "esc"
    for i in range(40):
        make_img(folder / f"p{i:02d}.png", seed=300 + i, size=(48, 40), fmt="PNG")
    window = make_window()
    with qtbot.waitSignal(window.indexProgress, timeout=INDEX_TIMEOUT_MS):
        window.open_folder(folder)
    with qtbot.waitSignal(window.indexFinished, timeout=INDEX_TIMEOUT_MS) as blocker:
        qtbot.keyClick(window, Qt.Key.Key_Escape)
    assert blocker.args[0].cancelled


def test_reopening_an_indexed_folder_embeds_nothing(qtbot, make_window, index_in, image_folder):  # type: ignore[no-untyped-def]
    window = make_window()
    first = index_in(window, image_folder)
    assert first.report.embedded == 12
    again = index_in(window, image_folder)
    assert again.report.embedded == 0 and again.report.unchanged == 12


def test_corrupt_files_are_listed_as_skipped_and_nothing_breaks(qtbot, make_window, index_in, image_folder):  # type: ignore[no-untyped-def]
    (image_folder / "a" / "broken.jpg").write_text("this is not a picture")
    whole = (image_folder / "b" / "img_06.jpg").read_bytes()
    (image_folder / "b" / "truncated.jpg").write_bytes(whole[: len(whole) // 3])
    window = make_window()

    summary = index_in(window, image_folder)

    assert summary.count == 12
    skipped = dict(window.skipped_files())
    assert set(skipped) == {"a/broken.jpg", "b/truncated.jpg"}
    assert "not an image" in skipped["a/broken.jpg"]
    assert "truncated" in skipped["b/truncated.jpg"]
    assert window.skipped_button.text() == "2 skipped" and not window.skipped_button.isHidden()
    assert "2 skipped" in window.folder_info.text()
    qtbot.mouseClick(window.skipped_button, Qt.MouseButton.LeftButton)
    assert window.skipped_dock.isVisible()

    # The window still answers queries, and never lists a skipped file as a neighbour.
    with qtbot.waitSignal(window.queryFinished, timeout=60_000, check_params_cb=lambda o: o.searched) as b:
        window.set_query_path(image_folder / "a" / "img_00.jpg")
    relpaths = {r.relpath for r in b.args[0].float_ranking.results}
    assert len(relpaths) == 11 and "a/broken.jpg" not in relpaths  # the other 11 (the query is not its own result)


def test_a_cancelled_folder_is_offered_at_the_next_launch_not_restarted(
    qtbot, make_window, make_img, tmp_path, ui_session
):  # type: ignore[no-untyped-def]
    """Issue 13: a cancelled index of a huge folder picked by mistake restarted by itself at every launch."""
    folder = tmp_path / "huge"
    for i in range(40):
        make_img(folder / f"p{i:02d}.png", seed=300 + i, size=(48, 40), fmt="PNG")
    first = make_window()
    with qtbot.waitSignal(
        first.indexProgress, timeout=INDEX_TIMEOUT_MS, check_params_cb=lambda p: p.stage == "embedding"
    ):
        first.open_folder(folder)
    with qtbot.waitSignal(first.indexFinished, timeout=INDEX_TIMEOUT_MS) as cancelled:
        first.cancel()
    partial = cancelled.args[0].count
    assert 0 < partial < 40
    first.close()

    again = make_window()  # the same settings: the folder is reopened at launch
    qtbot.waitUntil(lambda: again.summary is not None, timeout=INDEX_TIMEOUT_MS)
    qtbot.wait(1500)  # time enough for a run that would have started by itself
    assert not again.indexing
    assert again.summary.cancelled and again.summary.count == partial
    assert len(ui_session.collection(folder)) == partial
    assert "cancelled last time" in again.statusBar().currentMessage()
    assert "Re-index (Ctrl+R) continues" in again.statusBar().currentMessage()
    with qtbot.waitSignal(again.indexFinished, timeout=INDEX_TIMEOUT_MS) as resumed:
        again.reindex_action.trigger()
    assert not resumed.args[0].cancelled and resumed.args[0].count == 40


def test_cancel_while_the_model_loads_keeps_indexing_from_starting(qtbot, settings_file, image_folder, ui_session):  # type: ignore[no-untyped-def]
    """Issue 13: the Cancel beside "Loading the model…" did nothing: indexing started anyway."""
    settings = Settings.at(settings_file)
    settings.remember_folder(image_folder)
    loaded = threading.Event()

    def slow_model(_path):  # type: ignore[no-untyped-def]
        loaded.wait(30)
        return ui_session

    window = MainWindow(Settings.at(settings_file), session_factory=slow_model)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(lambda: not window.cancel_button.isHidden(), timeout=10_000)  # "Loading the model…" + Cancel
    qtbot.mouseClick(window.cancel_button, Qt.MouseButton.LeftButton)
    assert "Indexing will not start" in window.statusBar().currentMessage()
    loaded.set()
    qtbot.waitUntil(lambda: window.session is not None, timeout=30_000)
    qtbot.wait(1000)
    assert not window.indexing and window.summary is None
    with qtbot.waitSignal(window.indexFinished, timeout=INDEX_TIMEOUT_MS):
        window.reindex_action.trigger()  # asked for: it runs
    window.close()


def test_a_folder_whose_files_cannot_be_indexed_says_so_with_the_count(
    qtbot, make_window, index_in, tmp_path, make_img
):  # type: ignore[no-untyped-def]
    """Issue 13: a folder with no images said "No images are indexed in this folder yet"."""
    folder = tmp_path / "odd"
    folder.mkdir()
    (folder / "a.jpg").write_text("not a picture")
    (folder / "b.png").write_bytes(b"")
    window = make_window()
    index_in(window, folder)
    with qtbot.waitSignal(window.queryFinished, timeout=INDEX_TIMEOUT_MS):
        window.set_query_path(make_img(tmp_path / "query.jpg", seed=3))
    assert window.grid.placeholder == "No picture in this folder could be indexed: 2 files skipped (the list: Ctrl+K)."


def test_the_skipped_panel_closes_with_its_folder_and_has_a_toggle(qtbot, make_window, index_in, tmp_path, make_img):  # type: ignore[no-untyped-def]
    """Issue 13: the skipped-files panel, once opened, stayed open and empty across folders, with no View toggle."""
    odd, plain = tmp_path / "odd", tmp_path / "plain"
    make_img(odd / "good.jpg", seed=1)
    (odd / "bad.jpg").write_text("not a picture")
    make_img(plain / "good.jpg", seed=2)
    window = make_window()
    index_in(window, odd)
    window.show_skipped()
    assert window.skipped_dock.isVisible()
    view = next(m for m in window.menuBar().findChildren(QMenu) if m.title() == "&View")
    toggle = window.skipped_dock.toggleViewAction()  # named after the panel: "Skipped files (1)"
    assert toggle in view.actions() and toggle.isChecked()
    index_in(window, plain)
    assert not window.skipped_dock.isVisible() and not toggle.isChecked()
    toggle.trigger()
    assert window.skipped_dock.isVisible()
