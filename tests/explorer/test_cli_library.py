"""`explorer library ...` and `explorer query IMG --in LIBRARY` end to end on small generated folders."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from imagegen import make_image

from explorer.cli import EXIT_NO_FOLDER, EXIT_OK, EXIT_USAGE
from explorer.cli_library import watch_and_index
from explorer.engine.indexer import IndexReport
from explorer.engine.session import RetrievalSession

Run = Callable[..., tuple[int, str, str]]  # the `run` fixture: tests/explorer/conftest.py


def test_a_library_from_the_command_line(run: Run, tmp_path: Path) -> None:
    a, b = tmp_path / "drive1" / "photos", tmp_path / "drive2" / "photos"
    for seed in range(10):
        make_image((a if seed < 5 else b) / f"p{seed}.jpg", seed=seed)
    code, _out, err = run("query", a / "p1.jpg", "--in", "library")
    assert code == EXIT_NO_FOLDER and "not a folder or a library" in err
    assert run("library", "add", a)[0] == EXIT_OK
    assert run("library", "add", b)[0] == EXIT_OK
    code, _out, err = run("library", "add", a / "..")
    assert code == EXIT_USAGE and "found twice" in err
    code, _out, err = run("query", a / "p1.jpg", "--in", "library")
    assert code == EXIT_NO_FOLDER and "explorer library index" in err
    code, _out, err = run("query", a / "p1.jpg", "--in", a, "--in", tmp_path / "nowhere")
    assert code == EXIT_NO_FOLDER and "nowhere" in err
    code, out, _err = run("library", "index")
    assert code == EXIT_OK and out.count("5 embedded") == 2

    code, out, _err = run("query", a / "p1.jpg", "--in", "library", "-k", "9", "--json")
    assert code == EXIT_OK
    results = json.loads(out)["results"]
    assert len(results) == 9 and str(a / "p1.jpg") not in [r["path"] for r in results]
    assert {r["folder"] for r in results} == {str(a.resolve()), str(b.resolve())}
    code, out, _err = run("query", a / "p1.jpg", "--in", b, "--in", a, "-k", "9", "--json")  # a chosen part
    assert [r["path"] for r in json.loads(out)["results"]] == [r["path"] for r in results]
    code, out, _err = run("query", a / "p1.jpg", "--in", b, "-k", "3", "--json")
    assert code == EXIT_OK and all(Path(r["path"]).parent == b for r in json.loads(out)["results"])

    b.rename(tmp_path / "drive2" / "moved")  # the second drive's folder renamed: offline until found again
    code, out, _err = run("library", "list", "--json")
    assert [f["online"] for f in json.loads(out)["folders"]] == [True, False]
    code, out, err = run("query", a / "p1.jpg", "--in", "library", "-k", "9")
    assert code == EXIT_OK and out.count("(offline)") == 5 and "offline, searched from its index" in err
    code, out, err = run("library", "add", tmp_path / "drive2" / "moved")
    assert code == EXIT_OK and "(was " in out and "copied" in err
    code, out, _err = run("library", "index")
    assert out.count("0 embedded, 5 unchanged") == 2
    code, out, _err = run("library", "list")
    assert "OFFLINE" not in out and out.count("(5 images)") == 2
    assert run("library", "remove", a)[0] == EXIT_OK
    code, out, _err = run("library", "list", "--json")
    assert [Path(f["path"]).name for f in json.loads(out)["folders"]] == ["moved"]


def test_watch_indexes_what_arrives(small_model_path: Path, reuse_small_model: list[Path], tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    for seed in range(3):
        make_image(folder / f"p{seed}.jpg", seed=seed)
    session = RetrievalSession(small_model_path, device="cpu", batch_size=4)
    reports: list[tuple[Path, int, int]] = []
    changed = threading.Condition()
    stop = threading.Event()
    told: list[str] = []

    def report(f: Path, r: IndexReport) -> None:
        with changed:
            reports.append((f, r.embedded, r.removed))
            changed.notify_all()

    def wait_for(what: str, condition: Callable[[], bool]) -> None:
        """Until the watcher has reported it; a watcher that never does fails the test after a minute, not hangs."""
        with changed:
            assert changed.wait_for(condition, timeout=60), f"the watcher never reported {what}: {reports}"

    thread = threading.Thread(target=watch_and_index, args=(session, [folder], report, stop, 0.2, told.append))
    thread.start()
    try:
        wait_for("the first, full index", lambda: len(reports) >= 1)
        make_image(folder / "arrived.jpg", seed=9)
        wait_for("the new photo", lambda: sum(embedded for _f, embedded, _r in reports[1:]) >= 1)
        (folder / "p0.jpg").unlink()
        wait_for("the deleted photo", lambda: sum(removed for _f, _e, removed in reports[1:]) >= 1)
    finally:
        stop.set()
        thread.join()
        session.close()
    assert reports[0] == (folder.resolve(), 3, 0) and told == [f"watching {folder}"]
    assert sorted(p.name for p in RetrievalSession(small_model_path).collection(folder).paths) == [
        "arrived.jpg", "p1.jpg", "p2.jpg",
    ]  # fmt: skip


def test_a_query_of_several_pictures_and_a_cut_off(run: Run, tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    for seed in range(12):
        make_image(folder / f"p{seed:02d}.jpg", seed=seed)
    assert run("index", folder)[0] == EXIT_OK
    wanted, also, unwanted = folder / "p01.jpg", folder / "p02.jpg", folder / "p03.jpg"

    def paths(*extra: Any) -> list[str]:
        code, out, err = run("query", wanted, "--in", folder, "-k", "11", "--json", *extra)
        assert code == EXIT_OK, err
        return [r["path"] for r in json.loads(out)["results"]]

    single = paths()
    several = paths("--also", also)
    assert str(also) in single and str(also) not in several and str(wanted) not in several  # no query is a result
    assert len(several) == 10
    against = paths("--also", also, "--not", unwanted)
    assert str(unwanted) not in against and len(against) == 9
    # subtracting a picture pushes what resembles it down: the order among the rest changes
    without_unwanted = [p for p in several if p != str(unwanted)]
    assert against != without_unwanted

    code, out, _err = run("query", wanted, "--in", folder, "--json", "--max-distance", "0")
    assert code == EXIT_OK and "nothing in" in out and "within 0.0" in out
    code, out, _err = run("query", wanted, "--in", folder, "--json", "--max-distance", "2")
    assert len(json.loads(out)["results"]) == 11  # every other picture is within the largest cosine distance
    code, _out, err = run("query", wanted, "--in", folder, "--not", wanted)
    assert code == EXIT_USAGE and "both wanted and not wanted" in err


def test_label_results_into_a_labelled_folder(run: Run, tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    pictures = [make_image(folder / f"p{seed}.jpg", seed=seed) for seed in range(4)]
    root = tmp_path / "labels"
    code, out, _err = run("label", "robin", *pictures[:3], "--to", root)
    assert code == EXIT_OK and out.startswith("3 linked into") and "robin 3" in out
    code, out, _err = run("label", "wren", pictures[3], "--to", root, "--copy", "--json")
    data = json.loads(out)
    assert code == EXIT_OK and data["classes"] == {"robin": 3, "wren": 1} and not Path(data["added"][0]).is_symlink()
    code, _out, err = run("label", "a/b", pictures[0], "--to", root)
    assert code == EXIT_USAGE and "class name" in err
    assert run("label", "robin", tmp_path / "absent.jpg", "--to", root)[0] != EXIT_OK


def test_duplicates_of_an_indexed_folder(run: Run, tmp_path: Path) -> None:
    from PIL import Image

    folder = tmp_path / "photos"
    original = make_image(folder / "IMG_1.jpg", seed=3, size=(320, 240))
    with Image.open(original) as im:
        im.resize((160, 120)).save(folder / "IMG_1 small copy.jpg", quality=90)
        im.save(folder / "IMG_1 re-saved.jpg", quality=50)
    for seed in range(4):
        make_image(folder / f"other{seed}.jpg", seed=40 + seed, size=(320, 240))
    code, _out, err = run("duplicates", folder)
    assert code == EXIT_NO_FOLDER and "not indexed" in err
    assert run("index", folder)[0] == EXIT_OK
    code, out, _err = run("duplicates", folder, "--json")
    data = json.loads(out)
    (group,) = [g for g in data["groups"] if g["kind"] == "duplicates"]
    assert sorted(Path(m["path"]).name for m in group["members"]) == [
        "IMG_1 re-saved.jpg", "IMG_1 small copy.jpg", "IMG_1.jpg",
    ]  # fmt: skip
    assert Path(group["keeper"]).name in ("IMG_1.jpg", "IMG_1 re-saved.jpg")  # the most pixels
    code, out, _err = run("duplicates", folder)
    assert (
        code == EXIT_OK
        and out.startswith("1 groups of copies (2 copies) among 7 images")
        and "Nothing was moved" in out
    )
