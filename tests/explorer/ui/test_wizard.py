"""The fine-tune wizard end to end on tiny generated folders: every page, refusals, cancel/resume, "use it now".

Speed: 64 px images, the test model with a 64 px input contract (from the explorer conftest), one trainable
stage with the frozen ones cached, two batches per epoch and one epoch: a run takes seconds on one core.

Set WIZARD_SCREENSHOTS=<folder> to save a picture of every page there (docs/screenshots is where the
committed ones live): `WIZARD_SCREENSHOTS=docs/screenshots pytest tests/explorer/ui/test_wizard.py -k screenshots`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import shiboken6
from PIL import Image
from PySide6.QtWidgets import QMessageBox, QTableWidget, QWizard
from pytestqt.qtbot import QtBot

from explorer.app.fine_tune import TrainingPlan
from explorer.engine.session import RetrievalSession
from explorer.ui.settings import Settings
from explorer.ui.window import MainWindow
from explorer.ui.wizard import FineTuneWizard, training_page
from explorer.ui.wizard import common as wizard_common
from trainer.progress import Progress
from trainer.recipe import HEAD_LR, STRETCH_FACTOR

SCAN_MS = 60_000
TRAIN_MS = 180_000
COLOURS = {"red": (0.9, 0.2, 0.2), "green": (0.2, 0.8, 0.3), "blue": (0.2, 0.3, 0.9), "yellow": (0.9, 0.85, 0.2)}
FAST = {"batches_per_epoch": 2, "num_workers": 0, "cache_views": 1}


def draw(path: Path, colour: tuple[float, float, float], seed: int, size: int = 64) -> Path:
    """Random grey blobs tinted with the class colour: the classes differ, the images within one vary."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    shade = np.zeros((size, size), np.float32)
    for _ in range(4):
        cx, cy, r = rng.uniform(0, size), rng.uniform(0, size), rng.uniform(5, 18)
        shade += np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r))
    shade = 0.35 + 0.65 * shade / max(float(shade.max()), 1e-6)
    img = shade[..., None] * np.array(colour, np.float32)[None, None, :]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((255 * img).clip(0, 255).astype(np.uint8)).save(path)
    return path


