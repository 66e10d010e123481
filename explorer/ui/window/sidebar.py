"""The window's left column: the query, how to search, the folder and the model (widgets only; the window wires
them to its controller)."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from explorer.ui.query_area import QueryArea
from explorer.ui.settings import MAX_K


class Sidebar(QWidget):
    def __init__(
        self, k: int, binary: bool, expand: bool = False, cutoff: float = 0.0, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.query_area = QueryArea()
        self.open_button = QPushButton("Open image…")
        self.paste_button = QPushButton("Paste")
        query_buttons = QHBoxLayout()
        query_buttons.addWidget(self.open_button)
        query_buttons.addWidget(self.paste_button)

        self.k_spin = QSpinBox()
        self.k_spin.setRange(1, MAX_K)
        self.k_spin.setValue(k)
        self.k_spin.setToolTip("How many neighbours to show")
        self.dim_combo = QComboBox()
        self.dim_combo.setToolTip("Search with the first d dimensions of the embedding (nested dimensions)")
        self.dim_combo.setEnabled(False)
        self.ranking_combo = QComboBox()
        self.ranking_combo.addItem("Float (cosine)", False)
        self.ranking_combo.addItem("Binary (Hamming)", True)
        self.ranking_combo.setCurrentIndex(1 if binary else 0)
        self.ranking_combo.setToolTip("Which ranking the grid shows; the plots compare both")
        self.expand_box = QCheckBox("Query expansion")
        self.expand_box.setChecked(expand)
        self.expand_box.setToolTip(
            "Rank by the mean of the query and its 2 nearest pictures: the first result stays, more of the same kind "
            "follow it (MAP@R +6 to +10 points on the test sets: bench/results/rerank.md). The distances shown stay "
            "the query's own, so they may come out of order."
        )
        search_box = QGroupBox("Search")
        search_form = QFormLayout(search_box)
        search_form.addRow("Neighbours", self.k_spin)
        search_form.addRow("Dimension", self.dim_combo)
        search_form.addRow("Ranking", self.ranking_combo)
        search_form.addRow("", self.expand_box)
        self.cutoff = QDoubleSpinBox()
        self.cutoff.setRange(0.0, 2.0)
        self.cutoff.setSingleStep(0.05)
        self.cutoff.setDecimals(2)
        self.cutoff.setSpecialValueText("no limit")  # 0
        self.cutoff.setValue(cutoff)
        self.cutoff.setToolTip("Leave out neighbours farther than this cosine distance: a ranking may then say that "
                               "nothing here is close")  # fmt: skip
        search_form.addRow("Farther than", self.cutoff)

        self.folder_combo = QComboBox()
        self.folder_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.folder_combo.setMinimumContentsLength(12)
        self.folder_combo.setToolTip("Recent folders")
        self.browse_button = QPushButton("Choose…")  # the first thing a new person does: a button that says so
        self.browse_button.setToolTip("Choose a folder of pictures to search in (Ctrl+Shift+O)")
        folder_row = QHBoxLayout()
        folder_row.addWidget(self.folder_combo, 1)
        folder_row.addWidget(self.browse_button)
        self.folder_info = QLabel("No folder chosen")
        self.folder_info.setWordWrap(True)
        self.folder_info.setTextFormat(Qt.TextFormat.RichText)
        self.reindex_button = QPushButton("Re-index")
        self.reindex_button.setToolTip("Embed new and changed images (Ctrl+R)")
        folder_box = QGroupBox("Folder")
        folder_layout = QVBoxLayout(folder_box)
        folder_layout.addLayout(folder_row)
        folder_layout.addWidget(self.folder_info)
        folder_layout.addWidget(self.reindex_button)

        self.model_label = QLabel("Loading…")
        self.model_label.setWordWrap(True)
        self.model_button = QPushButton("Model…")
        self.model_button.setToolTip("Use a fine-tuned model (.safetensors / .json)")
        model_box = QGroupBox("Model")
        model_layout = QVBoxLayout(model_box)
        model_layout.addWidget(self.model_label)
        model_layout.addWidget(self.model_button)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addWidget(self.query_area, 1)
        layout.addLayout(query_buttons)
        layout.addWidget(search_box)
        layout.addWidget(folder_box)
        layout.addWidget(model_box)
        self.setMinimumWidth(230)
        self.setMaximumWidth(380)
