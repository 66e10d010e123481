"""`trainer fit | eval | methods` through `trainer.cli.main`: outputs, files written and exit codes."""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from imagegen import make_cast_image, make_labelled_folder

import trainer.fit as fit_module
from trainer.card import model_paths
from trainer.cli import EXIT_BAD_MODEL, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, main
from trainer.model import load_model
from trainer.progress import Cancelled

TINY_FIT = [
    "--trainable-stages", "1", "--cache-trunk", "--crop-size", "64", "--epochs", "1", "--warmup-epochs", "0",
    "--batches-per-epoch", "2", "--classes-per-batch", "2", "--per-class", "2", "--split", "none", "--dim", "64",
    "--device", "cpu", "--workers", "0",
]  # fmt: skip
METRICS = {"R@1", "R@2", "R@4", "R@8", "MAP@R", "NMI", "F1"}


def make_folder(root: Path, classes: int, per_class: int) -> Path:
    """`root/class_{c}/{i}.png`: one blob per channel and a strong cast per class."""
    return make_labelled_folder(root, classes, per_class, draw=make_cast_image, name="{i}.png", seed_step=100)


@dataclass
class Run:
    code: int
    out: str
    err: str


def run_cli(*argv: str | Path) -> Run:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return Run(code, out.getvalue(), err.getvalue())


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_folder(tmp_path_factory.mktemp("cli") / "data", classes=4, per_class=4)


@pytest.fixture(scope="module")
def fitted(data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Run, Path]:
    out = tmp_path_factory.mktemp("models") / "tiny"
    return run_cli("fit", data, "--out", out, *TINY_FIT), out


# -- fit ------------------------------------------------------------------------------------------------


def test_fit_writes_the_model(fitted: tuple[Run, Path]) -> None:
    run, out = fitted
    assert run.code == EXIT_OK, run.err
    weights, card_path = model_paths(out)
    assert weights.exists() and card_path.exists()
    assert f"wrote {weights}: 1 epoch trained," in run.out and "; 64-d, method normsoftmax" in run.out
    assert "nan" not in run.out + run.err and "None-d" not in run.out + run.err
    model = load_model(out)
    assert model.card.trained and model.card.dim == 64 and model.card.name == "tiny"
    recipe = model.card.recipe
    assert recipe["steps"] == 2 and recipe["epochs"] == 1 and recipe["batches_per_epoch"] == 2
    assert recipe["trainable_stages"] == 1 and recipe["cache_trunk"] is True and recipe["crop_size"] == 64
    assert (recipe["classes_per_batch"], recipe["per_class"]) == (2, 2)
    assert "epoch 1/1" in run.err and "recipe: normsoftmax, 64-d" in run.err
    assert recipe["kept_epoch"] in (0, 1) and "set aside" in recipe["chosen_on"]


def test_fit_by_images_judges_held_out_images_of_every_class(data: Path, tmp_path: Path) -> None:
    split = [a if a != "none" else "images" for a in TINY_FIT]
    run = run_cli("fit", data, "--out", tmp_path / "m", *split)
    assert run.code == EXIT_OK, run.err
    assert "8 held-out images of 4 classes" in run.err  # 2 of each class's 4: every class has a positive pair
    assert "before training: R@1=" in run.err and "nan" not in run.err
    assert "held-out Recall@1: " in run.out


