"""One look for every plot in the window: colours for float and binary, titles, axes, legends."""

from __future__ import annotations

import pyqtgraph as pg

FLOAT_COLOR = "#1f6fb4"
BINARY_COLOR = "#e8710a"
ALL_COLOR = (120, 120, 120, 110)
TITLE_SIZE = "10pt"
LEGEND_TEXT = "8pt"
LEGEND_BRUSH = (255, 255, 255, 210)

pg.setConfigOptions(background="w", foreground="#333333", antialias=True)


def style_plot(plot: pg.PlotItem, title: str, x: str, y: str, grid: bool = False) -> None:
    """Title, axis labels, no context menu, no SI prefixes. Grid lines only where asked: they triple the paint
    time, and the GUI thread pays it (the Recall@K plot has a dozen points; the scatter thousands)."""
    plot.setTitle(title, size=TITLE_SIZE)
    plot.setLabel("bottom", x)
    plot.setLabel("left", y)
    plot.setMenuEnabled(False)
    plot.hideButtons()  # the "A" (auto-range) button: every plot here ranges itself
    for axis in ("bottom", "left"):
        plot.getAxis(axis).enableAutoSIPrefix(False)  # "(x0.001)" on a distance axis only confuses
    if grid:
        plot.showGrid(x=True, y=True, alpha=0.15)


def add_legend(plot: pg.PlotItem, offset: tuple[int, int]) -> pg.LegendItem:
    return plot.addLegend(offset=offset, labelTextSize=LEGEND_TEXT, brush=LEGEND_BRUSH)
