"""The ranked neighbours: a thumbnail grid over a list model, a compact strip variant, and a preview dialog.

The model holds the engine's `SearchResult`s as they are; the delegate draws the rank, the file name and
both distances (cosine and Hamming) on every cell, because comparing the two is the point of the app.
Thumbnails come from the shared `ThumbnailCache`, only for cells the view actually paints.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import (
    QAbstractListModel,
    QModelIndex,
    QPersistentModelIndex,
    QPoint,
    QRect,
    QSize,
    Qt,
    QUrl,
    Signal,
)
from PySide6.QtGui import (
    QAction,
    QColor,
    QDesktopServices,
    QFont,
    QGuiApplication,
    QKeySequence,
    QPainter,
    QPalette,
    QPixmap,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QLabel,
    QListView,
    QMenu,
    QPushButton,
    QSizePolicy,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QVBoxLayout,
    QWidget,
)

from explorer.engine.catalog import readable
from explorer.ui.thumbnails import ThumbnailCache

if TYPE_CHECKING:
    from explorer.engine.search import SearchResult

ResultRole = Qt.ItemDataRole.UserRole + 1
_Index = QModelIndex | QPersistentModelIndex


def describe(result: SearchResult) -> str:
    """One tooltip / status line for a neighbour."""
    return (
        f"#{result.rank}  {readable(result.relpath)}\n"
        f"cosine distance {result.cosine_distance:.4f} · Hamming distance {result.hamming_distance} bits"
    )


def open_externally(path: Path) -> bool:
    """Hand the file to the system's image viewer."""
    return QDesktopServices.openUrl(QUrl.fromLocalFile(str(path)))


def copy_paths(paths: list[Path]) -> None:
    QGuiApplication.clipboard().setText("\n".join(str(p) for p in paths))