def test_fit_help_shows_every_default(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["fit", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for flag in ("--epochs", "--per-class", "--lr", "--backbone-lr-mult", "--trainable-stages", "--crop-size"):
        assert flag in text
    assert "2,400 images on a CPU" in text and "0.1: the backbone's lr" in text and "(default: images)" in text


def test_fit_refuses_a_one_class_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = make_folder(tmp_path / "one", classes=1, per_class=3)
    out = tmp_path / "model"
    assert main(["fit", str(data), "--out", str(out), *TINY_FIT]) == EXIT_USAGE
    captured = capsys.readouterr()
    assert "cannot train on" in captured.err and "only one class ('class_0')" in captured.err
    assert not model_paths(out)[0].exists() and not out.with_name("model.run").exists()
    # With the default split by class, the folder's own problem is still the reason given, not the split's.
    assert main(["fit", str(data), "--out", str(out)]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "only one class ('class_0')" in err and "at least 4" not in err


def test_fit_refuses_a_class_with_one_image_and_a_missing_folder(tmp_path: Path) -> None:
    data = make_folder(tmp_path / "d", classes=2, per_class=2)
    (data / "class_1" / "1.png").unlink()
    run = run_cli("fit", data, "--out", tmp_path / "m", *TINY_FIT)
    assert run.code == EXIT_USAGE and "'class_1'" in run.err and "fewer than 2 images" in run.err
    run = run_cli("fit", tmp_path / "nowhere", "--out", tmp_path / "m", *TINY_FIT)
    assert run.code == EXIT_USAGE and "not a folder" in run.err


def test_fit_on_a_flat_folder_says_why_first_and_counts_the_rest(tmp_path: Path) -> None:
    # Issue 13: a folder without class sub-folders printed one line per image before the one line that mattered.
    data = tmp_path / "flat"
    for i in range(12):
        make_folder(tmp_path / "tmp", classes=1, per_class=1)
        (tmp_path / "tmp" / "class_0" / "0.png").rename(data / f"{i}.png" if data.exists() else _mkdir(data, i))
    run = run_cli("fit", data, "--out", tmp_path / "m", *TINY_FIT)
    lines = run.err.strip().splitlines()
    assert run.code == EXIT_USAGE
    assert lines[0].startswith(f"trainer: cannot train on {data}:") and "class sub-folders" in lines[0]
    assert len(lines) == 7 and lines[-1] == "trainer: and 7 more skipped: 7 not in a class sub-folder"


def _mkdir(folder: Path, i: int) -> Path:
    folder.mkdir()
    return folder / f"{i}.png"


def test_fit_reports_skipped_files(tmp_path: Path) -> None:
    data = make_folder(tmp_path / "d", classes=1, per_class=2)
    (data / "class_0" / "broken.jpg").write_bytes(b"nope")
    run = run_cli("fit", data, "--out", tmp_path / "m", *TINY_FIT)
    assert run.code == EXIT_USAGE  # one class: it cannot train, but the skipped file is still reported
    assert "skipped" in run.err and "broken.jpg" in run.err


@pytest.mark.parametrize(
    ("param", "reason"),
    [
        ("temperature=warm", "expects float"),
        ("no_such_knob=1", "unknown hyperparameter"),
        ("temperature", "NAME=VALUE"),
    ],
)
def test_fit_refuses_a_bad_param(data: Path, tmp_path: Path, param: str, reason: str) -> None:
    run = run_cli("fit", data, "--out", tmp_path / "m", *TINY_FIT, "--param", param)
    assert run.code == EXIT_USAGE
    assert reason in run.err
    assert not model_paths(tmp_path / "m")[0].exists()


def test_fit_refuses_an_unknown_method(data: Path, tmp_path: Path) -> None:
    run = run_cli("fit", data, "--out", tmp_path / "m", *TINY_FIT, "--method", "magic")
    assert run.code == EXIT_USAGE and "unknown method 'magic'" in run.err


def test_interrupted_fit_exits_130(data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def cancelled(*_args: object, **_kwargs: object) -> None:
        raise Cancelled("stop")

    monkeypatch.setattr(fit_module, "fit", cancelled)
    run = run_cli("fit", data, "--out", tmp_path / "m", *TINY_FIT)
    assert run.code == EXIT_INTERRUPTED and "run the same command again to resume" in run.err


def test_fit_without_out_is_a_usage_error(data: Path) -> None:
    with pytest.raises(SystemExit) as info:
        run_cli("fit", data)
    assert info.value.code == 2


# -- eval -----------------------------------------------------------------------------------------------


def test_eval_json_maps_representation_dimension_metric(
    fitted: tuple[Run, Path], data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, model = fitted
    assert main(["eval", str(model), str(data), "--split", "all", "--json", "--device", "cpu"]) == EXIT_OK
    metrics = json.loads(capsys.readouterr().out)
    assert set(metrics) == {"float", "binary"}
    for per_dim in metrics.values():
        assert set(per_dim) == {"64"}  # the card's nested dimensions, as strings
        for values in per_dim.values():
            assert set(values) == METRICS
            assert all(0.0 <= v <= 1.0 for v in values.values()), values


def test_eval_reranked(fitted: tuple[Run, Path], data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, model = fitted
    scores = {}
    for method in ("none", "qe", "kreciprocal"):
        argv = ["eval", str(model), str(data), "--split", "all", "--json", "--device", "cpu", "--rerank", method]
        assert main(argv) == EXIT_OK
        scores[method] = json.loads(capsys.readouterr().out)
        assert set(scores[method]["float"]["64"]) == {"R@1", "R@2", "R@4", "R@8", "MAP@R"}  # no clustering scores
    assert main(["eval", str(model), str(data), "--split", "all", "--json", "--device", "cpu"]) == EXIT_OK
    plain = json.loads(capsys.readouterr().out)
    for kind in ("float", "binary"):  # "none" is exactly the plain evaluation's ranking
        assert scores["none"][kind]["64"]["MAP@R"] == pytest.approx(plain[kind]["64"]["MAP@R"])
        assert scores["none"][kind]["64"]["R@1"] == pytest.approx(plain[kind]["64"]["R@1"])


def test_eval_table_and_options(fitted: tuple[Run, Path], data: Path) -> None:
    _, model = fitted
    run = run_cli("eval", model, data, "--split", "all", "--no-clustering", "--dims", "64", "--max-images", "12")
    assert run.code == EXIT_OK, run.err
    lines = run.out.splitlines()
    assert lines[0].startswith("### tiny on") and "(all: 4 classes, 16 images)" in lines[0]
    header = next(line for line in lines if line.startswith("| repr"))
    assert "R@1" in header and "MAP@R" in header and "NMI" not in header
    assert any(line.startswith("| float | 64 | 256 |") for line in lines)
    assert any(line.startswith("| binary | 64 | 8 |") for line in lines)


def test_eval_with_a_missing_model_exits_5(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", str(tmp_path / "absent"), str(data), "--split", "all"]) == EXIT_BAD_MODEL
    assert "cannot load model" in capsys.readouterr().err


def test_eval_needs_enough_classes(fitted: tuple[Run, Path], tmp_path: Path) -> None:
    _, model = fitted
    small = make_folder(tmp_path / "small", classes=2, per_class=2)
    run = run_cli("eval", model, small)  # the default test split needs 4 classes
    assert run.code == EXIT_USAGE and "at least 4" in run.err
    one = make_folder(tmp_path / "one", classes=1, per_class=2)
    run = run_cli("eval", model, one, "--split", "all")
    assert run.code == EXIT_USAGE and "at least two classes" in run.err


# -- methods --------------------------------------------------------------------------------------------


def test_methods_lists_the_methods(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["methods"]) == EXIT_OK
    out = capsys.readouterr().out
    names = {line.split()[0] for line in out.splitlines() if line and not line.startswith(" ")}
    assert {"normsoftmax", "multisimilarity-das", "arcface", "triplet"} <= names
    assert "temperature=0.05" in out
