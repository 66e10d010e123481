"""Page 3: the run's settings, each with one line of help, and an honest estimate of how long it takes."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QSizePolicy,
    QSpinBox,
    QWidget,
)

from explorer.app.fine_tune import (
    DEFAULT_BACKBONE,
    Environment,
    card_summary,
    format_duration,
)
from explorer.paths import BUNDLED_MODEL
from explorer.ui.widgets import refill_combo
from explorer.ui.wizard.common import (
    WARN_COLOR,
    Page,
    colored,
    help_label,
)
from explorer.ui.workers import Job, JobRunner
from trainer.backbone_specs import BACKBONE_INFO
from trainer.card import ModelFileError
from trainer.config import FitConfig
from trainer.epoch_choice import RunParts, run_parts
from trainer.estimate import RunShape, estimate_seconds  # torch-free (stage_seconds imports torch when called)
from trainer.folders import carve_validation
from trainer.recipe import (
    CPU_CROP,
    CPU_STAGES,
    FolderShape,
    default_recipe,
    head_only_below,
    recipe_warnings,
    stretches,
)

if TYPE_CHECKING:
    from trainer.data import LabelledFolder


class SettingsPage(Page):
    """The run's settings, each with one line of help, and an honest estimate of how long it will take."""

    DIMS = (64, 128, 256, 512, 1024)
    BACKBONE_STAGES = BACKBONE_INFO[DEFAULT_BACKBONE].stages
    RESOLUTIONS = (224, 192, 160, 128)
    CPU_STAGES, CPU_RESOLUTION = CPU_STAGES, CPU_CROP  # trainer.recipe: what a CPU trains by default

    def __init__(self, runner: JobRunner, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setTitle("3 · Settings")
        self.setSubTitle(
            "The defaults suit this folder and this computer (the same as `trainer fit` with no settings): the "
            "best epoch is kept, and if none beats the starting model, the starting model is kept."
        )
        self.runner = runner
        self.environment: Environment | None = None
        self._recipe_for: tuple[Any, ...] | None = None  # (training part, device) the widgets were last set for
        self._timings: dict[tuple[str, int, str], tuple[list[float], list[float]] | str] = {}
        self._timing_job: Job | None = None
        self._shown = False  # measure the machine only once someone looks at this page

        self.model = QComboBox()
        bundled = card_summary(BUNDLED_MODEL) if Path(str(BUNDLED_MODEL) + ".json").exists() else None
        if bundled is not None:
            self.model.addItem(f"Bundled model: {bundled['name']}", str(BUNDLED_MODEL))
        self.model.addItem("ImageNet backbone (EfficientNet-Lite0, no retrieval training)", None)
        self.method = QComboBox()
        self.method.addItem("normsoftmax", "normsoftmax")
        self.epochs = QSpinBox()
        self.epochs.setRange(1, 500)
        self.epochs.setValue(10)
        self.classes_per_batch = QSpinBox()
        self.classes_per_batch.setRange(2, 1000)
        self.classes_per_batch.setValue(25)
        self.per_class = QSpinBox()
        self.per_class.setRange(2, 64)
        self.per_class.setValue(3)
        self.dim = QComboBox()
        self.device = QComboBox()
        self.device.addItem("CPU", "cpu")
        self.stages = QSpinBox()
        self.stages.setRange(0, self.BACKBONE_STAGES)
        self.stages.setValue(self.BACKBONE_STAGES)
        self.stages.setSuffix(f" of {self.BACKBONE_STAGES}")
        self.cached = QCheckBox("compute the frozen ones once (fastest; they then see one fixed crop per image)")
        self.resolution = QComboBox()

        for spin in (self.epochs, self.classes_per_batch, self.per_class):
            spin.setMinimumWidth(70)
        epochs = QHBoxLayout()
        epochs.addWidget(self.epochs)
        epochs.addStretch(1)
        batch = QHBoxLayout()
        batch.setSpacing(8)
        batch.addWidget(self.classes_per_batch)
        batch.addWidget(QLabel("classes ×"))
        batch.addWidget(self.per_class)
        batch.addWidget(QLabel("images of each"))
        batch.addStretch(1)
        cpu = QHBoxLayout()
        cpu.setSpacing(8)
        cpu.addWidget(QLabel("train the last"))
        cpu.addWidget(self.stages)
        cpu.addWidget(QLabel("backbone stages;"))
        cpu.addWidget(self.cached)
        cpu.addStretch(1)

        self.model_help, self.method_help, self.epochs_help, self.batch_help = (help_label() for _ in range(4))
        self.dim_help = help_label(
            "Every power-of-two prefix is trained too (nested), so the explorer can search with fewer "
            "dimensions; a binary code takes dimension/8 bytes."
        )
        self.cached_help = help_label()
        self.resolution_help = help_label(
            "Searching always uses the model's input size. Training at 160 px takes about half the time of "
            "224 px and keeps most of the gain (unseen car models: Recall@1 +14.7 points, +17.6 at 224)."
        )
        self.warnings = QLabel()
        self.warnings.setWordWrap(True)
        self.warnings.setTextFormat(Qt.TextFormat.RichText)
        self.warnings.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.estimate = QLabel("Looking at this computer…")
        self.estimate.setWordWrap(True)
        self.estimate.setTextFormat(Qt.TextFormat.RichText)
        # Rich text is laid out at its one-line width unless the label may shrink: let the column decide.
        self.estimate.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)

        grid = QGridLayout(self)
        grid.setVerticalSpacing(2)
        grid.setHorizontalSpacing(12)
        grid.setColumnStretch(1, 1)
        rows: list[tuple[str, QWidget | QHBoxLayout, QLabel]] = [
            ("Starting model", self.model, self.model_help),
            ("Method", self.method, self.method_help),
            ("Epochs", epochs, self.epochs_help),
            ("Batches", batch, self.batch_help),
            ("Embedding dimension", self.dim, self.dim_help),
            ("Device", self.device, help_label("The GPU when there is one; a CPU works too, more slowly.")),
            ("Backbone", cpu, self.cached_help),
            ("Training resolution", self.resolution, self.resolution_help),
        ]
        for i, (label, field, help_) in enumerate(rows):
            # Label, field, and the help line under the field in a grid row of its own: wrapped labels
            # nested in form fields get clipped, grid rows give them their height.
            grid.addWidget(QLabel(label), 3 * i, 0)
            if isinstance(field, QHBoxLayout):
                grid.addLayout(field, 3 * i, 1)
            else:
                grid.addWidget(field, 3 * i, 1)
            grid.addWidget(help_, 3 * i + 1, 1)
            grid.setRowMinimumHeight(3 * i + 2, 8)
        time_label = QLabel("Time")
        grid.addWidget(time_label, 3 * len(rows), 0, Qt.AlignmentFlag.AlignTop)
        grid.addWidget(self.estimate, 3 * len(rows), 1)
        grid.addWidget(self.warnings, 3 * len(rows) + 1, 1)
        grid.setRowStretch(3 * len(rows) + 2, 1)

        self.model.currentIndexChanged.connect(self._model_changed)
        self.method.currentIndexChanged.connect(self._method_changed)
        self.device.currentIndexChanged.connect(self._device_changed)
        self.cached.toggled.connect(self._update_help)
        self.resolution.currentIndexChanged.connect(self._update_help)
        for spin in (self.epochs, self.classes_per_batch, self.per_class):
            spin.valueChanged.connect(self._update_help)
        self._stages_before = self.stages.value()
        self.stages.valueChanged.connect(self._stages_changed)
        self._model_changed()
        self._stages_changed()

    # -- the machine, probed once by the wizard ------------------------------------------------------------
    def set_environment(self, env: Environment) -> None:
        self.environment = env
        current = self.method.currentData() or "normsoftmax"
        refill_combo(self.method, [(name, name, summary) for name, summary in env.methods], keep=current)
        threads = env.cpu_threads
        devices: list[tuple[str, object]] = (
            [(f"GPU: {env.gpu_name or env.gpu}", env.gpu)] if env.gpu is not None else []
        )
        devices.append((f"CPU ({threads} thread{'s' if threads != 1 else ''})", "cpu"))
        refill_combo(self.device, devices)
        self._method_changed()
        self._device_changed()
        self.completeChanged.emit()

    def add_starting_model(self, label: str, path: Path | None, select: bool = True) -> None:
        """Offer another model to start from (tests, and models saved earlier)."""
        self.model.addItem(label, str(path) if path is not None else None)
        if select:
            self.model.setCurrentIndex(self.model.count() - 1)

    def isComplete(self) -> bool:
        return self.environment is not None

    def initializePage(self) -> None:
        parts = self.parts()
        if parts is not None:
            # A batch cannot hold more classes than there are: show the composition the trainer will use.
            self.classes_per_batch.setMaximum(max(2, len(parts[0].classes)))
        self.apply_recipe()
        self._shown = True
        self._update_help()

    def parts(self) -> tuple[LabelledFolder, LabelledFolder | None, LabelledFolder | None] | None:
        """(what trains, what chooses the epoch to keep, what is held out to show), as the run will have them."""
        wizard = self.fw()
        everything = wizard.everything
        split = wizard.split()
        if everything is not None:
            fitted, selection = carve_validation(everything, "images")
            return fitted, selection, None
        if split is None:
            return None
        fitted, selection = carve_validation(split[0], wizard.protocol())
        return fitted, selection, split[1]

    def apply_recipe(self, force: bool = False) -> None:
        """Set the widgets to the default recipe for the training part and the device (trainer.recipe), once
        per (part, device): going back and forth keeps what the person changed."""
        parts = self.parts() if self.wizard() is not None else None
        if parts is None:
            return
        fitted = parts[0]
        device = self.device.currentData() or "cpu"
        key = (str(fitted.root), len(fitted.samples), tuple(fitted.classes), device)
        if key == self._recipe_for and not force:
            return
        self._recipe_for = key
        recipe = default_recipe(FolderShape.of(fitted), device)
        self.epochs.setValue(recipe.epochs)
        self.classes_per_batch.setValue(recipe.classes_per_batch)
        self.per_class.setValue(recipe.per_class)
        self.stages.setValue(self.BACKBONE_STAGES if recipe.trainable_stages is None else recipe.trainable_stages)
        self.cached.setChecked(recipe.cache_trunk)
        wanted = recipe.crop_size or self._input_size()
        self.resolution.setCurrentIndex(max(0, self.resolution.findData(wanted)))
        warnings = recipe_warnings(FolderShape.of(fitted), self.fw().protocol())
        self.warnings.setText("".join(f"<p>{colored('Note: ' + w + '.', WARN_COLOR)}</p>" for w in warnings))

    # -- the chosen settings --------------------------------------------------------------------------------
    def base(self) -> Path | None:
        data = self.model.currentData()
        return Path(data) if data else None

    def backbone(self) -> str:
        return str(self._card().get("backbone") or DEFAULT_BACKBONE)

    def config_fields(self) -> dict[str, Any]:
        """FitConfig arguments (trainer.config.FitConfig) for these settings; what the page has no widget for
        (the learning rate, the warm-up, the cached views) is the recipe's for the stages chosen, as
        `trainer fit --trainable-stages N` takes it."""
        epochs = self.epochs.value()
        partial = self.stages.value() < self.BACKBONE_STAGES
        cached = partial and self.cached.isChecked()
        crop = self.resolution.currentData()
        parts = self.parts() if self.wizard() is not None else None
        shape = FolderShape.of(parts[0]) if parts is not None else FolderShape(0, 0, 0)
        device = self.device.currentData() or "cpu"
        method = self.method.currentData() or "normsoftmax"
        recipe = default_recipe(
            shape, device, trainable_stages=self.stages.value() if partial else None, method=method, epochs=epochs
        )
        return {
            "method": method,
            "dim": self.dim.currentData(),
            "epochs": epochs,
            "warmup_epochs": recipe.warmup_epochs if epochs > 1 else 0,
            "lr": recipe.lr,
            "proxy_lr_mult": recipe.proxy_lr_mult,
            "choice_folds": recipe.choice_folds,
            "stretch": recipe.stretch,
            "cache_views": recipe.cache_views,
            "classes_per_batch": self.classes_per_batch.value(),
            "per_class": self.per_class.value(),
            "trainable_stages": self.stages.value() if partial else None,
            "cache_trunk": cached,
            "crop_size": crop if crop and crop != self._input_size() else None,
            "device": device,
            "num_workers": None,  # trainer.devices.default_loader_workers: most cores on a GPU, 2 on a CPU
        }

    def _card(self) -> dict[str, Any]:
        try:
            return card_summary(self.base())
        except (OSError, ValueError, ModelFileError):
            return card_summary(None)

    def _input_size(self) -> int:
        return int(self._card().get("input_size") or 224)

    # -- reactions ------------------------------------------------------------------------------------------
    def _model_changed(self) -> None:
        card = self._card()
        full = int(card.get("dim") or 1280)
        dims: list[tuple[str, object]] = [(f"{full} (the starting model's)", None)]
        refill_combo(self.dim, dims + [(str(d), d) for d in self.DIMS if d < full], keep=self.dim.currentData())
        self._fill_resolutions()
        if self.base() is None:
            text = "Starts from ImageNet classification features: more to learn, so more epochs help."
        elif card.get("trained"):
            text = "Already trained for retrieval on other photos: adapting it to yours needs few epochs."
        elif self.base() == BUNDLED_MODEL:
            text = "The bundled weights (not yet trained for retrieval): the same start as the ImageNet backbone."
        else:
            text = "Not trained for retrieval yet: ImageNet features, like the backbone."
        self.model_help.setText(text)
        self._update_help()

    def _method_changed(self) -> None:
        tip = self.method.currentData(Qt.ItemDataRole.ToolTipRole)
        self.method_help.setText(tip or "Softmax over cosine similarity to one learned proxy per class.")

    def _fill_resolutions(self) -> None:
        """The model's input size and the standard smaller ones; the choice survives a change of model."""
        size = self._input_size()
        sizes = [(f"{size} px (the model's input size)", size)] + [(f"{r} px", r) for r in self.RESOLUTIONS if r < size]
        refill_combo(self.resolution, sizes, keep=self.resolution.currentData())

    def _device_changed(self) -> None:
        """A GPU trains the paper's way (everything, full size); a CPU the measured CPU recipe; a small folder
        keeps the backbone as it is on either (`apply_recipe` sets that)."""
        cpu = self.device.currentData() == "cpu"
        self.stages.setValue(self.CPU_STAGES if cpu else self.BACKBONE_STAGES)
        self.cached.setChecked(False)
        wanted = self.CPU_RESOLUTION if cpu else self._input_size()
        self.resolution.setCurrentIndex(max(0, self.resolution.findData(wanted)))
        self.apply_recipe(force=True)
        self._update_help()

    def _stages_changed(self) -> None:
        stages = self.stages.value()
        self.cached.setEnabled(0 < stages < self.BACKBONE_STAGES)
        was_stretch, self._stages_before = self._stages_before == 0 and self.epochs.value() == 1, stages
        parts = self.parts() if self.wizard() is not None and stages > 0 and was_stretch else None
        device = self.device.currentData() or "cpu"
        if parts is not None:  # the one epoch was the stretch's; training the backbone takes the recipe's epochs
            self.epochs.setValue(default_recipe(FolderShape.of(parts[0]), device, trainable_stages=stages).epochs)
        if stages == 0:
            self.cached.setChecked(True)  # nothing trains in the backbone: its features are computed once
            self.cached_help.setText(
                "0: the backbone stays as it is and only the embedding layer learns your classes, on features "
                f"computed once per image (the default below {head_only_below(device):,} training images on this "
                "device: there, training the backbone memorised small folders' images and searched no better on "
                "larger ones, in several times the time)."
            )
        else:
            self.cached_help.setText(
                "The first stages are generic edge and texture detectors: freezing them saves most of the work "
                "on a CPU and costs little. Caching them is faster still but gives up crop augmentation."
            )
        self._update_help()

    def _update_help(self) -> None:
        epochs = self.epochs.value()
        method = self.method.currentData() or "normsoftmax"
        if self.stages.value() == 0 and stretches({"method": method, "epochs": epochs}):
            text = (
                "1: the embedding layer is stretched along the directions that tell your classes apart, in one "
                "pass, and kept only if that finds more of each class on folds of your images; more than 1 trains "
                "it by steps instead (it gained less on small folders)."
            )
        elif self.stages.value() == 0:
            text = "Passes over the training images; the backbone stays as it is, so none is a warm-up."
        elif epochs > 1:
            text = "Passes over the training images; the first one trains only the new layers (warm-up)."
        else:
            text = "One pass over the training images (no warm-up epoch)."
        self.epochs_help.setText(text)
        parts = self.parts() if self.wizard() is not None else None
        n_classes = len(parts[0].classes) if parts else None
        c, k = self.classes_per_batch.value(), self.per_class.value()
        used = min(c, n_classes) if n_classes else c
        note = f" Only {n_classes} training classes: batches hold {used}." if n_classes and c > n_classes else ""
        self.batch_help.setText(
            f"Each batch holds {used} classes × {k} images = <b>{used * k}</b> images; two or more per class "
            f"give every image a positive.{note}"
        )
        self._update_estimate()

    # -- the estimate ---------------------------------------------------------------------------------------
    def _crop(self) -> int:
        overrides = self.fw().fit_overrides if self.wizard() is not None else {}
        return int(overrides.get("crop_size") or self.resolution.currentData() or self._input_size())

    def _update_estimate(self) -> None:
        if self.wizard() is None or self.environment is None or not self._shown:
            self.estimate.setText("Looking at this computer…")
            return
        device = self.device.currentData() or "cpu"
        key = (self.backbone(), self._crop(), device)
        timing = self._timings.get(key)
        if timing is None:
            self.estimate.setText("Estimating the time: measuring this computer's speed on the model…")
            self._measure(key)
            return
        if isinstance(timing, str):
            self.estimate.setText(colored(f"No time estimate: {timing}", WARN_COLOR))
            return
        cfg = {**self.config_fields(), **self.fw().fit_overrides}
        parts = self.run_parts(FitConfig(**cfg))
        if parts is None:
            self.estimate.setText("")
            return
        continuing = bool(self._card().get("trained")) and self.dim.currentData() is None
        shape = RunShape.of(parts[0], parts[1], continuing)
        chosen = parts[0].text()
        train_stages, eval_stages = timing
        seconds = estimate_seconds(shape, cfg, train_stages, eval_stages)
        where = "on this CPU" if device == "cpu" else "on the GPU"
        rate = 1.0 / max(sum(eval_stages), 1e-9)
        held = f", {shape.test_images:,} held-out" if shape.test_images else ""
        text = (
            f"<b>Estimate: about {format_duration(seconds)}</b> {where}, for {shape.train_images:,} training images"
            + (" (the embedding layer stretched in one pass)" if cfg.get("stretch") else f" × {cfg['epochs']} epochs")
            + f"; {chosen}{held} checked each epoch. Based on {rate:.0f} images/s through the model, measured here "
            "just now; the real time left shows once training runs."
        )
        self.estimate.setText(text)

    def run_parts(self, config: FitConfig) -> tuple[RunParts, LabelledFolder | None] | None:
        """(what trains and chooses the epoch, the held-out part) as a run with this config will have them."""
        parts = self.parts()
        if parts is None:
            return None
        fitted, selection, test = parts
        return run_parts(fitted, selection, config), test

    def _measure(self, key: tuple[str, int, str]) -> None:
        if self._timing_job is not None:
            return  # one at a time; the next starts when it ends if the settings moved on
        backbone, crop, device = key
        full = self._input_size()

        def measure(_job: Job) -> tuple[list[float], list[float]]:
            from trainer.estimate import stage_seconds

            return stage_seconds(backbone, crop, device), stage_seconds(backbone, full, device)

        job = Job("measure", measure)
        job.key = key  # type: ignore[attr-defined]
        job.signals.finished.connect(self._measured)
        job.signals.failed.connect(lambda j, msg: self._measured(j, msg))
        self._timing_job = job
        self.runner.start(job)

    def _measured(self, job: Job, timing: tuple[list[float], list[float]] | str) -> None:
        self._timing_job = None
        self._timings[job.key] = timing  # type: ignore[attr-defined]
        self._update_estimate()


# -- 4. training -----------------------------------------------------------------------------------------
