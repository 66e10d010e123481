"""Index ▸ Find duplicates: the copies ticked, the keeper not; moved to a folder and put back; a threshold moved."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

TIMEOUT_MS = 60_000


def test_copies_are_found_moved_and_put_back(qtbot, make_window, index_in, make_img, tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    from PySide6.QtWidgets import QFileDialog

    folder = tmp_path / "photos"
    original = make_img(folder / "IMG_1.jpg", seed=3, size=(320, 240))
    with Image.open(original) as im:
        im.resize((160, 120)).save(folder / "IMG_1 small.jpg", quality=90)
    for seed in range(4):
        make_img(folder / f"other{seed}.jpg", seed=40 + seed, size=(320, 240))
    window = make_window()
    index_in(window, folder)
    window.find_duplicates()
    dialog = window.duplicates_dialog
    qtbot.waitUntil(lambda: dialog.report is not None, timeout=TIMEOUT_MS)
    assert dialog.tree.topLevelItemCount() == 1
    group = dialog.tree.topLevelItem(0)
    keeper = group.child(0).text(0)
    assert group.childCount() == 2 and keeper.startswith("IMG_1.jpg") and keeper.endswith("keep") and "kB" in keeper
    assert dialog.ticked() == [folder / "IMG_1 small.jpg"]
    qtbot.waitUntil(lambda: not group.child(1).icon(0).isNull(), timeout=TIMEOUT_MS)  # each picture shown

    copies = tmp_path / "copies"
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *_a, **_k: str(copies))
    with qtbot.waitSignal(dialog.moved, timeout=TIMEOUT_MS):
        dialog.move_button.click()
    assert (copies / "IMG_1 small.jpg").exists() and not (folder / "IMG_1 small.jpg").exists()
    with qtbot.waitSignal(dialog.moved, timeout=TIMEOUT_MS):
        dialog.undo_button.click()
    assert (folder / "IMG_1 small.jpg").exists() and not (copies / "IMG_1 small.jpg").exists()

    with qtbot.waitSignal(dialog.searched, timeout=TIMEOUT_MS):
        dialog.correlation.setValue(1.0)  # nothing is that alike: no copies at this threshold
    assert dialog.tree.topLevelItemCount() == 0 and dialog.report.of_kind("duplicates") == []
    dialog.close()
    assert Path(original).exists()
