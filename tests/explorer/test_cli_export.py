"""`explorer export` and `explorer query --in milvus://...`, end to end on a small generated folder and Milvus Lite."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import pytest

from explorer.cli import EXIT_BAD_MODEL, EXIT_MISSING, EXIT_NO_FOLDER, EXIT_OK, EXIT_USAGE, main
from explorer.engine.parquet_export import read_parquet

pytestmark = pytest.mark.skipif(
    find_spec("pymilvus") is None or find_spec("milvus_lite") is None or find_spec("pyarrow") is None,
    reason="the export packages are not installed (pip install 'retrieval-explorer[export]'; Linux and macOS)",
)

Run = Callable[..., tuple[int, str, str]]  # the `run` fixture: tests/explorer/conftest.py


@pytest.fixture
def exported(run: Run, image_folder: Path, tmp_path: Path) -> str:
    """The folder indexed and exported to a Milvus Lite store; returns the `--in` argument for it."""
    assert run("index", image_folder, "--quiet")[0] == EXIT_OK
    code, out, err = run("export", image_folder, "--to", "milvus", tmp_path / "store.db", "--quiet")
    assert code == EXIT_OK, err
    assert out.startswith("12 images of 1 folder exported to Milvus") and "query it with" in out
    return f"milvus://{tmp_path / 'store.db'}"


def test_a_milvus_query_prints_what_the_folder_query_prints(run: Run, image_folder: Path, exported: str) -> None:
    query = image_folder / "a" / "img_02.jpg"  # one of the exported images: not its own first result
    for extra in ([], ["--binary"]):
        local = run("query", query, "--in", image_folder, "-k", 10, *extra)
        remote = run("query", query, "--in", exported, "-k", 10, *extra)
        assert remote[0] == EXIT_OK, remote[2]
        assert remote[1] == local[1]  # same images, same distances, same order, same lines
        assert not any(line.endswith("a/img_02.jpg") for line in remote[1].splitlines()[2:])
    code, out, _ = run("query", query, "--in", exported, "-k", 3, "--json")
    data = json.loads(out)
    assert code == EXIT_OK and data["folder"].startswith(exported) and len(data["results"]) == 3
    assert all(Path(r["path"]).parent.parent == image_folder.resolve() for r in data["results"])


def test_export_summary_as_json_and_to_parquet(run: Run, image_folder: Path, tmp_path: Path) -> None:
    assert run("index", image_folder, "--quiet")[0] == EXIT_OK
    code, out, err = run("export", image_folder, "--to", "parquet", tmp_path / "e.parquet", "--json")
    assert code == EXIT_OK, err
    summary = json.loads(out)
    assert summary["rows"] == 12 and summary["to"] == "parquet"
    back = read_parquet(tmp_path / "e.parquet")
    assert back.embeddings.shape == (12, 1280) and sorted(back.relpaths)[0] == "a/img_00.jpg"
    code, out, _ = run("export", image_folder, "--to", "milvus", f"{tmp_path / 's.db'}#mine", "--json")
    assert code == EXIT_OK and json.loads(out)["query"] == f"milvus://{tmp_path / 's.db'}#mine"


def test_bad_input_is_one_sentence(run: Run, image_folder: Path, tmp_path: Path, exported: str) -> None:
    query = image_folder / "a" / "img_02.jpg"
    for args, code in [
        (["export", image_folder, "--to", "milvus", tmp_path / "store"], EXIT_USAGE),  # not .db
        (["export", image_folder, "--to", "parquet"], EXIT_USAGE),
        (["export", image_folder, "--to", "sqlite", "x"], EXIT_USAGE),
        (["export", tmp_path / "photos-elsewhere", "--to", "parquet", tmp_path / "p.parquet"], EXIT_NO_FOLDER),
        (["query", query, "--in", f"milvus://{tmp_path / 'absent.db'}"], EXIT_NO_FOLDER),
        (["query", query, "--in", f"{exported}#nothing_here"], EXIT_NO_FOLDER),
        (["query", query, "--in", exported, "--dim", 64], EXIT_USAGE),
    ]:
        got, out, err = run(*args)
        assert (got, out) == (code, ""), (args, err)
        assert err.startswith("explorer: ") and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "absent.db").exists()  # a query never creates a store


def test_another_models_export_is_refused(
    exported: str, image_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    code = main(["--device", "cpu", "query", str(image_folder / "a" / "img_02.jpg"), "--in", exported])  # bundled
    _, err = capsys.readouterr()
    assert code == EXIT_BAD_MODEL
    assert "holds embeddings of model test-small-lite0" in err and len(err.strip().splitlines()) == 1


def test_missing_packages_say_how_to_install(
    run: Run, image_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run("index", image_folder, "--quiet")[0] == EXIT_OK
    for module, kind in [("pymilvus", "milvus"), ("pyarrow", "parquet")]:
        with monkeypatch.context() as m:
            m.setitem(sys.modules, module, None)  # imports of it fail as if it were not installed
            m.setitem(sys.modules, f"{module}.parquet", None)
            code, out, err = run(
                "export", image_folder, "--to", kind, tmp_path / f"x.{'db' if kind == 'milvus' else kind}"
            )
        assert (code, out) == (EXIT_MISSING, "")
        assert f"needs the {module} package, which is not installed: pip install" in err
        assert len(err.strip().splitlines()) == 1


def test_a_library_is_exported_with_its_folder_that_is_away(run: Run, tmp_path: Path, make_img: Any) -> None:
    home, usb = tmp_path / "home" / "photos", tmp_path / "usb" / "photos"
    for seed in range(6):
        make_img((home if seed < 3 else usb) / f"p{seed}.jpg", seed=seed)
    for folder in (home, usb):
        assert run("library", "add", folder)[0] == EXIT_OK
    assert run("library", "index")[0] == EXIT_OK
    (tmp_path / "usb").rename(tmp_path / "unplugged")  # its index is still in the cache: it is exported from there
    out_file = tmp_path / "library.parquet"
    code, _out, err = run("export", "library", "--to", "parquet", out_file, "--quiet")
    assert code == EXIT_OK, err
    back = read_parquet(out_file)
    assert sorted(back.relpaths) == [f"p{i}.jpg" for i in range(6)] and back.embeddings.shape == (6, 1280)
