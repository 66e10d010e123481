"""The Map tab: every image of the folder placed and coloured by sub-folder; hover names a point, a click searches."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPointF, Qt

TIMEOUT_MS = 60_000


def test_the_map_shows_the_folder_and_a_click_searches_with_a_point(qtbot, make_window, index_in, image_folder):  # type: ignore[no-untyped-def]
    window = make_window()
    qtbot.waitUntil(lambda: window.map_panel is not None, timeout=TIMEOUT_MS)
    with qtbot.waitSignal(window.mapChanged, timeout=TIMEOUT_MS, check_params_cb=lambda layout: layout is not None):
        index_in(window, image_folder)
    panel = window.map_panel
    window.tabs.setCurrentWidget(panel)
    layout = panel.layout_data
    assert layout is not None and len(layout.paths) == 12 and layout.groups == ["a", "b"]
    assert sum(len(item.data) for item in panel.groups) == 12 and "12</b> images" in panel.header.text()

    row = 5
    view = panel.plot.getViewBox()
    scene = view.mapViewToScene(QPointF(float(layout.xy[row, 0]), float(layout.xy[row, 1])))
    assert panel.nearest(scene) == row
    panel._last_hover = 0.0
    panel._hovered(scene)
    assert panel.hover_label.text().startswith(layout.paths[row].name)
    qtbot.waitUntil(lambda: panel.hover_picture.pixmap() is not None and not panel.hover_picture.pixmap().isNull())

    scene = view.mapViewToScene(QPointF(float(layout.xy[row, 0]), float(layout.xy[row, 1])))  # laid out again
    assert panel.nearest(scene) == row
    at = panel.plot_widget.mapFromScene(scene)
    with qtbot.waitSignal(window.queryFinished, timeout=TIMEOUT_MS, check_params_cb=lambda o: o.searched) as got:
        qtbot.mouseClick(panel.plot_widget.viewport(), Qt.MouseButton.LeftButton, pos=at)
    assert window.controller.source == layout.paths[row]
    marked = panel.neighbours.data
    assert len(marked) == len(got.args[0].float_ranking.results) and len(panel.query_mark.data) == 1

    panel.colour_by.setCurrentIndex(1)  # by cosine distance to the query: the query's own picture is nearest
    distances = panel._distances(binary=False)
    assert distances is not None and len(distances) == 12 and distances[row] == 0.0
    assert panel._categories[row] == 0 and panel._categories.max() > 0
    assert sum(len(item.data) for item in panel.groups) == 12
    panel.colour_by.setCurrentIndex(2)  # Hamming
    assert panel._categories[row] == 0 and "bits" in panel.legend.items[0][1].text
    panel.colour_by.setCurrentIndex(0)
    assert panel._categories.tolist() == layout.group_of.tolist()


def test_an_area_of_the_map_goes_into_a_class(qtbot, make_window, index_in, image_folder, tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    from PySide6.QtWidgets import QInputDialog

    from explorer.engine.labelled_set import classes

    window = make_window()
    qtbot.waitUntil(lambda: window.map_panel is not None, timeout=TIMEOUT_MS)
    with qtbot.waitSignal(window.mapChanged, timeout=TIMEOUT_MS, check_params_cb=lambda layout: layout is not None):
        index_in(window, image_folder)
    panel = window.map_panel
    layout = panel.layout_data
    assert not panel.label_button.isEnabled()
    panel.select_button.setChecked(True)
    xs, ys = layout.xy[:, 0], layout.xy[:, 1]
    # a box around the left half of the points
    x0, x1, y0, y1 = float(xs.min()) - 1, float(np.median(xs)), float(ys.min()) - 1, float(ys.max()) + 1
    panel.roi.setPos([x0, y0])
    panel.roi.setSize([x1 - x0, y1 - y0])
    expected = {layout.paths[i] for i in np.flatnonzero(xs <= x1)}
    assert set(panel.selected_paths()) == expected and panel.label_button.isEnabled()
    assert panel.selection_label.text() == f"{len(expected)} images in the box"
    root = tmp_path / "labels"
    root.mkdir()
    window.settings.labelled_folder = root
    monkeypatch.setattr(QInputDialog, "getItem", lambda *_args, **_kw: ("left", True))
    qtbot.mouseClick(panel.label_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: classes(root) == {"left": len(expected)}, timeout=TIMEOUT_MS)
    panel.select_button.setChecked(False)
    assert panel.roi is None and panel.selected_paths() == [] and not panel.label_button.isEnabled()
