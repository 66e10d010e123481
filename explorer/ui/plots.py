"""Float against binary for one query: what binarizing the embedding does to its neighbours.

Three views of the same numbers (`QueryOutcome`, i.e. `Collection.all_distances` and the two rankings):
a scatter of every image's cosine distance against its Hamming distance with each ranking's top-k marked,
the sorted distance curves of each ranking, and the overlap of the two top-k lists as one number. A point
far from the diagonal trend is an image that binarization moves; the overlap says how many neighbours
survive.

pyqtgraph takes about a second to import, so this module is imported only after the window is on screen
(see `MainWindow`), never at start-up.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QStackedWidget, QVBoxLayout, QWidget

from explorer.ui.plot_style import ALL_COLOR, BINARY_COLOR, FLOAT_COLOR, add_legend, style_plot

if TYPE_CHECKING:
    from explorer.app.analysis import QueryOutcome


class FloatBinaryPanel(QWidget):
    """Scatter (cosine vs Hamming), ranked distance curves, and the top-k overlap for the current query."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.header = QLabel()
        self.header.setWordWrap(True)
        self.header.setTextFormat(Qt.TextFormat.RichText)
        self.overlap: int | None = None

        self.canvas = pg.GraphicsLayoutWidget()
        self.canvas.ci.setContentsMargins(4, 4, 4, 4)
        self.scatter = self.canvas.addPlot(row=0, col=0, colspan=2)
        style_plot(
            self.scatter, "Every image: float against binary distance", "cosine distance", "Hamming distance (bits)"
        )
        # Top left: near neighbours have both distances small, so that corner stays empty.
        self.legend = add_legend(self.scatter, (8, 8))
        self.all_points = pg.ScatterPlotItem(size=4, pen=None, brush=pg.mkBrush(ALL_COLOR), name="all images")
        self.float_top = pg.ScatterPlotItem(
            size=11, pen=pg.mkPen(FLOAT_COLOR, width=1.6), brush=None, symbol="o", name="float top-k"
        )
        self.binary_top = pg.ScatterPlotItem(
            size=9,
            pen=pg.mkPen(BINARY_COLOR, width=1.6),
            brush=pg.mkBrush(BINARY_COLOR),
            symbol="x",
            name="binary top-k",
        )
        for item in (self.all_points, self.float_top, self.binary_top):
            self.scatter.addItem(item)

        self.cos_plot = self.canvas.addPlot(row=1, col=0)
        style_plot(self.cos_plot, "Float ranking", "rank", "cosine distance")
        self.cos_curve = self.cos_plot.plot(pen=pg.mkPen(FLOAT_COLOR, width=2))
        self.cos_curve.setDownsampling(auto=True)
        self.cos_curve.setClipToView(True)
        self.ham_plot = self.canvas.addPlot(row=1, col=1)
        style_plot(self.ham_plot, "Binary ranking", "rank", "Hamming (bits)")
        self.ham_curve = self.ham_plot.plot(pen=pg.mkPen(BINARY_COLOR, width=2))
        self.ham_curve.setDownsampling(auto=True)
        self.ham_curve.setClipToView(True)
        self.k_lines = [pg.InfiniteLine(angle=90, pen=pg.mkPen("#888", style=Qt.PenStyle.DashLine)) for _ in range(2)]
        self.cos_plot.addItem(self.k_lines[0])
        self.ham_plot.addItem(self.k_lines[1])
        self.canvas.ci.layout.setRowStretchFactor(0, 3)
        self.canvas.ci.layout.setRowStretchFactor(1, 2)

        # Empty axes look broken: until there is something to plot, a sentence says what will be here.
        self.placeholder = QLabel()
        self.placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.placeholder.setWordWrap(True)
        self.placeholder.setStyleSheet("color: gray; padding: 24px")
        self.stack = QStackedWidget()
        self.stack.addWidget(self.placeholder)
        self.stack.addWidget(self.canvas)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.header)
        layout.addWidget(self.stack, 1)
        self.clear()

    def clear(
        self,
        message: str = "Float against binary\n\nAfter a query, this shows how the binary codes "
        "(1 bit per dimension) rank the folder compared with the float embeddings.",
    ) -> None:
        self.overlap = None
        self.header.setText("")
        self.header.hide()
        self.placeholder.setText(message)
        self.stack.setCurrentWidget(self.placeholder)
        for item in (self.all_points, self.float_top, self.binary_top):
            item.setData(x=[], y=[])
        self.cos_curve.setData([], [])
        self.ham_curve.setData([], [])
        for line in self.k_lines:
            line.hide()

    def show_outcome(self, outcome: QueryOutcome) -> None:
        if not outcome.searched or outcome.collection_size == 0:
            self.clear()
            return
        # Sorted and sampled on the worker (explorer.app.analysis.run_query): at a million images the sorts alone
        # held the GUI thread for about 250 ms.
        cos = np.asarray(outcome.cosine, np.float64)
        ham = np.asarray(outcome.hamming, np.float64)
        sample = outcome.scatter_rows
        self.all_points.setData(x=cos[sample], y=ham[sample])
        sampled = f" (a sample of {len(sample):,})" if len(sample) < len(cos) else ""
        self.scatter.setTitle(f"Every image{sampled}: float against binary distance", size="10pt")
        self.float_top.setData(x=cos[outcome.float_rows], y=ham[outcome.float_rows])
        self.binary_top.setData(x=cos[outcome.binary_rows], y=ham[outcome.binary_rows])
        ranks = np.arange(1, len(cos) + 1, dtype=np.float64)
        self.cos_curve.setData(ranks, outcome.cosine_sorted)
        self.ham_curve.setData(ranks, outcome.hamming_sorted)
        k = len(outcome.float_rows)
        shown = float(min(len(cos), max(3 * k, 30)))
        for plot, values, line in (
            (self.cos_plot, outcome.cosine_sorted, self.k_lines[0]),
            (self.ham_plot, outcome.hamming_sorted, self.k_lines[1]),
        ):
            line.setValue(k + 0.5)
            line.show()
            plot.setXRange(1, shown, padding=0.02)
            top = values[: int(shown)]
            plot.setYRange(float(top.min()), float(top.max()) if top.max() > top.min() else float(top.min()) + 1)
        self.scatter.enableAutoRange()
        self.stack.setCurrentWidget(self.canvas)
        self.header.show()
        self.overlap = outcome.overlap
        share = self.overlap / k if k else 0.0
        self.header.setText(
            f"<span style='font-size:15px'><b>{self.overlap} of {k}</b></span> float neighbours are kept by "
            f"the binary ranking ({share:.0%}) at {outcome.dim}-d: "
            f"{outcome.dim // 8} bytes per image instead of {4 * outcome.dim:,}."
        )
