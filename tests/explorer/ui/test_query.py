"""Queries from every source (drop, local URL, pasted image data, pasted path) fill the grid in rank order."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image
from PySide6.QtCore import QMimeData, QPoint, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QGuiApplication, QImage
from PySide6.QtWidgets import QApplication

from explorer.ui.results_view import ResultRole

QUERY_TIMEOUT_MS = 60_000


def _drop(widget, mime: QMimeData) -> None:  # type: ignore[no-untyped-def]
    """Deliver drag-enter then drop, as a file manager does (Qt routes a drop to the widget that accepted
    the drag)."""
    args = (QPoint(20, 20), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    enter = QDragEnterEvent(*args)
    QApplication.sendEvent(widget, enter)
    assert enter.isAccepted()
    drop = QDropEvent(*args)
    QApplication.sendEvent(widget, drop)
    assert drop.isAccepted()


def _wait_query(qtbot, window, action):  # type: ignore[no-untyped-def]
    with qtbot.waitSignal(
        window.queryFinished, timeout=QUERY_TIMEOUT_MS, check_params_cb=lambda o: o.searched
    ) as blocker:
        action()
    return blocker.args[0]


def _row(r):  # type: ignore[no-untyped-def]
    # Re-embedding the same picture on the CPU may move cosine distances by ~1e-6 (thread scheduling in
    # the convolutions); ranks, files and Hamming distances must match exactly.
    return (r.rank, r.relpath, pytest.approx(r.cosine_distance, abs=1e-5), r.hamming_distance)


def _grid(window) -> list[tuple[int, str, float, int]]:  # type: ignore[no-untyped-def]
    model = window.grid_model
    rows = [model.index(i).data(ResultRole) for i in range(model.rowCount())]
    return [(r.rank, r.relpath, r.cosine_distance, r.hamming_distance) for r in rows]


def _expected(ranking) -> list[tuple[int, str, float, int]]:  # type: ignore[no-untyped-def]
    return [_row(r) for r in ranking.results]


def test_dropped_file_fills_the_grid_in_the_engines_rank_order(
    qtbot, make_window, index_in, image_folder, ui_session, make_img, tmp_path
):  # type: ignore[no-untyped-def]
    window = make_window()
    index_in(window, image_folder)
    query = make_img(tmp_path / "query.jpg", seed=3)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(query))])

    _wait_query(qtbot, window, lambda: _drop(window.query_area, mime))

    k = window.k_spin.value()
    expected = ui_session.query(query, image_folder, k=k)
    assert len(expected.float_ranking.results) == 12  # k=20 > 12 images: the whole folder, ranked
    assert _grid(window) == _expected(expected.float_ranking)
    assert [rank for rank, *_ in _grid(window)] == list(range(1, 13))
    assert window.query_area.caption.text() == "query.jpg"

    # The binary ranking comes from the same outcome, without another query.
    window.ranking_combo.setCurrentIndex(1)
    assert _grid(window) == _expected(expected.binary_ranking)

    # A smaller k searches again (with the kept embedding) and shows the top of the same ranking.
    _wait_query(qtbot, window, lambda: window.k_spin.setValue(5))
    assert _grid(window) == _expected(ui_session.query(query, image_folder, k=5).binary_ranking)


def test_dropped_text_url_and_pasted_path_are_queries(qtbot, make_window, index_in, image_folder, ui_session):  # type: ignore[no-untyped-def]
    window = make_window()
    index_in(window, image_folder)
    query = image_folder / "b" / "img_07.png"
    expected = _expected(ui_session.query(query, image_folder, k=window.k_spin.value()).float_ranking)

    mime = QMimeData()
    mime.setText(QUrl.fromLocalFile(str(query)).toString())  # a browser or terminal drag: a file:// URL as text
    outcome = _wait_query(qtbot, window, lambda: _drop(window.query_area, mime))
    assert outcome.label == "img_07.png"
    assert "b/img_07.png" not in [row[1] for row in _grid(window)]  # one of the folder's images: not its own result
    assert _grid(window) == expected

    QGuiApplication.clipboard().setText(f"  {query}\n")
    window.k_spin.setValue(3)
    outcome = _wait_query(qtbot, window, window.paste_action.trigger)
    assert outcome.k == 3
    assert _grid(window) == expected[:3]


def test_pasted_image_data_is_embedded_like_the_file(qtbot, make_window, index_in, image_folder, ui_session):  # type: ignore[no-untyped-def]
    window = make_window()
    index_in(window, image_folder)
    source = image_folder / "a" / "img_01.png"  # PNG: Qt and Pillow decode it to the same pixels
    QGuiApplication.clipboard().setImage(QImage(str(source)))

    outcome = _wait_query(qtbot, window, window.paste_query)

    assert outcome.label.startswith("pasted image 96×80")
    expected = ui_session.query(Image.open(source).convert("RGB"), image_folder, k=window.k_spin.value())
    assert [r[1] for r in _grid(window)] == [r.relpath for r in expected.float_ranking.results]


def test_a_dropped_folder_is_opened_and_indexed(qtbot, make_window, image_folder):  # type: ignore[no-untyped-def]
    window = make_window()
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(image_folder))])
    with qtbot.waitSignal(window.indexFinished, timeout=120_000) as blocker:
        _drop(window.query_area, mime)
    assert blocker.args[0].count == 12
    assert window.folder == image_folder.resolve()


def test_an_unreadable_query_is_reported_not_raised(qtbot, make_window, index_in, image_folder, tmp_path):  # type: ignore[no-untyped-def]
    window = make_window()
    index_in(window, image_folder)
    bad = tmp_path / "bad.jpg"
    bad.write_text("not a picture")
    with qtbot.waitSignal(window.queryFailed, timeout=QUERY_TIMEOUT_MS) as blocker:
        window.set_query_path(bad)
    assert "not an image" in blocker.args[0]
    assert window.grid_model.rowCount() == 0
    assert "cannot be read" in window.query_area.caption.text()


def test_query_before_choosing_a_folder_waits_for_one(qtbot, make_window, index_in, image_folder):  # type: ignore[no-untyped-def]
    window = make_window()
    query = image_folder / "a" / "img_00.jpg"
    with qtbot.waitSignal(window.queryFinished, timeout=QUERY_TIMEOUT_MS) as blocker:
        window.set_query_path(query)
    assert not blocker.args[0].searched
    assert window.grid_model.rowCount() == 0

    with qtbot.waitSignal(window.queryFinished, timeout=120_000, check_params_cb=lambda o: o.searched):
        window.open_folder(image_folder)
    assert "a/img_00.jpg" not in [row[1] for row in _grid(window)] and len(_grid(window)) > 0


def test_export_writes_the_shown_ranking(qtbot, make_window, index_in, image_folder, tmp_path):  # type: ignore[no-untyped-def]
    import csv
    import json

    window = make_window()
    index_in(window, image_folder)
    query = image_folder / "a" / "img_02.jpg"
    _wait_query(qtbot, window, lambda: window.set_query_path(query))
    shown = _grid(window)

    csv_path = window.export_results(tmp_path / "out.csv")
    assert csv_path is not None
    with open(csv_path, encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [(int(r["rank"]), r["relpath"], float(r["cosine_distance"]), int(r["hamming_distance"])) for r in rows] == [
        (rank, rel, pytest.approx(cos, abs=1e-6), ham) for rank, rel, cos, ham in shown
    ]
    window.ranking_combo.setCurrentIndex(1)
    doc = json.loads(Path(window.export_results(tmp_path / "out.json")).read_text())
    assert doc["ranking"] == "binary" and doc["query"] == str(query) and doc["dim"] == 1280
    assert [r["relpath"] for r in doc["results"]] == [r[1] for r in _grid(window)]


def test_a_non_picture_dropped_as_the_query_keeps_the_previous_results(
    qtbot, make_window, index_in, image_folder, tmp_path
):  # type: ignore[no-untyped-def]
    """Issue 13: a non-image dropped as the query wiped the results and said "cannot be read: ImageLoadError: not
    ar…", cut off, with the exception's class name."""
    window = make_window()
    index_in(window, image_folder)
    with qtbot.waitSignal(window.queryFinished, timeout=QUERY_TIMEOUT_MS, check_params_cb=lambda o: o.searched):
        window.set_query_path(image_folder / "a" / "img_02.jpg")
    shown = [r.relpath for r in window.grid_model.results]
    assert shown
    notes = tmp_path / "notes.jpg"
    notes.write_text("shopping list\n")
    with qtbot.waitSignal(window.queryFailed, timeout=QUERY_TIMEOUT_MS) as failed:
        window.set_query_path(notes)
    assert failed.args[0] == "not an image (text file)"
    assert [r.relpath for r in window.grid_model.results] == shown
    assert window.query_area.caption.text() == "img_02.jpg"
    assert window.statusBar().currentMessage() == (
        "notes.jpg cannot be used as a query: not an image (text file). The previous results stay."
    )