class RankingModel(QAbstractListModel):
    """A ranking's results, in rank order, with lazily decoded thumbnails."""

    def __init__(self, thumbnails: ThumbnailCache, thumb_size: int, parent: Any = None) -> None:
        super().__init__(parent)
        self.thumbnails = thumbnails
        self.thumb_size = thumb_size
        self._results: list[SearchResult] = []
        self._rows_of: dict[str, list[int]] = {}
        thumbnails.ready.connect(self._thumbnail_ready)

    @property
    def results(self) -> list[SearchResult]:
        return list(self._results)

    def set_results(self, results: list[SearchResult]) -> None:
        self.beginResetModel()
        self._results = list(results)
        self._rows_of = {}
        for i, r in enumerate(self._results):
            self._rows_of.setdefault(str(r.path), []).append(i)
        self.endResetModel()

    def result(self, row: int) -> SearchResult:
        return self._results[row]

    def rowCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008 (Qt's signature)
        return 0 if parent.isValid() else len(self._results)

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._results):
            return None
        r = self._results[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return r.path.name
        if role == Qt.ItemDataRole.DecorationRole:
            return self.thumbnails.get(r.path, self.thumb_size)
        if role == Qt.ItemDataRole.ToolTipRole:
            error = self.thumbnails.error(r.path)
            return describe(r) + (f"\ncannot show: {error}" if error else "")
        if role == ResultRole:
            return r
        return None

    def _thumbnail_ready(self, path: str) -> None:
        for row in self._rows_of.get(path, []):
            index = self.index(row)
            self.dataChanged.emit(index, index, [Qt.ItemDataRole.DecorationRole])


class ResultDelegate(QStyledItemDelegate):
    """Thumbnail, rank badge and, unless compact, the file name, its folder and both distances under it; compact (the
    dimension strips), both distances in one small line, so a strip can be judged without opening each neighbour.

    The folder line matters in labelled folders: it is the class, which is how a person judges a neighbour.
    """

    def __init__(self, thumb_size: int, compact: bool = False, parent: Any = None) -> None:
        super().__init__(parent)
        self.thumb_size = thumb_size
        self.compact = compact
        self.pad = 4 if compact else 6
        self.text_lines = 1 if compact else 3

    def sizeHint(self, option: QStyleOptionViewItem, index: _Index) -> QSize:
        line = option.fontMetrics.height()
        w = self.thumb_size + 2 * self.pad + (0 if self.compact else 16)
        return QSize(w, self.thumb_size + 2 * self.pad + self.text_lines * line + (4 if self.text_lines else 0))

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: _Index) -> None:
        result: SearchResult | None = index.data(ResultRole)
        if result is None:
            return
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        rect: QRect = option.rect
        pal: QPalette = option.palette
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        if selected:
            painter.fillRect(rect, pal.color(QPalette.ColorRole.Highlight).lighter(160))
        elif option.state & QStyle.StateFlag.State_MouseOver:
            painter.fillRect(rect, pal.color(QPalette.ColorRole.AlternateBase))
        # thumbnail, centred in its square
        box = QRect(
            rect.x() + (rect.width() - self.thumb_size) // 2, rect.y() + self.pad, self.thumb_size, self.thumb_size
        )
        pixmap: QPixmap | None = index.data(Qt.ItemDataRole.DecorationRole)
        if pixmap is not None and not pixmap.isNull():
            scaled = pixmap.size().scaled(box.size(), Qt.AspectRatioMode.KeepAspectRatio)
            target = QRect(0, 0, scaled.width(), scaled.height())
            target.moveCenter(box.center())
            painter.drawPixmap(target, pixmap)
        else:
            painter.fillRect(box.adjusted(6, 6, -6, -6), pal.color(QPalette.ColorRole.Midlight))
        # rank badge
        badge_font = QFont(option.font)
        badge_font.setBold(True)
        if self.compact:
            badge_font.setPointSizeF(max(6.0, badge_font.pointSizeF() * 0.8))
        painter.setFont(badge_font)
        text = str(result.rank)
        fm = painter.fontMetrics()
        badge = QRect(box.x(), box.y(), fm.horizontalAdvance(text) + 8, fm.height() + 2)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QColor(20, 20, 20, 190))
        painter.drawRoundedRect(badge, 4, 4)
        painter.setPen(QColor("white"))
        painter.drawText(badge, Qt.AlignmentFlag.AlignCenter, text)
        if self.compact:
            small = QFont(option.font)
            small.setPointSizeF(max(6.0, small.pointSizeF() * 0.8))
            painter.setFont(small)
            line_rect = QRect(rect.x(), box.bottom() + 3, rect.width(), painter.fontMetrics().height())
            painter.setPen(pal.color(QPalette.ColorRole.PlaceholderText))
            painter.drawText(
                line_rect, Qt.AlignmentFlag.AlignHCenter, f"{result.cosine_distance:.2f} · {result.hamming_distance}"
            )
        else:
            painter.setFont(option.font)
            fm = painter.fontMetrics()
            line = fm.height()
            text_rect = QRect(rect.x() + 3, box.bottom() + 5, rect.width() - 6, line)
            painter.setPen(pal.color(QPalette.ColorRole.Text))
            name = fm.elidedText(readable(result.path.name), Qt.TextElideMode.ElideMiddle, text_rect.width())
            painter.drawText(text_rect, Qt.AlignmentFlag.AlignHCenter, name)
            painter.setPen(pal.color(QPalette.ColorRole.PlaceholderText))
            folder = readable(result.relpath.rpartition("/")[0])
            folder = fm.elidedText(folder, Qt.TextElideMode.ElideMiddle, text_rect.width())
            painter.drawText(text_rect.translated(0, line), Qt.AlignmentFlag.AlignHCenter, folder)
            dist = f"cos {result.cosine_distance:.3f} · ham {result.hamming_distance}"
            dist = fm.elidedText(dist, Qt.TextElideMode.ElideRight, text_rect.width())
            painter.drawText(text_rect.translated(0, 2 * line), Qt.AlignmentFlag.AlignHCenter, dist)
        painter.restore()


