"""The commands added for several folders, several pictures and labels, each run as a person runs it: a process of
its own (`python -m explorer.cli ...`), with the small test model, its own cache and data folders."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from imagegen import make_image

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def explorer(small_model_path: Path, tmp_path: Path):  # type: ignore[no-untyped-def]
    env = {**os.environ, "RETRIEVAL_EXPLORER_CACHE": str(tmp_path / "cache"),
           "RETRIEVAL_EXPLORER_DATA": str(tmp_path / "data"), "CUDA_VISIBLE_DEVICES": ""}  # fmt: skip

    def run(*args: object) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "explorer.cli", "--model", str(small_model_path), "--device", "cpu"]
        return subprocess.run([*argv, *map(str, args)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)

    return run


def test_library_query_with_examples_cut_off_and_labels(explorer, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    home, usb = tmp_path / "home", tmp_path / "usb"
    pictures = [make_image((home if i < 4 else usb) / f"p{i}.jpg", seed=i) for i in range(8)]
    for folder in (home, usb):
        assert explorer("library", "add", folder).returncode == 0
    done = explorer("library", "index")
    assert done.returncode == 0 and done.stdout.count("4 embedded") == 2, done.stderr
    query = explorer("query", pictures[0], "--in", "library", "--also", pictures[5], "--not", pictures[2],
                     "--rerank", "qe", "--json")  # fmt: skip
    assert query.returncode == 0, query.stderr
    paths = [r["path"] for r in json.loads(query.stdout)["results"]]
    assert len(paths) == 5 and not {str(p) for p in pictures[:1] + pictures[2:3] + pictures[5:6]} & set(paths)
    nothing = explorer("query", pictures[0], "--in", home, "--in", usb, "--max-distance", "0")
    assert nothing.returncode == 0 and "nothing in" in nothing.stdout
    label = explorer("label", "robin", *pictures[:2], "--to", tmp_path / "labels")
    assert label.returncode == 0 and "2 linked" in label.stdout
    copy = home / "p0 copy.jpg"
    copy.write_bytes(pictures[0].read_bytes())  # a copy of one photo, indexed: found by `explorer duplicates`
    assert explorer("index", home).returncode == 0
    dup = explorer("duplicates", home, "--json")
    assert dup.returncode == 0, dup.stderr
    groups = [g for g in json.loads(dup.stdout)["groups"] if g["kind"] == "duplicates"]
    assert [sorted(Path(m["path"]).name for m in g["members"]) for g in groups] == [["p0 copy.jpg", "p0.jpg"]]
    bad = explorer("label", "../up", pictures[0], "--to", tmp_path / "labels")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "a class needs a name" in bad.stderr