def test_the_indexing_outcome_is_not_overwritten_by_the_query_that_follows(qtbot, make_window, image_folder):  # type: ignore[no-untyped-def]
    """Issue 13: "Indexing cancelled: 224 images searchable so far…" was overwritten within milliseconds."""
    window = make_window()
    window.set_query_path(image_folder / "a" / "img_00.jpg")
    with qtbot.waitSignal(window.queryFinished, timeout=QUERY_TIMEOUT_MS, check_params_cb=lambda o: o.searched):
        window.open_folder(image_folder)
    assert window.statusBar().currentMessage().startswith(f"Indexed {image_folder.name}: 12 new")


def test_a_small_picture_is_previewed_at_its_size_not_blown_up(qtbot, make_img, tmp_path):  # type: ignore[no-untyped-def]
    """Issue 13: previews upscaled small images into blur."""
    from explorer.engine.search import SearchResult
    from explorer.ui.results_view import PreviewDialog
    from explorer.ui.thumbnails import ThumbnailCache

    path = make_img(tmp_path / "small.png", seed=1, size=(60, 40), fmt="PNG")
    thumbnails = ThumbnailCache()
    dialog = PreviewDialog(SearchResult(1, path, "small.png", 0.1, 10, 1), thumbnails)
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitUntil(lambda: not dialog.image.pixmap().isNull(), timeout=10_000)
    assert (dialog.image.pixmap().width(), dialog.image.pixmap().height()) == (60, 40)


