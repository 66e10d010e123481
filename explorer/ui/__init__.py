"""The explorer window (PySide6): views of the Qt-free application layer (`explorer.app`).

`window` is the main window (a view of `explorer.app.window_controller`: its sidebar, status strip, menus and
results actions); `wizard` the fine-tune wizard, one page per module; `workers` runs every engine call off the GUI
thread (`QtExecutor`); `query_area`, `results_view`, `plots`, `dims_panel` and `thumbnails` are the views;
`settings` keeps preferences between runs. Nothing here imports torch or pyqtgraph at import time: the window must
be on screen before either is loaded.
"""
