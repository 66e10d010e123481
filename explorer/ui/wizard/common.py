"""Small pieces every wizard page uses: colours, help lines, progress words, one plot style, the page base."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QLabel,
    QWidget,
    QWizardPage,
)

from explorer.ui.plot_style import style_plot
from trainer.folders import MIN_IMAGES_PER_CLASS
from trainer.progress import Progress, format_time_left

if TYPE_CHECKING:
    from explorer.app.fine_tune import FolderReport, TrainingPlan
    from trainer.data import LabelledFolder
    from trainer.fit import FitResult
    from trainer.progress import Progress


ERROR_COLOR = "#b00020"
WARN_COLOR = "#b36b00"
OK_COLOR = "#1b7a3a"
BAR_COLOR = "#1f6fb4"
SMALL_BAR_COLOR = "#d0453a"


# -- small widgets ---------------------------------------------------------------------------------------


def help_label(text: str = "") -> QLabel:
    """The one line of help under a setting: small and grey, so the settings themselves stay scannable."""
    label = QLabel(text)
    label.setWordWrap(True)
    label.setTextFormat(Qt.TextFormat.RichText)
    label.setStyleSheet("color: #5f6368; font-size: 11px;")
    return label


def progress_words(progress: Progress | None) -> str:
    """' 1,200 of 5,000 images, 0:40 left' for a running check; a scan (no total yet) says what it found."""
    if progress is None:
        return ""
    if progress.total <= 0:
        return f" {progress.done:,} images found so far"
    eta = format_time_left(progress.seconds_left)
    return f" {progress.done:,} of {progress.total:,} images" + (f", {eta}" if eta else "")


def _shown_name(path: Path, root: Path) -> str:
    """The path below the checked folder, or whole when it lies elsewhere."""
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return str(path)


def colored(text: str, color: str) -> str:
    return f"<span style='color:{color}'>{text}</span>"


class ClassChart(pg.PlotWidget):
    """Images per class as bars; classes too small to train are red."""

    MAX_LABELS = 16

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        style_plot(self.getPlotItem(), "Images per class", "", "images", grid=True)
        self.getPlotItem().showGrid(x=False, y=True, alpha=0.15)  # no grid lines through the bars
        self.setMouseEnabled(x=False, y=False)
        self.bars: pg.BarGraphItem | None = None
        self.setMinimumHeight(170)

    def show_counts(self, counts: dict[str, int]) -> None:
        if self.bars is not None:
            self.removeItem(self.bars)
        names = list(counts)
        heights = np.array([counts[n] for n in names], np.float64)
        brushes = [pg.mkBrush(SMALL_BAR_COLOR if h < MIN_IMAGES_PER_CLASS else BAR_COLOR) for h in heights]
        self.bars = pg.BarGraphItem(x=np.arange(len(names)), height=heights, width=0.7, brushes=brushes, pen=None)
        self.addItem(self.bars)
        step = max(1, math.ceil(len(names) / self.MAX_LABELS))
        ticks = [(i, self._short(n)) for i, n in enumerate(names) if i % step == 0]
        self.getPlotItem().getAxis("bottom").setTicks([ticks, []])
        self.getPlotItem().setLabel("bottom", "class" if step == 1 else f"class (every {step}th named)")
        self.setXRange(-0.6, max(len(names), 1) - 0.4, padding=0)
        self.setYRange(0, max(float(heights.max()) if len(heights) else 1.0, 1.0) * 1.1, padding=0)

    @staticmethod
    def _short(name: str, width: int = 12) -> str:
        return name if len(name) <= width else name[: width - 1] + "…"


class WizardHost(Protocol):
    """What a page may ask of its wizard: the run's settings, the other pages' answers, and a few actions.

    Pages know this and not each other (nor the wizard's class): the wizard answers from the page that decided.
    """

    models_dir: Path
    fit_overrides: dict[str, Any]
    """Extra FitConfig fields applied over the settings page (tests: crop size, batches per epoch)."""
    everything: LabelledFolder | None
    """Set by "Train again on everything": the whole folder trains, nothing is held out."""

    def plan(self) -> TrainingPlan: ...
    def folder_report(self) -> FolderReport | None: ...
    def protocol(self) -> str: ...
    def split(self) -> tuple[LabelledFolder, LabelledFolder] | None: ...
    def source_folder(self) -> LabelledFolder | None: ...
    def training_outcome(self) -> tuple[TrainingPlan | None, FitResult | None]: ...
    def set_training_running(self, running: bool) -> None: ...
    def train_on_everything(self) -> None: ...
    def use_model(self, path: Path) -> None: ...
    def currentPage(self) -> QWizardPage: ...
    def back(self) -> None: ...
    def accept(self) -> None: ...


class Page(QWizardPage):
    """A page that reaches its wizard through `WizardHost` (QWizardPage.wizard() returns a plain QWizard)."""

    def fw(self) -> WizardHost:
        return cast("WizardHost", self.wizard())