def test_the_empty_grid_is_the_first_button(qtbot, make_window, image_folder, monkeypatch):  # type: ignore[no-untyped-def]
    """Issue 13: the first action (choose a folder) was a small combo box and a "…" button at the bottom left."""
    from PySide6.QtCore import QPoint, Qt
    from PySide6.QtWidgets import QFileDialog

    asked: list[str] = []

    def choose(_parent, caption, start):  # type: ignore[no-untyped-def]
        asked.append(caption)
        return str(image_folder)

    monkeypatch.setattr(QFileDialog, "getExistingDirectory", choose)
    window = make_window()
    assert window.folder is None and window.grid.placeholder.startswith("Click here to choose a folder")
    with qtbot.waitSignal(window.indexFinished, timeout=QUERY_TIMEOUT_MS):
        qtbot.mouseClick(window.grid.viewport(), Qt.MouseButton.LeftButton, pos=QPoint(40, 40))
    assert asked == ["Choose a folder of images"] and window.folder == image_folder.resolve()


def test_query_expansion_from_the_sidebar_ranks_as_the_engine_does(
    qtbot, make_window, index_in, image_folder, ui_session, tmp_path, settings_file
):  # type: ignore[no-untyped-def]
    window = make_window()
    index_in(window, image_folder)
    query = image_folder / "a" / "img_02.jpg"
    _wait_query(qtbot, window, lambda: window.set_query_path(query))
    plain = _grid(window)
    outcome = _wait_query(qtbot, window, lambda: window.sidebar.expand_box.setChecked(True))
    expected = ui_session.query(query, image_folder, k=window.controller.k, expand=2).float_ranking
    assert [r[1] for r in _grid(window)] == [r.relpath for r in expected.results]
    assert _grid(window) != plain and outcome.float_ranking is not None
    from explorer.ui.settings import Settings

    assert Settings.at(settings_file).expand  # remembered for the next start


