"""The window's library: a photo written into a watched folder is found without a click; several folders are
searched as one; a folder whose drive is away is listed offline and still searched."""

from __future__ import annotations

import shutil
from pathlib import Path

from PySide6.QtCore import Qt

from explorer.ui.results_view import ResultRole

TIMEOUT_MS = 60_000


def grid_paths(window) -> list[Path]:  # type: ignore[no-untyped-def]
    model = window.grid_model
    return [Path(model.index(i).data(ResultRole).path) for i in range(model.rowCount())]


def test_a_photo_written_into_the_folder_is_searchable_without_a_click(
    qtbot, make_window, index_in, image_folder, make_img, tmp_path
):  # type: ignore[no-untyped-def]
    window = make_window()
    index_in(window, image_folder)
    query = make_img(tmp_path / "query.jpg", seed=77)
    with qtbot.waitSignal(window.queryFinished, timeout=TIMEOUT_MS, check_params_cb=lambda o: o.searched):
        window.set_query_path(query)
    assert window.controller.library.modes[image_folder.resolve()].events  # watched by the OS, not rescanned
    copy = image_folder / "b" / "arrived.jpg"
    shutil.copyfile(query, copy)  # the same picture arrives in the folder: it must become the first result
    qtbot.waitUntil(lambda: grid_paths(window)[:1] == [copy], timeout=TIMEOUT_MS)
    assert len(window.controller.session.collection(image_folder)) == 13
    copy.unlink()
    qtbot.waitUntil(lambda: copy not in grid_paths(window), timeout=TIMEOUT_MS)


def test_the_library_is_searched_as_one_and_shows_folders_that_are_away(
    qtbot, make_window, index_in, make_img, tmp_path
):  # type: ignore[no-untyped-def]
    home, usb = tmp_path / "home" / "photos", tmp_path / "usb" / "photos"
    for seed in range(8):
        make_img((home if seed < 4 else usb) / f"p{seed}.jpg", seed=seed)
    window = make_window()
    index_in(window, home)
    library = window.controller.library
    window.add_folder_to_library()  # Library ▸ Add this folder to the library
    library.add(usb, home)  # what Library ▸ Add a folder… does once the dialog answered
    panel = window.library_panel
    qtbot.waitUntil(lambda: panel.list.count() == 2 and "8 images" in panel.summary.text(), timeout=TIMEOUT_MS)
    assert not window.library_dock.isHidden()
    with qtbot.waitSignal(window.queryFinished, timeout=TIMEOUT_MS, check_params_cb=lambda o: o.searched):
        window.set_query_path(home / "p1.jpg")
    assert all(p.is_relative_to(home) for p in grid_paths(window))  # the folder alone
    with qtbot.waitSignal(window.queryFinished, timeout=TIMEOUT_MS, check_params_cb=lambda o: o.searched) as got:
        window.library_action.trigger()
    assert window.library_action.isChecked() and panel.search_box.isChecked()
    paths = grid_paths(window)
    assert {p.parent for p in paths} == {home, usb} and home / "p1.jpg" not in paths
    assert len(got.args[0].cosine) == 7  # the plots show the whole library, the query's own picture left out
    with qtbot.waitSignal(window.queryFinished, timeout=TIMEOUT_MS, check_params_cb=lambda o: o.searched):
        panel.list.item(1).setCheckState(Qt.CheckState.Unchecked)  # a chosen part: the second drive left out
    assert {p.parent for p in grid_paths(window)} == {home}
    with qtbot.waitSignal(window.queryFinished, timeout=TIMEOUT_MS, check_params_cb=lambda o: o.searched):
        panel.list.item(1).setCheckState(Qt.CheckState.Checked)

    (tmp_path / "usb").rename(tmp_path / "unplugged")
    library.refresh()
    texts = [panel.list.item(i).text() for i in range(2)]
    assert "offline" not in texts[0] and "offline: its drive is away" in texts[1]
    with qtbot.waitSignal(window.queryFinished, timeout=TIMEOUT_MS, check_params_cb=lambda o: o.searched):
        window.controller.set_k(7)
    assert {p.parent for p in grid_paths(window)} == {home, usb}  # still searched, from its index
