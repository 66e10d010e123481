"""The explorer window (PySide6): a thin layer over `explorer.engine`.

`main_window.MainWindow` is the window; `workers` runs every engine call off the GUI thread; `analysis`
turns the engine's answers into what the views draw; `query_area`, `results_view`, `plots`, `dims_panel`
and `thumbnails` are the views; `settings` keeps preferences between runs. Nothing here imports torch or
pyqtgraph at import time: the window must be on screen before either is loaded.
"""