class ResultsView(QListView):
    """Icon-mode view of a RankingModel; double-click previews, the context menu opens and copies."""

    previewRequested = Signal(object)  # SearchResult
    queryRequested = Signal(object)  # Path: "use this image as the query"
    exampleRequested = Signal(object, bool)  # Path, wanted: "more like this" (True) or "less like this" (False)
    labelRequested = Signal(object)  # list[Path]: "add these to a class of the labelled folder"
    placeholderClicked = Signal()  # the empty view's message was clicked: do what it suggests

    def __init__(self, model: RankingModel, compact: bool = False, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.placeholder = ""
        self.compact = compact
        self.setModel(model)
        self.setItemDelegate(ResultDelegate(model.thumb_size, compact, self))
        self.setViewMode(QListView.ViewMode.IconMode)
        self.setMovement(QListView.Movement.Static)
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setUniformItemSizes(True)
        # several results can be selected (Ctrl/Shift+click) to put them into a class together
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setMouseTracking(True)
        self.setSpacing(2 if compact else 4)
        if compact:
            self.setFlow(QListView.Flow.LeftToRight)
            self.setWrapping(False)
            self.setHorizontalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
            self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
            hint = self.itemDelegate().sizeHint(self.viewOptions(), QModelIndex())
            self.setFixedHeight(hint.height() + 2 * self.spacing() + 2 * self.frameWidth() + 12)
            self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.doubleClicked.connect(self._double_clicked)
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.customContextMenuRequested.connect(self._context_menu)
        copy = QAction("Copy path", self)
        copy.setShortcut(QKeySequence.StandardKey.Copy)
        copy.setShortcutContext(Qt.ShortcutContext.WidgetShortcut)
        copy.triggered.connect(self.copy_selected)
        self.addAction(copy)

    def resizeEvent(self, event: Any) -> None:
        super().resizeEvent(event)
        if not self.compact:
            self._justify()

    def minimum_width_for(self, columns: int) -> int:
        """The width that shows `columns` columns of results (a splitter beside keeps at least this)."""
        hint = self.itemDelegate().sizeHint(self.viewOptions(), QModelIndex())
        bar = self.style().pixelMetric(QStyle.PixelMetric.PM_ScrollBarExtent)
        return columns * (hint.width() + 8) + 2 * self.frameWidth() + bar + 2

    def _justify(self) -> None:
        """Spread the free width evenly between the columns instead of leaving it all on the right.

        Computed from the widget width less a scroll bar's, whether or not one shows, so that the scroll
        bar appearing cannot change the column count and re-trigger the layout.
        """
        hint = self.itemDelegate().sizeHint(self.viewOptions(), QModelIndex())
        bar = self.style().pixelMetric(QStyle.PixelMetric.PM_ScrollBarExtent)
        width = self.width() - 2 * self.frameWidth() - bar - 2
        columns = max(1, width // (hint.width() + 8))
        self.setGridSize(QSize(max(hint.width(), width // columns), hint.height() + 8))

    def viewOptions(self) -> QStyleOptionViewItem:
        option = QStyleOptionViewItem()
        self.initViewItemOption(option)
        return option

    def ranking_model(self) -> RankingModel:
        model = self.model()
        assert isinstance(model, RankingModel)
        return model

    def selected_results(self) -> list[SearchResult]:
        """The selected results in rank order."""
        found = [i.data(ResultRole) for i in self.selectedIndexes()]
        return sorted((r for r in found if r is not None), key=lambda r: r.rank)

    def selected_result(self) -> SearchResult | None:
        indexes = self.selectedIndexes()
        return indexes[0].data(ResultRole) if indexes else None

    def copy_selected(self) -> None:
        result = self.selected_result()
        if result is not None:
            copy_paths([result.path])

    def _double_clicked(self, index: QModelIndex) -> None:
        result = index.data(ResultRole)
        if result is not None:
            self.previewRequested.emit(result)

    def _context_menu(self, pos: QPoint) -> None:
        index = self.indexAt(pos)
        result: SearchResult | None = index.data(ResultRole) if index.isValid() else None
        if result is None:
            return
        if not self.selectionModel().isSelected(index):
            self.setCurrentIndex(index)  # a click outside the selection acts on that result alone
        chosen = [r.path for r in self.selected_results()] or [result.path]
        menu = QMenu(self)
        menu.addAction("Preview", lambda: self.previewRequested.emit(result))
        menu.addAction("Open in image viewer", lambda: open_externally(result.path))
        menu.addAction("Show in folder", lambda: open_externally(result.path.parent))
        menu.addAction("Copy path", lambda: copy_paths([result.path]))
        menu.addSeparator()
        menu.addAction("Use as query", lambda: self.queryRequested.emit(result.path))
        menu.addAction("More like this", lambda: self.exampleRequested.emit(result.path, True))
        menu.addAction("Less like this", lambda: self.exampleRequested.emit(result.path, False))
        menu.addSeparator()
        what = "this picture" if len(chosen) == 1 else f"these {len(chosen)} pictures"
        menu.addAction(f"Add {what} to a class…", lambda: self.labelRequested.emit(chosen))
        menu.exec(self.viewport().mapToGlobal(pos))

    def paintEvent(self, event: Any) -> None:
        super().paintEvent(event)
        if self.model().rowCount() == 0 and self.placeholder:
            painter = QPainter(self.viewport())
            painter.setPen(self.palette().color(QPalette.ColorRole.PlaceholderText))
            rect = self.viewport().rect().adjusted(24, 0, -24, 0)
            flags = Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap
            painter.drawText(rect, int(flags), self.placeholder)
            painter.end()

    def mousePressEvent(self, event: Any) -> None:
        if self.model().rowCount() == 0 and self.placeholder and event.button() == Qt.MouseButton.LeftButton:
            self.placeholderClicked.emit()
            return
        super().mousePressEvent(event)

    def set_placeholder(self, text: str) -> None:
        self.placeholder = text
        self.viewport().update()


class PreviewDialog(QDialog):
    """A larger view of one neighbour, with the actions a person wants next."""

    PREVIEW_SIZE = 900
    queryRequested = Signal(object)  # Path

    def __init__(self, result: SearchResult, thumbnails: ThumbnailCache, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.search_result = result
        self.thumbnails = thumbnails
        self.setWindowTitle(f"#{result.rank} — {result.path.name}")
        self.image = QLabel("Loading…")
        self.image.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.image.setMinimumSize(320, 240)
        self.image.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)
        info = QLabel(describe(result).replace("\n", "<br>") + f"<br><small>{result.path}</small>")
        info.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        info.setWordWrap(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        self.open_button = QPushButton("Open in image viewer")
        self.open_button.clicked.connect(lambda: open_externally(result.path))
        copy = QPushButton("Copy path")
        copy.clicked.connect(lambda: copy_paths([result.path]))
        use = QPushButton("Use as query")
        use.clicked.connect(self._use_as_query)
        for b in (self.open_button, copy, use):
            buttons.addButton(b, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.image, 1)
        layout.addWidget(info)
        layout.addWidget(buttons)
        self.resize(820, 720)
        thumbnails.ready.connect(self._ready)
        self._ready(str(result.path))

    def _use_as_query(self) -> None:
        self.queryRequested.emit(self.search_result.path)
        self.accept()

    def _ready(self, path: str) -> None:
        if path != str(self.search_result.path):
            return
        pixmap = self.thumbnails.get(self.search_result.path, self.PREVIEW_SIZE)
        if pixmap is not None:
            self._pixmap = pixmap
            self._show_scaled()
        elif self.thumbnails.error(self.search_result.path):
            self.image.setText(f"Cannot show this file: {self.thumbnails.error(self.search_result.path)}")

    def _show_scaled(self) -> None:
        """Shrunk to fit, never enlarged: a small picture blown up to the dialog's size is only blur."""
        pixmap = getattr(self, "_pixmap", None)
        if pixmap is not None:
            room = self.image.size()
            fits = pixmap.width() <= room.width() and pixmap.height() <= room.height()
            self.image.setPixmap(
                pixmap
                if fits
                else pixmap.scaled(room, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation)
            )

    def resizeEvent(self, event: Any) -> None:
        super().resizeEvent(event)
        self._show_scaled()