def labelled_folder(root: Path, classes: dict[str, tuple[float, float, float]] = COLOURS, per_class: int = 6) -> Path:
    for c, (name, colour) in enumerate(classes.items()):
        for i in range(per_class):
            draw(root / name / f"{name}_{i}.png", colour, seed=100 * c + i)
    return root


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The wizard's models and training runs go to the test's own folder."""
    folder = tmp_path / "data"
    monkeypatch.setenv("RETRIEVAL_EXPLORER_DATA", str(folder))
    return folder


def finish_wizard(wizard: FineTuneWizard, qtbot: QtBot) -> None:
    """Close the wizard and wait for its workers, so no run outlives its test."""
    if not shiboken6.isValid(wizard):
        return
    if wizard.training_page.running:
        wizard.training_page.cancel()
    qtbot.waitUntil(lambda: not shiboken6.isValid(wizard) or not wizard.busy, timeout=TRAIN_MS)
    if shiboken6.isValid(wizard):
        wizard.close()


class Questions(list[tuple[str, str]]):
    """Every QMessageBox.question asked (title, text), each answered with `answer`."""

    answer = QMessageBox.StandardButton.Yes


@pytest.fixture(autouse=True)
def questions(monkeypatch: pytest.MonkeyPatch) -> Questions:
    asked = Questions()

    def question(_parent: Any, title: str, text: str, *args: Any, **kwargs: Any) -> QMessageBox.StandardButton:
        asked.append((title, text))
        return asked.answer

    monkeypatch.setattr(QMessageBox, "question", staticmethod(question))
    return asked


@pytest.fixture
def make_wizard(qtbot: QtBot, data_dir: Path) -> Iterator[Callable[..., FineTuneWizard]]:
    made: list[FineTuneWizard] = []

    def make(folder: Path | None = None, **overrides: Any) -> FineTuneWizard:
        wizard = FineTuneWizard(None, folder, fit_overrides={**FAST, **overrides})
        wizard.resize(940, 720)
        wizard.show()
        made.append(wizard)
        return wizard

    yield make
    for wizard in made:
        finish_wizard(wizard, qtbot)


def shot(widget: Any, name: str) -> None:
    folder = os.environ.get("WIZARD_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        assert widget.grab().save(str(Path(folder) / f"wizard-{name}.png"))


def choose_fast_settings(wizard: FineTuneWizard, qtbot: QtBot, model: Path) -> None:
    """On the settings page: the 64 px test model, 64-d, one epoch, 2 classes × 3 images, last stage only."""
    page = wizard.settings_page
    qtbot.waitUntil(page.isComplete, timeout=SCAN_MS)
    page.add_starting_model("Test model (ImageNet weights, 64 px input)", model)
    page.stages.setValue(1)
    page.epochs.setValue(1)
    page.dim.setCurrentIndex(page.dim.findData(64))
    page.classes_per_batch.setValue(2)
    page.per_class.setValue(3)
    page.device.setCurrentIndex(page.device.findData("cpu"))
    page.cached.setChecked(True)
    page.stages.setValue(1)


def cell(table: QTableWidget, row: int, col: int) -> str:
    item = table.item(row, col)
    assert item is not None, (row, col)
    return item.text()


def next_enabled(wizard: QWizard) -> bool:
    return wizard.button(QWizard.WizardButton.NextButton).isEnabled()


# -- the whole way through ------------------------------------------------------------------------------


def test_walks_through_every_page_and_saves_the_model(
    qtbot: QtBot, make_wizard: Callable[..., FineTuneWizard], tmp_path: Path, small_model_path: Path, data_dir: Path
) -> None:
    folder = labelled_folder(tmp_path / "colours")
    (folder / "red" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    wizard = make_wizard(folder)

    # 1. The folder is checked in a worker; Next opens when it can train.
    page1 = wizard.folder_page
    qtbot.waitUntil(page1.isComplete, timeout=SCAN_MS)
    assert next_enabled(wizard)
    assert "<b>4</b> classes, <b>24</b> images" in page1.summary.text()
    assert page1.report is not None and page1.report.counts == dict.fromkeys(COLOURS, 6)
    assert page1.skipped.rowCount() == 1 and cell(page1.skipped, 0, 0) == "red/broken.jpg"
    assert page1.chart.bars is not None

    # 2. My classes by default: 2 of each class's 6 images held out, none in both parts.
    wizard.next()
    page2 = wizard.split_page
    assert page2.by_images.isChecked() and page2.isComplete() and page2.protocol() == "images"
    split = page2.split()
    assert split is not None
    train, test = split
    assert train.counts() == dict.fromkeys(COLOURS, 4) and test.counts() == dict.fromkeys(COLOURS, 2)
    assert not set(train.samples) & set(test.samples) and "8 images" in page2.test_title.text()
    # New classes: two classes train, two are held out, none in both.
    page2.auto.setChecked(True)
    split = page2.split()
    assert split is not None and page2.protocol() == "classes"
    train, test = split
    assert len(train.classes) == len(test.classes) == 2 and not set(train.classes) & set(test.classes)
    assert page2.train_list.count() == 2 and "12 images" in page2.test_title.text()
    page2.seed.setValue(7)  # another seed, another (still valid) split
    assert page2.split() is not None
    page2.by_images.setChecked(True)

    # 3. Settings, with a measured time estimate.
    wizard.next()
    choose_fast_settings(wizard, qtbot, small_model_path)
    page3 = wizard.settings_page
    assert page3.method.count() >= 5 and page3.method.currentData() == "normsoftmax"
    assert page3.method_help.text()
    qtbot.waitUntil(lambda: "Estimate" in page3.estimate.text(), timeout=SCAN_MS)
    assert "measured here" in page3.estimate.text()
    plan = wizard.plan()
    assert (plan.config.trainable_stages, plan.config.cache_trunk, plan.config.dim) == (1, True, 64)
    assert plan.selection is not None and plan.protocol == "images"  # the epoch is chosen on training images
    assert not set(plan.selection.samples) & set(plan.train.samples)
    assert plan.test is not None and not set(plan.test.samples) & set(plan.selection.samples)

    # 4. Training in a worker: live curves, then Next.
    wizard.next()
    page4 = wizard.training_page
    assert not wizard.button(QWizard.WizardButton.BackButton).isEnabled()  # no going back mid-run
    qtbot.waitUntil(page4.isComplete, timeout=TRAIN_MS)
    assert page4.losses and all(np.isfinite(page4.losses))
    assert [e for e, _ in page4.epochs] == [0, 1]
    assert "Starting model on the held-out images" in page4.log.toPlainText()
    assert wizard.button(QWizard.WizardButton.BackButton).isEnabled()

    # 5. The result against the starting model, saved under a name.
    wizard.next()
    page5 = wizard.result_page
    cells = [cell(page5.table, r, c) for r in range(2) for c in range(3)]
    assert all(c.endswith("%") for c in cells[0:2] + cells[3:5]) and "points" in cells[2]
    assert page5.name.text() == "colours-normsoftmax"
    page5.evaluate_details()
    qtbot.waitUntil(page5.details.isVisible, timeout=TRAIN_MS)
    assert cell(page5.details, 0, 0) == "64"
    page5.save()
    qtbot.waitUntil(lambda: page5.saved is not None, timeout=SCAN_MS)
    saved = data_dir / "models" / "colours-normsoftmax"
    assert page5.saved == saved
    assert Path(f"{saved}.safetensors").exists() and Path(f"{saved}.json").exists()
    assert '"name": "colours-normsoftmax"' in Path(f"{saved}.json").read_text()
    assert not plan.run_dir.exists()  # checkpoint and trunk cache are gone once the model is saved


# -- refusals --------------------------------------------------------------------------------------------


def test_device_picks_the_recipe_measured_for_it(
    qtbot: QtBot, make_wizard: Callable[..., FineTuneWizard], tmp_path: Path, small_model_path: Path
) -> None:
    """A small folder keeps the backbone as it is on either device (trainer.recipe.HEAD_ONLY_BELOW); stages
    chosen by hand get that family's rates, as `trainer fit --trainable-stages N` does."""
    wizard = make_wizard(labelled_folder(tmp_path / "colours"))
    qtbot.waitUntil(wizard.folder_page.isComplete, timeout=SCAN_MS)
    wizard.next()
    wizard.next()
    page = wizard.settings_page
    qtbot.waitUntil(page.isComplete, timeout=SCAN_MS)
    page.model.setCurrentIndex(page.model.findData(None))  # the ImageNet backbone: 224 px input
    assert [page.resolution.itemData(i) for i in range(page.resolution.count())] == [224, 192, 160, 128]

    def chosen() -> tuple[object, ...]:
        f = page.config_fields()
        return f["trainable_stages"], f["cache_trunk"], f["crop_size"], f["lr"], f["warmup_epochs"], f["stretch"]

    page.device.addItem("GPU: pretend", "cuda")
    page.device.setCurrentIndex(page.device.findData("cuda"))
    assert page.epochs.value() == 1
    assert chosen() == (0, True, None, 0.01, 0, STRETCH_FACTOR)  # stretched in one pass: no rate
    page.epochs.setValue(10)  # more than one epoch asks for steps, as `trainer fit --epochs 10` does
    assert chosen() == (0, True, None, HEAD_LR, 0, 0.0)
    page.epochs.setValue(1)
    page.stages.setValue(page.BACKBONE_STAGES)  # the whole backbone trains: nothing frozen, nothing to cache
    assert chosen() == (None, False, None, 0.01, 1, 0.0) and page.epochs.value() > 1  # the stretch's 1 epoch went
    assert not page.cached.isEnabled()

    page.device.setCurrentIndex(page.device.findData("cpu"))
    assert chosen() == (0, True, None, 0.01, 0, STRETCH_FACTOR)
    page.stages.setValue(6)
    page.cached.setChecked(False)
    page.epochs.setValue(10)
    assert chosen() == (6, False, None, 0.01, 1, 0.0)
    page.cached.setChecked(True)
    assert page.config_fields()["cache_trunk"] is True
    page.stages.setValue(page.BACKBONE_STAGES)  # the whole backbone trains: caching means nothing then
    assert (page.config_fields()["trainable_stages"], page.config_fields()["cache_trunk"]) == (None, False)

    page.add_starting_model("Test model (64 px input)", small_model_path)
    assert [page.resolution.itemData(i) for i in range(page.resolution.count())] == [64]
    assert page.config_fields()["crop_size"] is None  # the model's own size