def test_more_and_less_like_this_refine_the_query(qtbot, make_window, index_in, image_folder, ui_session):  # type: ignore[no-untyped-def]
    from explorer.engine.multi_query import combined_embedding

    window = make_window()
    index_in(window, image_folder)
    query = image_folder / "a" / "img_02.jpg"
    _wait_query(qtbot, window, lambda: window.set_query_path(query))
    first, second = [image_folder / r[1] for r in _grid(window)[:2]]
    _wait_query(qtbot, window, lambda: window.grid.exampleRequested.emit(first, True))
    outcome = _wait_query(qtbot, window, lambda: window.grid.exampleRequested.emit(second, False))
    assert window.query_area.caption.text() == "img_02.jpg + 1 more like it, 1 not"
    shown = [image_folder / r[1] for r in _grid(window)]
    assert first not in shown and second not in shown and query not in shown  # seen already: not results
    assert len(shown) == min(window.controller.k, 12 - 3)  # every other picture of the folder of 12
    emb = combined_embedding(
        [ui_session.embed_query(query), ui_session.embed_query(first)], [ui_session.embed_query(second)]
    )
    expected = ui_session.query(emb, image_folder, k=window.controller.k + 2, exclude=query).float_ranking
    assert shown == [r.path for r in expected.results if r.path not in (first, second)][: window.controller.k]
    assert len(outcome.float_rows) == len(shown)  # the plots mark the results shown, not the examples
    _wait_query(qtbot, window, lambda: window.set_query_path(first))  # a new query starts without examples
    assert window.controller.examples == [] and window.query_area.caption.text() == first.name


def test_results_are_labelled_into_a_class_and_the_wizard_opens_on_them(
    qtbot, make_window, index_in, image_folder, tmp_path, monkeypatch
):  # type: ignore[no-untyped-def]
    from PySide6.QtWidgets import QInputDialog

    from explorer.engine.labelled_set import classes

    window = make_window()
    index_in(window, image_folder)
    _wait_query(qtbot, window, lambda: window.set_query_path(image_folder / "a" / "img_02.jpg"))
    root = tmp_path / "labels"
    root.mkdir()
    window.settings.labelled_folder = root
    picked = [image_folder / r[1] for r in _grid(window)[:3]]
    monkeypatch.setattr(QInputDialog, "getItem", lambda *_args, **_kw: ("robin", True))
    window.grid.labelRequested.emit(picked)  # what "Add these 3 pictures to a class…" sends
    qtbot.waitUntil(lambda: classes(root) == {"robin": 3}, timeout=QUERY_TIMEOUT_MS)
    assert sorted(p.resolve() for p in (root / "robin").iterdir()) == sorted(p.resolve() for p in picked)
    assert all(p.is_symlink() for p in (root / "robin").iterdir())  # linked by default
    qtbot.waitUntil(lambda: "into robin" in window.statusBar().currentMessage(), timeout=QUERY_TIMEOUT_MS)
    window.label_copies_action.trigger()  # File ▸ Copy pictures into classes
    assert window.label_copies_action.isChecked() and window.settings.label_copies
    monkeypatch.setattr(QInputDialog, "getItem", lambda *_args, **_kw: ("wren", True))
    window.grid.labelRequested.emit(picked[:1])
    qtbot.waitUntil(lambda: classes(root).get("wren") == 1, timeout=QUERY_TIMEOUT_MS)
    assert not next((root / "wren").iterdir()).is_symlink()
    window.fine_tune_labelled()
    wizard = window.fine_tune_wizard
    assert wizard.folder_page.row.path() == root
    wizard.close()


def test_a_distance_cut_off_says_that_nothing_here_is_close(qtbot, make_window, index_in, image_folder, settings_file):  # type: ignore[no-untyped-def]
    window = make_window()
    index_in(window, image_folder)
    outcome = _wait_query(qtbot, window, lambda: window.set_query_path(image_folder / "a" / "img_02.jpg"))
    distances = [r.cosine_distance for r in outcome.float_ranking.results]
    limit = round((distances[0] + distances[-1]) / 2, 2)
    window.sidebar.cutoff.setValue(limit)  # the same answer, cut in the grid
    shown = [r[3] for r in _grid(window)]
    assert 0 < len(shown) < len(distances) and all(r[2] <= limit for r in _grid(window))
    window.sidebar.cutoff.setValue(0.01)
    assert _grid(window) == [] and "Nothing here is within cosine distance 0.01" in window.grid.placeholder
    from explorer.ui.settings import Settings

    assert Settings.at(settings_file).cutoff == 0.01
    window.sidebar.cutoff.setValue(0.0)  # "no limit"
    assert len(_grid(window)) == len(distances)
