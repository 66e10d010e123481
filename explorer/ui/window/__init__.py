"""The main window as a package: the window (a view of explorer.app.window_controller), its sidebar, status strip,
menus and results actions."""

from explorer.ui.window.main_window import APP_TITLE, MainWindow, app_icon, default_session_factory

__all__ = ["APP_TITLE", "MainWindow", "app_icon", "default_session_factory"]