def test_folder_check_progress_in_words() -> None:
    assert wizard_common.progress_words(None) == ""
    assert wizard_common.progress_words(Progress(1200, 0, 600.0, "scanning")) == " 1,200 images found so far"
    assert wizard_common.progress_words(Progress(1000, 5000, 100.0, "checking")) == " 1,000 of 5,000 images, 0:40 left"


def test_refuses_a_folder_with_one_class_and_says_why(
    qtbot: QtBot, make_wizard: Callable[..., FineTuneWizard], tmp_path: Path
) -> None:
    folder = labelled_folder(tmp_path / "pets", {"cats": COLOURS["red"]}, per_class=3)
    wizard = make_wizard(folder)
    page = wizard.folder_page
    qtbot.waitUntil(lambda: page.report is not None, timeout=SCAN_MS)
    text = page.problems.text()
    assert "only one class ('cats')" in text and "metric learning needs at least two" in text
    assert page.problems.isVisible()
    assert not page.isComplete() and not next_enabled(wizard)

    # Fixing the folder (a second class) opens the way.
    labelled_folder(folder, {"dogs": COLOURS["blue"]}, per_class=3)
    page.check.check(folder, force=True)
    qtbot.waitUntil(page.isComplete, timeout=SCAN_MS)
    assert next_enabled(wizard) and page.problems.text() == ""
    # Two classes cannot be split by class: the split page asks for a test folder instead.
    wizard.next()
    assert not wizard.split_page.auto.isEnabled() and wizard.split_page.existing.isChecked()
    assert not wizard.split_page.isComplete()
    assert "Choose the test folder" in wizard.split_page.problems.text()


