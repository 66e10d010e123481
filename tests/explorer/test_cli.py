"""`explorer` from the command line, end to end on a small generated folder."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from explorer.cli import (
    EXIT_BAD_IMAGE,
    EXIT_BAD_MODEL,
    EXIT_CACHE,
    EXIT_NO_FOLDER,
    EXIT_OK,
    EXIT_USAGE,
    main,
)
from explorer.engine.session import RetrievalSession

Run = Callable[..., tuple[int, str, str]]  # the `run` fixture: tests/explorer/conftest.py


@pytest.fixture
def indexed(run: Run, image_folder: Path) -> Path:
    code, out, _ = run("index", image_folder, "--quiet", "--batch-size", 5)
    assert code == EXIT_OK
    assert out.startswith("12 images indexed")
    return image_folder


def _query_json(run: Run, *args: Any) -> dict[str, Any]:
    code, out, err = run("query", *args, "--json")
    assert code == EXIT_OK, err
    data: dict[str, Any] = json.loads(out)
    return data


def test_index_reports_progress_and_counts(run: Run, image_folder: Path) -> None:
    code, out, err = run("index", image_folder, "--batch-size", 4)
    assert code == EXIT_OK
    assert "12 images indexed" in out and "(12 embedded, 0 unchanged, 0 removed, 0 skipped)" in out
    assert "12/12" in err  # plain progress lines when stderr is not a terminal
    code, out, _ = run("index", image_folder, "--json")
    report = json.loads(out)
    assert code == EXIT_OK
    assert (report["embedded"], report["unchanged"], report["indexed"], report["skipped"]) == (0, 12, 12, [])


def test_query_text(run: Run, indexed: Path) -> None:
    query = indexed / "a" / "img_02.jpg"
    code, out, _ = run("query", query, "--in", indexed, "-k", 4)
    assert code == EXIT_OK
    lines = out.strip().splitlines()
    assert lines[0].startswith("4 nearest to") and "float 1280-d" in lines[0]
    rows = [line.split() for line in lines[2:]]
    assert [r[0] for r in rows] == ["1", "2", "3", "4"]
    assert "a/img_02.jpg" not in [r[3] for r in rows]  # the query, one of the folder's images, is not its own result
    assert float(rows[0][1]) > 1e-3
    assert [float(r[1]) for r in rows] == sorted(float(r[1]) for r in rows)


def test_query_json(run: Run, indexed: Path) -> None:
    query = indexed / "b" / "img_09.png"
    data = _query_json(run, query, "--in", indexed, "-k", 5)
    assert data["ranking"] == "float" and data["dim"] == 1280 and data["model"] == "test-small-lite0"
    results = data["results"]
    assert [r["rank"] for r in results] == [1, 2, 3, 4, 5]
    assert query.resolve() not in [Path(r["path"]) for r in results]
    distances = [r["cosine_distance"] for r in results]
    assert distances == sorted(distances) and distances[0] > 1e-3
    assert len({r["path"] for r in results}) == 5 and all(Path(r["path"]).is_file() for r in results)


def test_query_binary_and_dim(run: Run, indexed: Path, small_model_path: Path) -> None:
    query = indexed / "a" / "img_04.jpg"
    binary = _query_json(run, query, "--in", indexed, "-k", 12, "--binary")
    assert binary["ranking"] == "binary"
    hamming = [r["hamming_distance"] for r in binary["results"]]
    assert hamming == sorted(hamming) and hamming[-1] > 0
    assert query.resolve() not in [Path(r["path"]) for r in binary["results"]]
    assert len(binary["results"]) == 11  # the 11 other images: k asks for more than there are

    small = _query_json(run, query, "--in", indexed, "-k", 6, "--dim", 128)
    assert small["dim"] == 128
    assert [r["rank"] for r in small["results"]] == list(range(1, 7))
    # The command line ranks exactly as the session API does at that dimension.
    session = RetrievalSession(small_model_path, device="cpu")
    try:
        expected = session.query(query, indexed, k=6, dim=128).float_ranking.results
    finally:
        session.close()
    assert [r["path"] for r in small["results"]] == [str(r.path) for r in expected]
    assert [r["cosine_distance"] for r in small["results"]] == pytest.approx(
        [r.cosine_distance for r in expected], abs=1e-5
    )

    both = _query_json(run, query, "--in", indexed, "-k", 3, "--dim", 64, "--binary")
    assert (both["dim"], both["ranking"]) == (64, "binary")
    assert all(0 <= r["hamming_distance"] <= 64 for r in both["results"])


def test_info_lists_skipped_files_with_reasons(run: Run, image_folder: Path, make_img: Callable) -> None:
    code, out, _ = run("info", image_folder, "--json")
    assert code == EXIT_OK
    assert json.loads(out)["indexed"] is False

    broken = image_folder / "b" / "broken.jpg"
    data = make_img(broken, seed=40, size=(160, 120)).read_bytes()
    broken.write_bytes(data[: len(data) // 2])
    (image_folder / "notes.txt").write_text("trip notes\n")
    (image_folder / "a" / "empty.png").write_bytes(b"")
    code, out, _ = run("index", image_folder, "--quiet")
    assert code == EXIT_OK
    assert "3 skipped" in out and "skipped b/broken.jpg: truncated JPEG" in out

    code, out, _ = run("info", image_folder, "--json")
    info = json.loads(out)
    assert code == EXIT_OK
    assert info["indexed"] is True and info["images"] == 12
    assert info["model"] == "test-small-lite0" and info["dim"] == 1280
    assert info["nested_dims"] == [64, 128, 256, 512, 1024, 1280]
    assert info["updated"]
    assert sorted((s["path"], s["reason"]) for s in info["skipped"]) == [
        ("a/empty.png", "zero-byte file"),
        ("b/broken.jpg", "truncated JPEG"),
        ("notes.txt", "not an image file type (.txt)"),
    ]
    code, out, _ = run("info", image_folder)
    assert code == EXIT_OK
    assert "12 images" in out and "b/broken.jpg: truncated JPEG" in out


def test_exit_codes(run: Run, indexed: Path, tmp_path: Path, make_img: Callable) -> None:
    other = tmp_path / "not_indexed"
    query = make_img(other / "q.jpg", seed=3)
    good = indexed / "a" / "img_00.jpg"

    code, _, err = run("query", query, "--in", other)
    assert code == EXIT_NO_FOLDER and "not indexed" in err

    bad = tmp_path / "bad.jpg"
    bad.write_text("definitely text")
    code, _, err = run("query", bad, "--in", indexed)
    assert code == EXIT_BAD_IMAGE and "not an image (text file)" in err
    code, _, err = run("query", tmp_path / "missing.jpg", "--in", indexed)
    assert code == EXIT_BAD_IMAGE

    missing = tmp_path / "no_such_folder"
    assert run("index", missing)[0] == EXIT_NO_FOLDER
    assert run("query", good, "--in", missing)[0] == EXIT_NO_FOLDER
    assert run("info", missing)[0] == EXIT_NO_FOLDER

    for dim in (0, 2048, -8):
        code, _, err = run("query", good, "--in", indexed, "--dim", dim)
        assert code == EXIT_USAGE and "--dim" in err
    assert run("query", good, "--in", indexed, "--dim", 100, "--binary")[0] == EXIT_USAGE
    assert run("query", good, "--in", indexed, "-k", 0)[0] == EXIT_USAGE
    assert run("index", indexed, "--batch-size", 0)[0] == EXIT_USAGE
    # A valid query still works after all of that.
    assert run("query", good, "--in", indexed, "-k", 2)[0] == EXIT_OK


def test_argument_errors_exit_2(run: Run) -> None:
    with pytest.raises(SystemExit) as exc:
        run("frobnicate")
    assert exc.value.code == EXIT_USAGE
    with pytest.raises(SystemExit) as exc:
        run("query", "x.jpg")  # --in is required
    assert exc.value.code == EXIT_USAGE


def test_unloadable_model_exits_5(tmp_path: Path, image_folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--model", str(tmp_path / "nothing"), "info", str(image_folder)])
    assert code == EXIT_BAD_MODEL
    assert "cannot load model" in capsys.readouterr().err


def test_names_that_are_not_utf8_are_indexed_queried_and_shown(run: Run, tmp_path: Path, make_img: Callable) -> None:
    """Older cameras and other systems write names in other encodings: `bad\\xff\\xfe.jpg`, a folder `alb\\xe9um/`,
    a `notes_caf\\xe9.txt` beside the photos. They used to crash the catalog's commit on every run."""
    import os

    folder = tmp_path / "drive"
    for i in range(3):
        make_img(folder / f"good_{i}.jpg", seed=i)
    raw = os.fsencode(folder)
    (Path(os.fsdecode(raw + b"/alb\xe9um"))).mkdir()
    make_img(Path(os.fsdecode(raw + b"/alb\xe9um/bad\xff\xfename.jpg")), seed=7)
    Path(os.fsdecode(raw + b"/notes_caf\xe9.txt")).write_text("not a picture")
    code, out, err = run("index", folder, "--quiet")
    assert code == EXIT_OK, err
    assert out.startswith("4 images indexed")
    code, out, err = run("query", folder / "good_0.jpg", "--in", folder, "-k", 4)
    assert code == EXIT_OK, err
    assert "alb\ufffdum/bad\ufffd\ufffdname.jpg" in out  # among the neighbours, shown readably
    code, out, err = run("query", os.fsdecode(raw + b"/alb\xe9um/bad\xff\xfename.jpg"), "--in", folder, "-k", 4)
    assert code == EXIT_OK and "3 nearest to" in out, err  # the oddly named file as the query
    out.encode("utf-8")  # printable on a UTF-8 terminal: no lone surrogates
    assert run("index", folder, "--quiet")[1].startswith("4 images indexed")  # nothing re-embedded or lost
    code, out, _ = run("info", folder)
    assert code == EXIT_OK and "4 images" in out and "notes_caf\ufffd.txt" in out


