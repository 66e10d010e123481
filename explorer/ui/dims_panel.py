"""Dimension against dimension: what a shorter (or binary) embedding costs, for this query and this folder.

Left, one row per nested dimension of the model: the float and the binary top-k at that dimension as
thumbnail strips, each with its storage per image and how many of the full-dimension float top-k it keeps.
Right, for a labelled folder (one sub-folder per class), Recall@1 and Recall@4 of the folder against
itself per dimension, float and binary: the paper's dimension figure, on the user's own photos.

Imports pyqtgraph, so, like `plots`, it is only imported once the window is showing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QFrame,
    QGridLayout,
    QLabel,
    QScrollArea,
    QSplitter,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from explorer.ui.plot_style import BINARY_COLOR, FLOAT_COLOR, add_legend, style_plot
from explorer.ui.results_view import RankingModel, ResultsView
from explorer.ui.thumbnails import ThumbnailCache

if TYPE_CHECKING:
    from explorer.app.analysis import DimStrip, QueryOutcome, RecallTable

STRIP_THUMB = 64


def _message() -> QLabel:
    label = QLabel()
    label.setAlignment(Qt.AlignmentFlag.AlignCenter)
    label.setWordWrap(True)
    label.setStyleSheet("color: gray; padding: 24px")
    return label


def human_bytes(n: int) -> str:
    return f"{n} B" if n < 1024 else f"{n / 1024:g} KiB"


class _Strip(QWidget):
    """One (dimension, representation) cell: a caption and a horizontal strip of neighbours."""

    def __init__(self, thumbnails: ThumbnailCache, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.caption = QLabel()
        self.model = RankingModel(thumbnails, STRIP_THUMB, self)
        self.view = ResultsView(self.model, compact=True)
        self.view.setMinimumWidth(100)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(1)
        layout.addWidget(self.caption)
        layout.addWidget(self.view)

    def show_strip(self, strip: DimStrip | None) -> None:
        if strip is None:
            self.model.set_results([])
            self.caption.setText("")
            return
        self.model.set_results(strip.ranking.results)
        self.caption.setText(f"{human_bytes(strip.bytes_per_image)}/image · keeps <b>{strip.overlap}/{strip.k}</b>")
        self.caption.setToolTip(
            f"{strip.overlap} of these {strip.k} neighbours are also in the top {strip.k} of the full-dimension "
            f"float ranking; storing this representation costs {strip.bytes_per_image:,} bytes per image."
        )


class DimensionsPanel(QWidget):
    """Neighbour strips per nested dimension, and Recall@K per dimension for labelled folders."""

    previewRequested = Signal(object)  # SearchResult, from any strip
    queryRequested = Signal(object)  # Path

    def __init__(self, thumbnails: ThumbnailCache, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.thumbnails = thumbnails
        self.dims: list[int] = []
        self.strips: dict[tuple[int, bool], _Strip] = {}
        self.recall: RecallTable | None = None

        self.strip_header = QLabel()
        self.strip_header.setWordWrap(True)
        self.grid_host = QWidget()
        self.grid = QGridLayout(self.grid_host)
        self.grid.setContentsMargins(6, 6, 6, 6)
        self.grid.setHorizontalSpacing(10)
        self.grid.setVerticalSpacing(6)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setWidget(self.grid_host)
        strips = QWidget()
        strips_layout = QVBoxLayout(strips)
        strips_layout.setContentsMargins(0, 0, 0, 0)
        strips_layout.addWidget(self.strip_header)
        strips_layout.addWidget(scroll, 1)
        self.strips_placeholder = _message()
        self.left = QStackedWidget()
        self.left.addWidget(self.strips_placeholder)
        self.left.addWidget(strips)

        self.recall_plot = pg.PlotWidget()
        plot = self.recall_plot.getPlotItem()
        style_plot(plot, "Recall@K of this folder", "embedding dimension", "Recall@K", grid=True)
        plot.setYRange(0, 1.02, padding=0)
        add_legend(plot, (-8, -8))
        self.recall_curves: dict[tuple[str, int], pg.PlotDataItem] = {}
        for kind, color in (("float", FLOAT_COLOR), ("binary", BINARY_COLOR)):
            for k, style, symbol in ((1, Qt.PenStyle.SolidLine, "o"), (4, Qt.PenStyle.DashLine, "t")):
                self.recall_curves[(kind, k)] = plot.plot(
                    [],
                    [],
                    pen=pg.mkPen(color, width=2, style=style),
                    symbol=symbol,
                    symbolSize=7,
                    symbolBrush=color,
                    symbolPen=None,
                    name=f"{kind} R@{k}",
                )
        self.recall_note = QLabel()
        self.recall_note.setWordWrap(True)
        self.recall_placeholder = _message()
        self.recall_stack = QStackedWidget()
        self.recall_stack.addWidget(self.recall_placeholder)
        self.recall_stack.addWidget(self.recall_plot)
        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.setContentsMargins(0, 0, 0, 0)
        right_layout.addWidget(self.recall_stack, 1)
        right_layout.addWidget(self.recall_note)

        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(self.left)
        splitter.addWidget(right)
        splitter.setStretchFactor(0, 5)
        splitter.setStretchFactor(1, 2)
        splitter.setSizes([720, 300])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(splitter)
        self.clear_query()
        self.show_recall(None, "")

    # -- rows -------------------------------------------------------------------------------------------
    def set_dims(self, dims: list[int]) -> None:
        """Rebuild one row per nested dimension (when the model changes)."""
        if dims == self.dims:
            return
        while self.grid.count():
            item = self.grid.takeAt(0)
            widget = item.widget() if item is not None else None
            if widget is not None:
                widget.deleteLater()
        self.strips.clear()
        self.dims = list(dims)
        for col, text in ((1, "Float (cosine)"), (2, "Binary (Hamming)")):
            head = QLabel(f"<b>{text}</b>")
            self.grid.addWidget(head, 0, col)
        for row, d in enumerate(self.dims, start=1):
            self.grid.addWidget(QLabel(f"<b>{d}-d</b>"), row, 0, Qt.AlignmentFlag.AlignTop)
            for col, binary in ((1, False), (2, True)):
                strip = _Strip(self.thumbnails)
                strip.view.previewRequested.connect(self.previewRequested)
                strip.view.queryRequested.connect(self.queryRequested)
                self.strips[(d, binary)] = strip
                self.grid.addWidget(strip, row, col)
        self.grid.setColumnStretch(1, 1)
        self.grid.setColumnStretch(2, 1)
        self.grid.setRowStretch(len(self.dims) + 1, 1)
        # One scroll for every strip: rank i stays under rank i at every dimension, so they can be compared
        # (each strip scrolling on its own made 12 separate scroll bars to line up by hand).
        bars = [strip.view.horizontalScrollBar() for strip in self.strips.values()]
        for bar in bars:
            bar.valueChanged.connect(lambda value, bars=bars: [b.setValue(value) for b in bars if b.value() != value])

    def strip_model(self, dim: int, binary: bool) -> RankingModel:
        return self.strips[(dim, binary)].model

    def clear_query(
        self,
        message: str = "Dimension against dimension\n\nAfter a query, this shows its neighbours when only the "
        "first 64, 128, … dimensions of the embedding are kept, as floats and as bits, and what each costs "
        "to store.",
    ) -> None:
        for strip in self.strips.values():
            strip.show_strip(None)
        self.strips_placeholder.setText(message)
        self.left.setCurrentWidget(self.strips_placeholder)

    def show_outcome(self, outcome: QueryOutcome) -> None:
        if not outcome.strips:
            self.clear_query()
            return
        self.set_dims(sorted({s.dim for s in outcome.strips}))
        by_key = {(s.dim, s.binary): s for s in outcome.strips}
        for key, strip in self.strips.items():
            strip.show_strip(by_key.get(key))
        full = max(self.dims)
        self.strip_header.setText(
            f"The top {outcome.k} of “{outcome.label}” using only the first d dimensions. “Keeps” counts the "
            f"neighbours shared with the full {full}-d float ranking. Storage: 4 bytes per float dimension, "
            "1 bit per binary one."
        )
        self.left.setCurrentIndex(1)  # the strips

    # -- recall -----------------------------------------------------------------------------------------
    def show_recall(self, table: RecallTable | None, message: str) -> None:
        """Draw the folder's Recall@K per dimension, or explain why there is none."""
        self.recall = table
        plot = self.recall_plot.getPlotItem()
        if table is None or not table.dims:
            for curve in self.recall_curves.values():
                curve.setData([], [])
            self.recall_note.setText("")
            self.recall_placeholder.setText(message)
            self.recall_stack.setCurrentWidget(self.recall_placeholder)
            return
        self.recall_stack.setCurrentWidget(self.recall_plot)
        # Evenly spaced, labelled with the dimension: on a log axis 1024 and 1280 would collide.
        x = np.arange(len(table.dims), dtype=np.float64)
        for (kind, k), curve in self.recall_curves.items():
            curve.setData(x, table.series(kind == "binary", k))
        plot.getAxis("bottom").setTicks([[(float(v), str(d)) for v, d in zip(x, table.dims, strict=True)]])
        plot.setXRange(-0.4, float(x.max()) + 0.6, padding=0)  # room for the last tick's label
        # The axis spans the values with a little room, not 0..1: curves between 0.85 and 0.99 filled a tenth of it.
        values = np.concatenate([table.series(kind == "binary", k) for kind, k in self.recall_curves])
        low = max(0.0, float(values.min()) - 0.05) if values.size else 0.0
        plot.setYRange(low, 1.0 + (1.0 - low) * 0.04, padding=0)
        sample = f" (a random {table.items:,} of {table.sampled_from:,})" if table.sampled_from else ""
        full = table.dims[-1]
        f1, b1 = table.cosine[full][1], table.binary[full][1]
        self.recall_note.setText(
            f"{table.items:,} images{sample} in {table.classes} classes (sub-folders), each searched against "
            f"all the others. At {full}-d: R@1 {f1:.3f} float, {b1:.3f} binary. {message}".strip()
        )
