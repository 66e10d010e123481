"""Preferences survive a restart; the settings store never touches the user's real configuration."""

from __future__ import annotations

from pathlib import Path

from explorer.ui.settings import MAX_RECENT_FOLDERS, Settings


def test_settings_survive_a_restart(qtbot, make_window, index_in, image_folder, settings_file, tmp_path):  # type: ignore[no-untyped-def]
    other = tmp_path / "other"
    other.mkdir()
    window = make_window()
    index_in(window, other)
    index_in(window, image_folder)
    window.k_spin.setValue(7)
    window.dim_combo.setCurrentIndex(window.dim_combo.findData(256))
    window.ranking_combo.setCurrentIndex(1)
    window.resize(760, 690)  # the offscreen platform's screen is 800x600: stay near it
    size = window.size()
    assert size.width() == 760  # not the default size, so restoring it is visible
    window.close()

    assert settings_file.exists()
    reopened = make_window(Settings.at(settings_file))
    assert reopened.k_spin.value() == 7
    assert reopened.dim_combo.currentData() == 256
    assert reopened.ranking_combo.currentData() is True
    assert reopened.folder == image_folder.resolve()
    assert [reopened.folder_combo.itemData(i) for i in range(reopened.folder_combo.count())] == [
        str(image_folder.resolve()),
        str(other.resolve()),
    ]
    assert reopened.size() == size
    # The last folder is re-indexed on start (incrementally: nothing to embed).
    qtbot.waitUntil(lambda: reopened.summary is not None, timeout=120_000)
    assert reopened.summary.report.embedded == 0 and reopened.summary.count == 12


def test_recent_folders_are_ordered_unique_and_capped(tmp_path: Path) -> None:
    settings = Settings.at(tmp_path / "s.ini")
    assert settings.recent_folders == [] and settings.last_folder is None
    for i in range(MAX_RECENT_FOLDERS + 3):
        settings.remember_folder(tmp_path / f"f{i}")
    settings.remember_folder(tmp_path / "f5")
    settings.sync()
    again = Settings.at(tmp_path / "s.ini")
    recent = again.recent_folders
    assert recent[0] == tmp_path / "f5" and again.last_folder == tmp_path / "f5"
    assert len(recent) == MAX_RECENT_FOLDERS and len(set(recent)) == len(recent)
    again.forget_folder(tmp_path / "f5")
    assert tmp_path / "f5" not in again.recent_folders and again.last_folder is None


def test_single_recent_folder_and_bad_values_read_back(tmp_path: Path) -> None:
    settings = Settings.at(tmp_path / "s.ini")
    settings.remember_folder(tmp_path / "only")
    settings.store.setValue("search/k", "not a number")
    settings.store.setValue("search/dim", "")
    settings.sync()
    again = Settings.at(tmp_path / "s.ini")
    assert again.recent_folders == [tmp_path / "only"]  # QSettings collapses one-element lists
    assert again.k == 20 and again.dim is None and again.binary is False and again.model_path is None


def test_environment_variable_selects_the_settings_file(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("RETRIEVAL_EXPLORER_SETTINGS", str(tmp_path / "env.ini"))
    settings = Settings()
    settings.k = 9
    settings.sync()
    assert (tmp_path / "env.ini").exists() and Settings.at(tmp_path / "env.ini").k == 9


def test_the_default_window_fits_a_small_laptop_screen(qtbot, settings_file, ui_session, monkeypatch):  # type: ignore[no-untyped-def]
    """Issue 13: the default window (1280 x 800) was taller than a 1366 x 768 laptop's screen."""
    from PySide6.QtCore import QRect
    from PySide6.QtGui import QScreen

    from explorer.ui.window import MainWindow

    monkeypatch.setattr(QScreen, "availableGeometry", lambda _screen: QRect(0, 0, 1366, 705))
    window = MainWindow(Settings.at(settings_file), session_factory=lambda _path: ui_session)
    qtbot.addWidget(window)
    assert window.sizeHint().width() <= 1366 and window.sizeHint().height() <= 705
    assert window.height() <= 705


def test_the_menus_are_built_from_the_action_table(qtbot, settings_file, ui_session):  # type: ignore[no-untyped-def]
    from PySide6.QtGui import QKeySequence
    from PySide6.QtWidgets import QMenu

    from explorer.app.actions import ACTIONS
    from explorer.ui.window import MainWindow

    window = MainWindow(Settings.at(settings_file), session_factory=lambda _path: ui_session)
    qtbot.addWidget(window)
    menus = {m.title(): m for m in window.menuBar().findChildren(QMenu)}
    for spec in ACTIONS:
        found = [a for a in menus[spec.menu].actions() if a.text() == spec.text]
        assert len(found) == 1, spec.text
        assert found[0].shortcut() == QKeySequence(spec.shortcut)
    assert window.reindex_action.text() == "&Re-index folder"  # attributes the window and tests use
    window.show_tab(1)
    assert window.tabs.currentIndex() == 1