def test_a_dataset_with_train_and_test_folders_uses_them(
    qtbot: QtBot, make_wizard: Callable[..., FineTuneWizard], tmp_path: Path
) -> None:
    root = tmp_path / "dataset"
    labelled_folder(root / "train", {"red": COLOURS["red"], "green": COLOURS["green"]}, per_class=2)
    labelled_folder(root / "test", {"blue": COLOURS["blue"], "yellow": COLOURS["yellow"]}, per_class=2)
    wizard = make_wizard(root)
    qtbot.waitUntil(wizard.folder_page.isComplete, timeout=SCAN_MS)
    assert "It holds <b>train/</b> and <b>test/</b>" in wizard.folder_page.summary.text()
    wizard.next()
    page = wizard.split_page
    assert page.existing.isChecked() and page.test_row.path() == root / "test"
    qtbot.waitUntil(page.isComplete, timeout=SCAN_MS)
    split = page.split()
    assert split is not None
    assert (split[0].classes, split[1].classes) == (["green", "red"], ["blue", "yellow"])


# -- cancel and resume -----------------------------------------------------------------------------------


def test_cancel_keeps_the_checkpoint_and_resume_finishes_the_run(
    qtbot: QtBot,
    make_wizard: Callable[..., FineTuneWizard],
    tmp_path: Path,
    small_model_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    wizard = make_wizard(labelled_folder(tmp_path / "colours"), batches_per_epoch=4)
    qtbot.waitUntil(wizard.folder_page.isComplete, timeout=SCAN_MS)
    wizard.next()
    wizard.next()
    choose_fast_settings(wizard, qtbot, small_model_path)
    page = wizard.training_page
    # Cancel from inside the training thread right after its first batch, so the run stops at step 1 exactly;
    # a cancel sent from the GUI thread lands after however many batches ran meanwhile.
    real_train = training_page.train

    def train_cancelled_after_first_batch(plan: TrainingPlan, callbacks: Any, cancelled: Callable[[], bool]) -> Any:
        on_batch = callbacks.on_batch

        def batch(step: int, epoch: int, loss: float, lr: float) -> None:
            on_batch(step, epoch, loss, lr)
            if step == 1 and page.job is not None:
                page.job.cancel()

        callbacks.on_batch = batch
        return real_train(plan, callbacks, cancelled)

    monkeypatch.setattr(training_page, "train", train_cancelled_after_first_batch)
    wizard.next()
    plan: TrainingPlan | None = page.plan
    assert plan is not None
    qtbot.waitUntil(lambda: page.state == "cancelled", timeout=TRAIN_MS)
    assert plan.checkpoint.exists()
    assert page.resume_button.isVisible() and not page.isComplete()
    assert "checkpoint" in page.status.text()
    assert wizard.button(QWizard.WizardButton.BackButton).isEnabled()  # settings may change after a cancel

    monkeypatch.setattr(training_page, "train", real_train)
    page.resume_button.click()
    qtbot.waitUntil(page.isComplete, timeout=TRAIN_MS)
    assert "resuming at epoch 1, batch 2 (step 1)" in page.log.toPlainText()
    assert page.result is not None and page.result.resumed_from_step == 1
    assert page.result.card.recipe["steps"] == 4
    assert [e for e, _ in page.epochs] == [0, 1]


# -- the model kept, and what is asked ------------------------------------------------------------------


def to_result_page(wizard: FineTuneWizard, qtbot: QtBot, model: Path) -> None:
    qtbot.waitUntil(wizard.folder_page.isComplete, timeout=SCAN_MS)
    wizard.next()
    wizard.next()
    choose_fast_settings(wizard, qtbot, model)
    wizard.next()
    qtbot.waitUntil(wizard.training_page.isComplete, timeout=TRAIN_MS)
    wizard.next()


def test_a_model_no_better_than_the_start_is_used_only_after_a_question(
    qtbot: QtBot, make_wizard: Callable[..., FineTuneWizard], tmp_path: Path, small_model_path: Path,
    questions: Questions,
) -> None:  # fmt: skip
    wizard = make_wizard(labelled_folder(tmp_path / "colours"))
    to_result_page(wizard, qtbot, small_model_path)
    page, training = wizard.result_page, wizard.training_page
    assert training.result is not None
    training.result = dataclasses.replace(training.result, kept_epoch=0)  # as when no epoch beat the start
    page.initializePage()
    assert "No epoch beat the starting model" in page.verdict.text()
    assert page.use_button.text() == "Use it now…" and not page.use_button.isDefault()
    ready: list[Path] = []
    wizard.modelReady.connect(ready.append)
    questions.answer = QMessageBox.StandardButton.No
    page.use_button.click()
    assert len(questions) == 1 and "starting model under a new name" in questions[0][1]
    assert page.saved is None and not ready  # nothing saved, nothing switched
    questions.answer = QMessageBox.StandardButton.Yes
    with qtbot.waitSignal(wizard.modelReady, timeout=SCAN_MS):
        page.use_button.click()


def test_closing_after_a_finished_run_asks_and_says_where_the_run_is_kept(
    qtbot: QtBot, make_wizard: Callable[..., FineTuneWizard], tmp_path: Path, small_model_path: Path,
    questions: Questions,
) -> None:  # fmt: skip
    wizard = make_wizard(labelled_folder(tmp_path / "colours"))
    to_result_page(wizard, qtbot, small_model_path)
    plan = wizard.training_page.plan
    assert plan is not None
    questions.answer = QMessageBox.StandardButton.No
    wizard.reject()
    assert wizard.isVisible() and len(questions) == 1
    assert str(plan.out.parent) in questions[0][1] and "not saved" in questions[0][1]
    questions.answer = QMessageBox.StandardButton.Yes
    wizard.reject()
    assert not wizard.isVisible()


def test_the_wizard_and_trainer_fit_build_the_same_recipe_for_the_same_folder(
    qtbot: QtBot, make_wizard: Callable[..., FineTuneWizard], tmp_path: Path
) -> None:
    from trainer.cli import _parser, recipe_from_args

    folder = labelled_folder(tmp_path / "colours", per_class=10)
    wizard = make_wizard(folder)
    wizard.fit_overrides.clear()
    qtbot.waitUntil(wizard.folder_page.isComplete, timeout=SCAN_MS)
    wizard.next()
    wizard.next()
    page = wizard.settings_page
    qtbot.waitUntil(page.isComplete, timeout=SCAN_MS)
    page.device.setCurrentIndex(page.device.findData("cpu"))
    plan = wizard.plan()
    args = _parser().parse_args(["fit", str(folder), "--out", str(tmp_path / "m"), "--device", "cpu"])
    cli = recipe_from_args(args, plan.train, "cpu")
    assert plan.config.key() == cli.key()
    assert (plan.config.epochs, plan.config.per_class, plan.config.trainable_stages) == (cli.epochs, cli.per_class, 0)


# -- use it now ------------------------------------------------------------------------------------------


def test_use_it_now_switches_the_window_to_the_new_model_and_queries_again(
    qtbot: QtBot, tmp_path: Path, small_model_path: Path, ui_session: RetrievalSession, data_dir: Path
) -> None:
    folder = labelled_folder(tmp_path / "colours")

    def factory(path: Path | None) -> RetrievalSession:
        if path is None:
            return ui_session
        session = RetrievalSession(path, device="cpu", batch_size=4)
        _ = session.embedder
        return session

    window = MainWindow(Settings.at(tmp_path / "settings.ini"), session_factory=factory)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(lambda: window.session is not None, timeout=SCAN_MS)
    with qtbot.waitSignal(window.indexFinished, timeout=TRAIN_MS):
        window.open_folder(folder)
    query = folder / "blue" / "blue_0.png"
    with qtbot.waitSignal(window.queryFinished, timeout=SCAN_MS, check_params_cb=lambda o: o.searched):
        window.set_query_path(query)

    action = next(a for a in window.actions() if a.shortcut().toString() == "Ctrl+T")
    action.trigger()
    wizard: FineTuneWizard = window.fine_tune_wizard
    wizard.fit_overrides.update(FAST)
    try:
        to_result_page(wizard, qtbot, small_model_path)
        assert wizard.folder_page.row.path() == folder.resolve()  # the window's folder, already chosen
        with qtbot.waitSignal(wizard.modelReady, timeout=SCAN_MS) as ready:
            wizard.result_page.use_button.click()
    finally:
        finish_wizard(wizard, qtbot)
    new_model = ready.args[0]
    assert new_model == data_dir / "models" / "colours-normsoftmax"

    # The window loads the new model, indexes the folder again under it, and searches the query again.
    def requeried() -> bool:
        s, o = window.session, window.outcome
        return s is not None and s.model_path == new_model and o is not None and o.searched

    qtbot.waitUntil(requeried, timeout=TRAIN_MS)
    session = window.session
    assert session is not None and session.card.name == "colours-normsoftmax" and session.card.dim == 64
    assert window.settings.model_path == new_model
    expected = session.query(query, folder, k=window.k_spin.value())
    assert window.outcome is not None and window.outcome.float_ranking is not None
    got = [(r.relpath, r.hamming_distance) for r in window.outcome.float_ranking.results]
    assert got == [(r.relpath, r.hamming_distance) for r in expected.float_ranking.results]
    assert len(window.outcome.embedding) == 64
    window.close()


# -- screenshots -----------------------------------------------------------------------------------------


def striped_folder(root: Path, classes: int = 8, per_class: int = 10) -> Path:
    """Stripes at one angle per class in random colours: a class is an orientation, colour is a nuisance.

    ImageNet features care about colour, so the starting model confuses the classes; training on some
    angles teaches it to ignore colour, which carries over to the held-out angles (a visible gain).
    """
    names = ["amber", "basalt", "coral", "dune", "fern", "glacier", "heather", "indigo", "jade", "kelp"]
    yy, xx = np.mgrid[0:64, 0:64].astype(np.float32)
    for c in range(classes):
        theta = np.pi * c / classes
        for i in range(per_class):
            rng = np.random.default_rng(1000 * c + i)
            wave = np.sin(rng.uniform(0.18, 0.24) * (xx * np.cos(theta) + yy * np.sin(theta)) + rng.uniform(0, 6.3))
            t = (0.5 + 0.5 * wave)[..., None]
            img = t * rng.uniform(0, 1, 3) + (1 - t) * rng.uniform(0, 1, 3) + rng.normal(0, 0.05, (64, 64, 3))
            path = root / names[c] / f"{names[c]}_{i:02d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray((255 * img.clip(0, 1)).astype(np.uint8)).save(path)
    return root


@pytest.mark.skipif(not os.environ.get("WIZARD_SCREENSHOTS"), reason="set WIZARD_SCREENSHOTS=<folder> to take them")
def test_screenshots_of_every_page(
    qtbot: QtBot, make_wizard: Callable[..., FineTuneWizard], tmp_path: Path, small_model_path: Path
) -> None:
    refused = striped_folder(tmp_path / "refused", classes=3, per_class=6)
    for extra in list((refused / "coral").iterdir())[1:]:
        extra.unlink()
    wizard = make_wizard(refused, batches_per_epoch=None, cache_views=2)
    qtbot.waitUntil(lambda: wizard.folder_page.report is not None, timeout=SCAN_MS)
    shot(wizard, "1-folder-refused")

    folder = striped_folder(tmp_path / "stripes")
    (folder / "coral" / "scan_0042.jpg").write_bytes(b"\xff\xd8\xff\xe0 cut short")
    (folder / "dune" / "notes.jpg").write_text("not a picture")
    wizard.folder_page.set_folder(folder)
    qtbot.waitUntil(wizard.folder_page.isComplete, timeout=SCAN_MS)
    shot(wizard, "1-folder")
    wizard.next()
    shot(wizard, "2-split")
    wizard.next()
    page3 = wizard.settings_page
    qtbot.waitUntil(lambda: "Estimate" in page3.estimate.text(), timeout=SCAN_MS)
    shot(wizard, "3-settings")  # the defaults, with the bundled model

    choose_fast_settings(wizard, qtbot, small_model_path)
    page3.epochs.setValue(6)
    page3.classes_per_batch.setValue(4)
    page3.stages.setValue(2)
    wizard.next()
    qtbot.waitUntil(wizard.training_page.isComplete, timeout=TRAIN_MS)
    shot(wizard, "4-training")
    wizard.next()
    wizard.result_page.evaluate_details()
    qtbot.waitUntil(wizard.result_page.details.isVisible, timeout=TRAIN_MS)
    shot(wizard, "5-result")


def test_the_result_names_the_stretch_kept_or_not() -> None:
    """A small folder's run (trainer.class_stretch) has no epochs to speak of: the result says what was kept."""
    from explorer.ui.wizard.result_page import kept_sentence
    from trainer.epoch_choice import RunParts
    from trainer.folders import LabelledFolder

    folder = LabelledFolder(
        Path("x"), ["a", "b"], [(Path(f"{c}{i}"), k) for k, c in enumerate("ab") for i in range(10)]
    )
    parts = RunParts(folder, None, 5, stretch=True)
    kept = kept_sentence(1, 1, parts)
    assert "stretched" in kept and "was kept" in kept and "stretch fitted on the others" in kept
    assert "Epoch" not in kept
    refused = kept_sentence(0, 1, parts)
    assert "did not beat" in refused and "starting model is kept" in refused
    by_steps = RunParts(folder, None, 5)  # trained by steps: epochs, as before
    assert kept_sentence(3, 10, by_steps).startswith("Epoch 3 of 10 was kept")