@pytest.mark.parametrize("damage", ["truncated", "random bytes"])
def test_a_damaged_catalog_is_named_set_aside_and_rebuilt(run: Run, indexed: Path, damage: str) -> None:
    """It used to make `query` say "not indexed yet" and `index` crash with a traceback."""
    import os

    code, out, _ = run("info", indexed, "--json")
    catalog = Path(json.loads(out)["catalog"])
    data = catalog.read_bytes()
    catalog.write_bytes(data[: len(data) // 3] if damage == "truncated" else os.urandom(len(data)))
    for extra in catalog.parent.glob("catalog.sqlite-*"):
        extra.unlink()
    code, _, err = run("query", indexed / "a" / "img_02.jpg", "--in", indexed)
    assert code == EXIT_NO_FOLDER and "is damaged; run: explorer index" in err
    code, out, err = run("index", indexed, "--quiet")
    assert code == EXIT_OK and "set aside as catalog.sqlite.damaged-" in err
    assert out.startswith("12 images indexed")
    assert list(catalog.parent.glob("catalog.sqlite.damaged-*"))  # kept for inspection
    code, out, _ = run("query", indexed / "a" / "img_02.jpg", "--in", indexed, "-k", 1)
    assert code == EXIT_OK and "a/img_02.jpg" in out


def test_info_counts_the_images_without_reading_their_embeddings(
    run: Run, indexed: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At 100,000 images `explorer info` took 4 s and 1.7 GB: it read every embedding to print a count."""
    from explorer.engine.catalog import Catalog

    def refuse(self: Any) -> Any:
        raise AssertionError("info read the embeddings")

    monkeypatch.setattr(Catalog, "snapshot", refuse)
    code, out, _ = run("info", indexed, "--json")
    assert code == EXIT_OK and json.loads(out)["images"] == 12


def test_info_on_a_folder_where_nothing_could_be_indexed_lists_why(run: Run, tmp_path: Path) -> None:
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "cut.jpg").write_bytes(b"\xff\xd8\xff\xe0 cut short")
    assert run("index", folder, "--quiet")[0] == EXIT_OK
    code, out, _ = run("info", folder)
    assert code == EXIT_OK and "0 images" in out
    assert "1 skipped" in out and "cut.jpg" in out and "last updated None" not in out


def test_a_device_that_is_not_there_and_an_unreadable_folder_are_sentences(
    run: Run, image_folder: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code = main(["--device", "cuda", "index", str(image_folder)])
    err = capsys.readouterr().err
    assert code == EXIT_USAGE and "no CUDA device" in err and "--device cpu" in err and "Traceback" not in err

    import trainer.images as images_module

    def refuse(path: str) -> Any:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(images_module.os, "scandir", refuse)
    code, _, err = run("index", image_folder)
    assert code == EXIT_NO_FOLDER and "permission denied" in err.lower() and "Traceback" not in err


def test_a_read_only_cache_answers_queries_with_a_note_and_index_exits_6(
    run: Run, indexed: Path, monkeypatch: pytest.MonkeyPatch, make_img: Callable[..., Path]
) -> None:
    import sqlite3

    from explorer.engine import catalog as catalog_module

    real_connect = sqlite3.connect

    def read_only(database: str, *args: Any, uri: bool = False, **kwargs: Any) -> sqlite3.Connection:
        if not uri:  # as SQLite opens a file on a read-only drive
            database, uri = f"file:{Path(database).resolve()}?mode=ro", True
        return real_connect(database, *args, uri=uri, **kwargs)

    monkeypatch.setattr(catalog_module.sqlite3, "connect", read_only)
    query = sorted(indexed.rglob("*.jpg"))[0]
    code, out, err = run("query", query, "--in", indexed, "-k", 3)
    assert code == EXIT_OK and out.startswith("3 nearest to")
    assert "is read-only: searching what is already indexed, nothing new is saved" in err
    make_img(indexed / "new.jpg", seed=42)
    code, out, err = run("index", indexed, "--quiet")
    assert code == EXIT_CACHE
    assert "is read-only: cannot index now; free some space on it, or set RETRIEVAL_EXPLORER_CACHE" in err
    assert "Traceback" not in err


def test_a_float_query_at_a_dimension_without_binary_codes_answers(run: Run, indexed: Path) -> None:
    # Issue 13: --dim 100 (not a multiple of 8) crashed with "nbits must be a positive multiple of 8".
    code, out, err = run("query", indexed / "a" / "img_02.jpg", "--in", indexed, "-k", 3, "--dim", 100)
    assert code == EXIT_OK, err
    lines = out.strip().splitlines()
    assert "float 100-d" in lines[0]
    assert [line.split()[2] for line in lines[2:]] == ["-", "-", "-"]  # no Hamming distance at that width
    data = _query_json(run, indexed / "a" / "img_02.jpg", "--in", indexed, "-k", 2, "--dim", 100)
    assert [r["hamming_distance"] for r in data["results"]] == [None, None]


def test_a_query_file_that_does_not_exist_is_named_as_such(run: Run, indexed: Path, tmp_path: Path) -> None:
    code, _, err = run("query", tmp_path / "never.jpg", "--in", indexed)
    assert code == EXIT_BAD_IMAGE
    assert err.strip() == f"explorer: no such file: {tmp_path / 'never.jpg'}"


def test_query_with_query_expansion(run: Run, indexed: Path) -> None:
    query = indexed / "a" / "img_02.jpg"
    plain = _query_json(run, query, "--in", indexed, "-k", "11")
    expanded = _query_json(run, query, "--in", indexed, "-k", "11", "--rerank", "qe")
    assert expanded["rerank"] == "qe" and plain["rerank"] == "none"
    assert len(expanded["results"]) == 11 and str(query) not in [r["path"] for r in expanded["results"]]
    # the same images (all of the folder's others), with the query's own distances, in the expansion's order
    by_path = {r["path"]: r["cosine_distance"] for r in plain["results"]}
    assert {r["path"]: r["cosine_distance"] for r in expanded["results"]} == by_path
