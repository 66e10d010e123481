"""The Map tab: every image of the folder as a point (explorer.app.collection_map), coloured by sub-folder, with the
query and its neighbours on it. Hover names a point, a click searches with it.

Drawing 100,000 points: one ScatterPlotItem per sub-folder (one brush each: per-point brushes are what makes
pyqtgraph slow), drawn once per folder; the query's marks are two small items redrawn per query. Hovering finds the
nearest point with one vectorised distance over the view's coordinates, at most every 40 ms.

pyqtgraph is imported after the window shows (see MainWindow), like explorer.ui.plots.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, Qt, QTimer, Signal
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QComboBox,
    QGraphicsItem,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from explorer.ui.plot_style import BINARY_COLOR, FLOAT_COLOR, add_legend, style_plot

if TYPE_CHECKING:
    from explorer.app.analysis import QueryOutcome
    from explorer.app.collection_map import MapLayout
    from explorer.ui.thumbnails import ThumbnailCache

# Twelve colours that stay apart on white (Tableau 10 and two more); groups beyond them repeat the cycle.
GROUP_COLORS = [
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
    (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207), (57, 59, 121), (140, 162, 82),
]  # fmt: skip
HOVER_INTERVAL = 0.04
GROUP_BATCH = 4_000  # points added per turn of the event loop
HOVER_THUMB = 64  # pixels
COLOUR_BY = ["By sub-folder", "By cosine distance", "By Hamming distance"]  # colours: to the query, for distances
# viridis in eight steps: near (dark) to far (light)
BAND_COLORS = [(68, 1, 84), (70, 50, 126), (54, 92, 141), (39, 127, 142), (31, 161, 135), (74, 193, 109),
               (160, 218, 57), (253, 231, 37)]  # fmt: skip
LEGEND_ROWS = 12  # sub-folders named in the legend (the colours repeat after twelve anyway)


class MapPanel(QWidget):
    queryRequested = Signal(object)  # Path: search with the clicked image
    labelRequested = Signal(object)  # list[Path]: the images in the selected area, to put into a class

    def __init__(self, thumbnails: ThumbnailCache | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.thumbnails = thumbnails
        self.hovered_path: Path | None = None
        self.hover_picture = QLabel()  # the hovered image, small, beside its name
        self.hover_picture.setFixedSize(HOVER_THUMB, HOVER_THUMB)
        self.hover_picture.setAlignment(Qt.AlignmentFlag.AlignCenter)
        if thumbnails is not None:
            thumbnails.ready.connect(self._thumbnail_ready)
        self.header = QLabel("The map appears once the folder is indexed.")
        self.header.setWordWrap(True)
        self.hover_label = QLabel(" ")
        self.plot_widget = pg.PlotWidget()
        self.plot = self.plot_widget.getPlotItem()
        style_plot(self.plot, "Every image of the folder", "first direction", "second direction")
        self.plot.hideAxis("left")
        self.plot.hideAxis("bottom")
        self.neighbours = pg.ScatterPlotItem(size=11, pen=pg.mkPen(FLOAT_COLOR, width=1.8), brush=None)
        self.query_mark = pg.ScatterPlotItem(
            size=18, symbol="star", pen=pg.mkPen("k", width=1), brush=pg.mkBrush(BINARY_COLOR)
        )
        self.legend = add_legend(self.plot, (8, 8))
        self.neighbours.setZValue(10)
        self.query_mark.setZValue(11)
        self.groups: list[pg.ScatterPlotItem] = []
        self._pending: list[int] = []  # colours still to draw
        self._categories: np.ndarray = np.zeros(0, np.int32)
        self._colors: list[tuple[int, int, int]] = GROUP_COLORS
        self.outcome: QueryOutcome | None = None
        self.query_path: Path | None = None
        self.colour_by = QComboBox()
        self.colour_by.addItems(COLOUR_BY)
        # the tab's tools must not widen the window (a 1024-px screen): the combo and the labels may shrink
        self.colour_by.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.colour_by.setMinimumContentsLength(18)
        self.colour_by.setToolTip("What the colours say: the sub-folder, or how far each image is from the query")
        self.layout_data: MapLayout | None = None
        self._last_hover = 0.0
        self.roi: pg.RectROI | None = None
        self.select_button = QPushButton("Select…")
        self.select_button.setCheckable(True)
        self.select_button.setToolTip("A box to drag and resize over the map: the images in it can go into a class")
        self.label_button = QPushButton("To a class…")
        self.label_button.setToolTip("Put the images in the box into a class of the labelled folder")
        self.copy_button = QPushButton("Copy paths")
        for button in (self.label_button, self.copy_button):
            button.setEnabled(False)
        self.selection_label = QLabel("")
        self.selection_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        tools = QHBoxLayout()
        for widget in (self.colour_by, self.select_button, self.selection_label, self.label_button, self.copy_button):
            tools.addWidget(widget)
        # the hover's name changes at every move: its width must not lay the panel out again (a repaint of 100,000
        # points each time: 80 ms stalls, bench/gui_responsiveness.py --map-only)
        self.hover_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        tools.addStretch(1)
        hover = QHBoxLayout()  # a row of its own: with the tools, the tab was wider than a small window
        hover.addWidget(self.hover_picture)
        hover.addWidget(self.hover_label, 1)
        layout = QVBoxLayout(self)
        layout.addWidget(self.header)
        layout.addWidget(self.plot_widget, 1)
        layout.addLayout(tools)
        layout.addLayout(hover)
        self.select_button.toggled.connect(self._selecting)
        self.colour_by.currentIndexChanged.connect(lambda _i: self.recolour())
        self.label_button.clicked.connect(lambda: self.labelRequested.emit(self.selected_paths()))
        self.copy_button.clicked.connect(
            lambda: QGuiApplication.clipboard().setText("\n".join(str(p) for p in self.selected_paths()))
        )
        self.plot_widget.scene().sigMouseMoved.connect(self._hovered)
        self.plot_widget.scene().sigMouseClicked.connect(self._clicked)

    # -- what the window shows ------------------------------------------------------------------------------
    def show_layout(self, layout: MapLayout | None, message: str) -> None:
        if layout is None or layout is self.layout_data:
            if message:
                self.header.setText(message)
            if layout is None:
                self._clear()
            return
        self._clear()
        self.layout_data = layout
        self.plot.addItem(self.neighbours)
        self.plot.addItem(self.query_mark)
        self._colour(layout.group_of, [g or "(top of the folder)" for g in layout.groups], GROUP_COLORS)
        named = f"{len(layout.groups)} sub-folders" if len(layout.groups) > 1 else "one folder"
        self.header.setText(
            f"<b>{len(layout.paths):,}</b> images, coloured by sub-folder ({named}), placed by {layout.method} of "
            "their embeddings: near means similar. Hover a point to name it, click it to search with it."
        )

    def _colour(self, categories: np.ndarray, names: list[str], colors: list[tuple[int, int, int]]) -> None:
        """Draw the points again, one colour per category (a sub-folder, or a band of distance to the query)."""
        layout = self.layout_data
        if layout is None:
            return
        for item in self.groups:
            self.plot.removeItem(item)
        self.groups = []
        self.legend.clear()
        for c, name in enumerate(names[:LEGEND_ROWS]):
            sample = pg.ScatterPlotItem(size=8, pen=None, brush=pg.mkBrush(*colors[c % len(colors)]))
            self.legend.addItem(sample, name)
        if len(names) > LEGEND_ROWS:
            self.legend.addItem(pg.ScatterPlotItem(size=0, pen=None), f"… {len(names) - LEGEND_ROWS} more")
        self.legend.addItem(self.query_mark, "the query")
        self.legend.addItem(self.neighbours, "its neighbours")
        self._categories, self._colors = categories, colors
        self._pending = list(range(len(names)))
        self._add_groups(layout)

    def _add_groups(self, layout: MapLayout) -> None:
        """Add the points of each colour a few thousand at a time, one turn of the event loop each: 100,000 points
        added at once held the window for a third of a second (bench/gui_responsiveness.py --map-only)."""
        if layout is not self.layout_data:
            return  # another folder meanwhile
        budget = GROUP_BATCH
        while self._pending and budget > 0:
            g = self._pending.pop(0)
            rows = np.flatnonzero(self._categories == g)
            color = self._colors[g % len(self._colors)]
            for start in range(0, len(rows), GROUP_BATCH):
                part = rows[start : start + GROUP_BATCH]
                item = pg.ScatterPlotItem(
                    layout.xy[part, 0], layout.xy[part, 1], size=5, pen=None, brush=pg.mkBrush(*color, 170)
                )
                # drawn once into a pixmap: the selection box moving over 100,000 points repainted them all
                # at every move (117 ms stalls), now it repaints a picture of them
                item.setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)
                self.groups.append(item)
                self.plot.addItem(item)
            budget -= len(rows)
        if self._pending:
            QTimer.singleShot(0, lambda: self._add_groups(layout))
        else:
            self.plot.autoRange()

    def recolour(self) -> None:
        """Colour by what `colour_by` says; distances need a query of this folder (else the sub-folders stay)."""
        layout = self.layout_data
        if layout is None:
            return
        choice = self.colour_by.currentIndex()
        distances = self._distances(binary=choice == 2) if choice else None
        if distances is None:
            if choice:
                self.hover_label.setText("Distances appear once a query of this folder is answered.")
            self._colour(layout.group_of, [g or "(top of the folder)" for g in layout.groups], GROUP_COLORS)
            return
        edges = np.unique(np.quantile(distances, np.linspace(0, 1, len(BAND_COLORS) + 1)))
        bands = np.clip(np.searchsorted(edges, distances, side="right") - 1, 0, len(edges) - 2).astype(np.int32)
        unit = "bits" if choice == 2 else "cosine"
        names = [f"{edges[i]:.0f}-{edges[i + 1]:.0f} {unit}" if choice == 2 else f"{edges[i]:.2f}-{edges[i + 1]:.2f}"
                 for i in range(len(edges) - 1)]  # fmt: skip
        self._colour(bands, names if choice == 2 else [f"{n} {unit}" for n in names], BAND_COLORS)

    def _distances(self, binary: bool) -> np.ndarray | None:
        """Each map row's distance to the query (the query's own row at 0), or None when the answer is not of
        this folder (another folder, or the library)."""
        layout, outcome = self.layout_data, self.outcome
        if layout is None or outcome is None or outcome.float_ranking is None:
            return None
        values = np.asarray(outcome.hamming if binary else outcome.cosine, np.float64)
        n = len(layout.paths)
        if len(values) == n:
            return values
        own = layout.row_of.get(self.query_path) if self.query_path is not None else None
        if len(values) == n - 1 and own is not None:
            return np.insert(values, own, 0.0)  # the query's own picture, left out of the plots
        return None

    def show_outcome(self, outcome: QueryOutcome, query_path: Path | None = None) -> None:
        """The query and its float neighbours on the map (rows of the folder's snapshot, the map's order)."""
        self.outcome, self.query_path = outcome, query_path
        if self.colour_by.currentIndex():
            self.recolour()
        layout = self.layout_data
        if layout is None or outcome.float_ranking is None:
            self.neighbours.setData([], [])
            self.query_mark.setData([], [])
            return
        index = layout.row_of
        rows = [index[r.path] for r in outcome.float_ranking.results if r.path in index]
        self.neighbours.setData(layout.xy[rows, 0], layout.xy[rows, 1])
        if len(outcome.embedding) != len(layout.mean):  # the map of another model, while the new one's is made
            self.query_mark.setData([], [])
            return
        x, y = layout.project(outcome.embedding)
        self.query_mark.setData([float(x)], [float(y)])

    def _clear(self) -> None:
        for item in self.groups:
            self.plot.removeItem(item)
        self.groups = []
        for item in (self.neighbours, self.query_mark):
            if item.scene() is not None:
                self.plot.removeItem(item)
            item.setData([], [])
        self.layout_data = None
        self.outcome = None
        self.select_button.setChecked(False)
        self.legend.clear()
        self.hover_label.setText(" ")

    # -- selecting an area -----------------------------------------------------------------------------------
    def _selecting(self, on: bool) -> None:
        if self.roi is not None:
            self.plot.removeItem(self.roi)
            self.roi = None
        if on and self.layout_data is not None:
            (x0, x1), (y0, y1) = self.plot.getViewBox().viewRange()
            w, h = (x1 - x0) / 4, (y1 - y0) / 4
            self.roi = pg.RectROI([x0 + 1.5 * w, y0 + 1.5 * h], [w, h], pen=pg.mkPen(BINARY_COLOR, width=2))
            self.roi.setZValue(20)
            self.roi.sigRegionChanged.connect(self._selection_changed)
            self.plot.addItem(self.roi)
        self._selection_changed()

    def selected_rows(self) -> np.ndarray:
        """Rows of the images inside the selection box (none when there is no box)."""
        layout = self.layout_data
        if self.roi is None or layout is None:
            return np.zeros(0, np.int64)
        (x, y), (w, h) = self.roi.pos(), self.roi.size()
        xs, ys = layout.xy[:, 0], layout.xy[:, 1]
        inside = (xs >= min(x, x + w)) & (xs <= max(x, x + w)) & (ys >= min(y, y + h)) & (ys <= max(y, y + h))
        return np.flatnonzero(inside)

    def selected_paths(self) -> list[Path]:
        layout = self.layout_data
        return [layout.paths[i] for i in self.selected_rows()] if layout is not None else []

    def _selection_changed(self) -> None:
        count = len(self.selected_rows())
        self.selection_label.setText(f"{count:,} images in the box" if self.roi is not None else "")
        for button in (self.label_button, self.copy_button):
            button.setEnabled(count > 0)

    # -- hover and click -------------------------------------------------------------------------------------
    def nearest(self, scene_pos: QPointF) -> int | None:
        """The row of the point under the mouse (within 8 pixels), or None."""
        layout = self.layout_data
        if layout is None or len(layout.xy) == 0 or not self.plot.sceneBoundingRect().contains(scene_pos):
            return None
        view = self.plot.getViewBox()
        at = view.mapSceneToView(scene_pos)
        pixel = view.viewPixelSize()  # data units per pixel, (x, y)
        d = ((layout.xy[:, 0] - at.x()) / pixel[0]) ** 2 + ((layout.xy[:, 1] - at.y()) / pixel[1]) ** 2
        row = int(np.argmin(d))
        return row if d[row] <= 64 else None

    def _hovered(self, scene_pos: QPointF) -> None:
        now = time.monotonic()
        if now - self._last_hover < HOVER_INTERVAL:
            return
        self._last_hover = now
        row = self.nearest(scene_pos)
        layout = self.layout_data
        if row is None or layout is None:
            self.hover_label.setText(" ")
            self.hover_picture.clear()
            self.hovered_path = None
            return
        group = layout.groups[layout.group_of[row]] or "(top of the folder)"
        self.hover_label.setText(f"{layout.paths[row].name}  ·  {group}  ·  click to search with it")
        self.hovered_path = layout.paths[row]
        self._show_thumbnail()

    def _show_thumbnail(self) -> None:
        if self.thumbnails is None or self.hovered_path is None:
            return
        pixmap = self.thumbnails.get(self.hovered_path, HOVER_THUMB)  # decoded on the cache's threads
        if pixmap is not None:
            self.hover_picture.setPixmap(pixmap)
        else:
            self.hover_picture.clear()

    def _thumbnail_ready(self, path: str) -> None:
        if self.hovered_path is not None and str(self.hovered_path) == path:
            self._show_thumbnail()

    def _clicked(self, event: object) -> None:
        if getattr(event, "button", lambda: None)() != Qt.MouseButton.LeftButton:
            return
        row = self.nearest(event.scenePos())  # type: ignore[attr-defined]
        if row is not None and self.layout_data is not None:
            self.queryRequested.emit(Path(self.layout_data.paths[row]))
