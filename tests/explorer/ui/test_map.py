"""The Map tab: every image of the folder placed and coloured by sub-folder; hover names a point, a click searches."""

from __future__ import annotations

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

    at = panel.plot_widget.mapFromScene(scene)
    with qtbot.waitSignal(window.queryFinished, timeout=TIMEOUT_MS, check_params_cb=lambda o: o.searched) as got:
        qtbot.mouseClick(panel.plot_widget.viewport(), Qt.MouseButton.LeftButton, pos=at)
    assert window.controller.source == layout.paths[row]
    marked = panel.neighbours.data
    assert len(marked) == len(got.args[0].float_ranking.results) and len(panel.query_mark.data) == 1
