"""The status bar's permanent part: indexing progress with Cancel, the skipped-files count, the collection."""

from __future__ import annotations

from PySide6.QtWidgets import QLabel, QProgressBar, QPushButton, QStatusBar, QToolButton


class StatusStrip:
    """Widgets added to `bar`; the window shows indexing through `show_progress` and `show_indexing`."""

    def __init__(self, bar: QStatusBar) -> None:
        self.progress_label = QLabel()
        self.progress_bar = QProgressBar()
        self.progress_bar.setFixedWidth(180)
        self.progress_bar.setTextVisible(False)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop indexing (Esc); what is done is kept")
        self.skipped_button = QToolButton()
        self.skipped_button.setAutoRaise(True)
        self.skipped_button.setToolTip("Files that could not be indexed, with the reason (Ctrl+K)")
        self.stats_label = QLabel()
        for w in (self.progress_label, self.progress_bar, self.cancel_button, self.skipped_button, self.stats_label):
            bar.addPermanentWidget(w)
        self.show_indexing(False)
        self.skipped_button.hide()

    def show_indexing(self, on: bool) -> None:
        for w in (self.progress_label, self.progress_bar, self.cancel_button):
            w.setVisible(on)

    def show_progress(self, text: str, done: int, total: int) -> None:
        """`total <= 0`: how much there is to do is not known yet (a busy bar)."""
        self.show_indexing(True)
        self.progress_label.setText(text)
        if total <= 0:
            self.progress_bar.setRange(0, 0)
        else:
            self.progress_bar.setRange(0, max(1, total))
            self.progress_bar.setValue(done)

    def show_skipped(self, count: int) -> None:
        self.skipped_button.setText(f"{count:,} skipped")
        self.skipped_button.setVisible(bool(count))
