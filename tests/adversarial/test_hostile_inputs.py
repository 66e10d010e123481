"""Hostile inputs driven through the command lines in subprocesses, as the outside attack on issue 11 did.

Every case builds its input in a fresh folder (generated here, nothing shipped), runs one command of `explorer` or
`trainer` in its own process and asserts what a user must get: no traceback, an exit code from the README's table,
a reason that names the problem, and nothing lost from a catalog that was there before.

    pytest tests/adversarial                     # every case, about two minutes
    python tests/adversarial/test_hostile_inputs.py   # the same cases, as a table of outcomes
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import struct
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
BUNDLED = ROOT / "resources" / "models" / "default"
EXPLORER_EXITS = {0, 2, 3, 4, 5, 6, 130}  # README: exit codes of `explorer`
TRAINER_EXITS = {0, 1, 2, 5, 130}  # trainer/cli.py's docstring


@dataclass
class World:
    """What the cases share: a small model (64 px: fast) and an indexed folder whose catalog must survive."""

    root: Path
    model: Path
    photos: Path
    indexed_cache: Path


@dataclass
class Case:
    name: str
    tool: str  # "explorer" or "trainer"
    args: Callable[[World, Path], list[str]]  # (world, this case's folder) -> arguments after the tool
    exits: set[int]
    reason: str  # must appear in stdout or stderr ("" when success needs no reason)
    catalog: str = ""  # "kept": the indexed folder's catalog is copied in and keeps every image; "damaged": it is
    # copied in, damaged by the case, and must still be there afterwards (set aside or untouched, never deleted)
    env: dict[str, str] = field(default_factory=dict)


def _photo(path: Path, seed: int, size: tuple[int, int] = (120, 90)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (1, 1, 3))
    noise = rng.integers(-40, 40, (size[1], size[0], 3))
    Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8)).save(path, quality=90)
    return path


def _folder(case_dir: Path, extra: Callable[[Path], None] | None = None) -> Path:
    """Four good photos in two classes, plus whatever the case adds."""
    folder = case_dir / "photos"
    for i in range(4):
        _photo(folder / ("a" if i < 2 else "b") / f"good{i}.jpg", seed=i)
    if extra is not None:
        extra(folder)
    return folder


def _with(extra: Callable[[Path], None]) -> Callable[[World, Path], list[str]]:
    return lambda world, case_dir: ["index", str(_folder(case_dir, extra))]


def _bytes_name(folder: Path) -> None:
    os.rename(_photo(folder / "tmp.jpg", 9), os.path.join(os.fsencode(folder), b"bad\xff\xfename.jpg"))
    (Path(os.fsdecode(os.path.join(os.fsencode(folder), b"notes_caf\xe9.txt")))).write_text("notes")


def _bytes_folder(folder: Path) -> None:
    album = os.path.join(os.fsencode(folder), b"alb\xe9um")
    os.mkdir(album)
    _photo(Path(os.fsdecode(album)) / "inside.jpg", 10)


def _truncated(folder: Path) -> None:
    data = _photo(folder / "t.jpg", 11, (400, 300)).read_bytes()
    (folder / "t.jpg").write_bytes(data[: len(data) // 3])


def _lying_header(folder: Path) -> None:
    data = bytearray(_photo(folder / "lie.jpg", 12).read_bytes())
    sof = data.find(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", 10_000, 10_000)
    (folder / "lie.jpg").write_bytes(bytes(data))


def _png_bomb(folder: Path) -> None:
    Image.new("1", (20_000, 20_000)).save(folder / "bomb.png", optimize=True)  # 400 Mpx, a few kB


def _fifo(folder: Path) -> None:
    os.mkfifo(folder / "pipe.jpg")


def _loop_and_root(folder: Path) -> None:
    os.symlink(folder, folder / "a" / "loop")
    os.symlink("/", folder / "root")
    os.symlink(folder / "missing.jpg", folder / "broken.jpg")


def _deep_tiff(folder: Path) -> None:
    Image.fromarray(np.linspace(0, 1, 200 * 150, dtype=np.float32).reshape(150, 200), "F").save(folder / "f32.tif")
    (folder / "page.jpg").write_text("<html><body>saved web page</body></html>")
    (folder / "zero.jpg").write_bytes(b"")


def _nan_weights(world: World, case_dir: Path) -> list[str]:
    case_dir.mkdir(parents=True, exist_ok=True)
    out = case_dir / "nan"
    shutil.copy(f"{world.model}.json", f"{out}.json")
    data = bytearray(Path(f"{world.model}.safetensors").read_bytes())
    header = 8 + struct.unpack("<Q", data[:8])[0]
    data[header : header + 4096] = np.full(1024, np.nan, np.float32).tobytes()  # the first weights become NaN
    Path(f"{out}.safetensors").write_bytes(bytes(data))
    return ["--model", str(out), "index", str(_folder(case_dir))]


def _card(change: Callable[[dict[str, object]], None]) -> Callable[[World, Path], list[str]]:
    return lambda world, case_dir: ["--model", str(_changed(world, case_dir, "m", change)), "index",
                                    str(_folder(case_dir))]  # fmt: skip


def _nested_card(world: World, case_dir: Path) -> list[str]:
    out = _changed(world, case_dir, "deep", lambda card: None)
    Path(f"{out}.json").write_text('{"name": ' + "[" * 100_000 + "]" * 100_000 + "}")
    return ["--model", str(out), "index", str(_folder(case_dir))]


def _changed(world: World, case_dir: Path, name: str, change: Callable[[dict[str, object]], None]) -> Path:
    card = json.loads(Path(f"{world.model}.json").read_text())
    change(card)
    out = case_dir / name
    case_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(f"{world.model}.safetensors", f"{out}.safetensors")
    Path(f"{out}.json").write_text(json.dumps(card))
    return out


def _damage_catalog(how: str) -> Callable[[World, Path], list[str]]:
    def args(world: World, case_dir: Path) -> list[str]:
        catalog = next((case_dir / "cache").rglob("catalog.sqlite"))
        if how == "truncated":
            with open(catalog, "r+b") as f:
                f.truncate(catalog.stat().st_size // 2)
        else:
            catalog.write_bytes(np.random.default_rng(0).integers(0, 255, 8192, dtype=np.uint8).tobytes())
        return ["query", str(world.photos / "a" / "good0.jpg"), "--in", str(world.photos)]

    return args


def _unplugged(world: World, case_dir: Path) -> list[str]:
    return []  # run_case moves the indexed folder away and indexes its empty mount point


def _fit(world: World, case_dir: Path, data: str, *more: str) -> list[str]:
    """`trainer fit` for one step from the small model (`more` may name another --base: argparse keeps the last)."""
    return ["fit", data, "--out", str(case_dir / "out"), "--base", str(world.model), *more, "--epochs", "1",
            "--batches-per-epoch", "1", "--split", "none", "--device", "cpu", "--quiet"]  # fmt: skip


CASES = [
    Case("file name not UTF-8", "explorer", _with(_bytes_name), {0}, "5 images indexed"),
    Case("folder name not UTF-8", "explorer", _with(_bytes_folder), {0}, "5 images indexed"),
    Case("truncated JPEG", "explorer", _with(_truncated), {0}, "truncated"),
    Case("JPEG header lying about its size", "explorer", _with(_lying_header), {0}, "header says 10000x10000"),
    Case("PNG decompression bomb", "explorer", _with(_png_bomb), {0}, "too large"),
    Case("FIFO named .jpg", "explorer", _with(_fifo), {0}, "not a regular file"),
    Case("link loop, link to /, broken link", "explorer", _with(_loop_and_root), {0},
         "a link to a folder outside the chosen one (not followed)"),
    Case("float TIFF, web page and empty file as .jpg", "explorer", _with(_deep_tiff), {0}, "zero-byte file"),
    Case("catalog truncated", "explorer", _damage_catalog("truncated"), {4}, "is damaged; run: explorer index",
         catalog="damaged"),
    Case("catalog overwritten with random bytes", "explorer", _damage_catalog("random"), {4}, "is damaged",
         catalog="damaged"),
    Case("indexed folder unplugged (empty mount point)", "explorer", _unplugged, {0}, "0 removed", catalog="kept"),
    Case("card nested 100,000 deep", "explorer", _nested_card, {5}, "cannot load model"),
    Case("weights that give NaN", "explorer", _nan_weights, {5}, "hold values that are not numbers"),
    Case("card: unknown backbone", "explorer", _card(lambda c: c.update(backbone="nope")), {5},
         "unknown backbone"),
    Case("card: string where a number belongs", "explorer", _card(lambda c: c.update(dim="1280")), {5},
         "must be a positive whole number"),
    Case("card: resize_size 20000", "explorer", _card(lambda c: c.update(resize_size=20_000)), {5},
         "resize_size"),
    Case("card: input_size above resize_size", "explorer", _card(lambda c: c.update(input_size=500)), {5},
         "input_size"),
    Case("card: dim that does not match the weights", "explorer", _card(lambda c: c.update(dim=999)), {5},
         "cannot load model"),
    Case("card: std 0", "explorer", _card(lambda c: c.update(std=[0, 0, 0])), {5}, "std"),
    Case("query: a web page as the image", "explorer",
         lambda w, d: ["query", str(_html(d)), "--in", str(w.photos)], {3}, "cannot read", catalog="kept"),
    Case("query: -k 0", "explorer", lambda w, d: ["query", str(w.photos / "a" / "good0.jpg"), "--in",
         str(w.photos), "-k", "0"], {2}, "-k must be at least 1", catalog="kept"),
    Case("query: --dim 99999", "explorer", lambda w, d: ["query", str(w.photos / "a" / "good0.jpg"), "--in",
         str(w.photos), "--dim", "99999"], {2}, "--dim must be in", catalog="kept"),
    Case("query: folder never indexed", "explorer", lambda w, d: ["query", str(w.photos / "a" / "good0.jpg"),
         "--in", str(_folder(d))], {4}, "not indexed yet"),
    Case("query: folder missing", "explorer", lambda w, d: ["query", str(w.photos / "a" / "good0.jpg"), "--in",
         str(d / "nowhere")], {4}, "not a folder"),
    Case("index: --device cuda without CUDA", "explorer", lambda w, d: ["--device", "cuda", "index",
         str(_folder(d))], {2}, "use --device cpu"),
    Case("trainer fit: hostile files among the classes", "trainer",
         lambda w, d: _fit(w, d, str(_folder(d, _hostile_classes))), {0}, "skipped"),
    Case("trainer fit: one class only", "trainer", lambda w, d: _fit(w, d, str(_one_class(d))), {2},
         "has only one class"),
    Case("trainer fit: crafted base model", "trainer", lambda w, d: _fit(w, d, str(_folder(d)), "--base",
         str(_changed(w, d, "m", lambda c: c.update(backbone="nope")))), {5}, "unknown backbone"),
    Case("trainer fit: damaged checkpoint in the run folder", "trainer", lambda w, d: _fit(w, d,
         str(_folder(d))) if _damaged_checkpoint(d) else [], {0}, "no checkpoint of this run can be used"),
    Case("trainer eval: crafted model", "trainer", lambda w, d: ["eval", str(_changed(w, d, "m", lambda c:
         c.update(resize_size=20_000))), str(_folder(d)), "--split", "all"], {5}, "resize_size"),
    Case("trainer eval: data folder missing", "trainer", lambda w, d: ["eval", str(w.model), str(d / "nowhere")],
         {2}, "nowhere"),
]  # fmt: skip


def _html(case_dir: Path) -> Path:
    case_dir.mkdir(parents=True, exist_ok=True)
    page = case_dir / "page.jpg"
    page.write_text("<!DOCTYPE html><html><body>a saved web page</body></html>")
    return page


def _hostile_classes(folder: Path) -> None:
    _bytes_folder(folder)
    _photo(Path(os.fsdecode(os.path.join(os.fsencode(folder), b"alb\xe9um"))) / "second.jpg", 13)
    _truncated(folder / "a")
    (folder / "b" / "zero.jpg").write_bytes(b"")


def _one_class(case_dir: Path) -> Path:
    folder = case_dir / "one"
    for i in range(4):
        _photo(folder / "only" / f"{i}.jpg", seed=i)
    return folder


def _damaged_checkpoint(case_dir: Path) -> bool:
    run = case_dir / "out.run"
    run.mkdir(parents=True, exist_ok=True)
    (run / "checkpoint.pt").write_bytes(b"PK\x03\x04" + bytes(4000))
    return True


def _world(root: Path) -> World:
    """The small model and one indexed folder (its cache is copied into the cases that must keep it)."""
    sys.path.insert(0, str(ROOT))
    import dataclasses

    from trainer.model import load_model, save_model

    model = load_model(BUNDLED)
    card = dataclasses.replace(model.card, name="adversarial-small", input_size=64, resize_size=72)
    weights, _ = save_model(model, root / "models" / "small", card)
    world = World(root, weights.with_suffix(""), root / "indexed" / "photos", root / "indexed" / "cache")
    _folder(root / "indexed")
    done = _run("explorer", ["--model", str(world.model), "index", str(world.photos)], world.indexed_cache)
    assert done.returncode == 0, done.stderr
    return world


def _run(tool: str, args: list[str], cache: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RETRIEVAL_EXPLORER_CACHE": str(cache), "RETRIEVAL_EXPLORER_DATA": str(cache / "data"),
           "CUDA_VISIBLE_DEVICES": "", "PYTHONIOENCODING": "utf-8"}  # fmt: skip
    module = "explorer.cli" if tool == "explorer" else "trainer.cli"
    return subprocess.run(
        [sys.executable, "-m", module, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


def _catalog_images(cache: Path) -> int:
    catalogs = list(cache.rglob("catalog.sqlite"))
    if not catalogs:
        return 0
    db = sqlite3.connect(f"file:{catalogs[0]}?mode=ro", uri=True)
    try:
        return int(db.execute("SELECT COUNT(*) FROM images").fetchone()[0])
    except sqlite3.Error:
        return -1
    finally:
        db.close()


@dataclass
class Outcome:
    case: str
    exit_code: int
    reason_found: bool
    traceback: bool
    catalog_kept: bool | None  # None: the case has no catalog to keep

    @property
    def ok(self) -> bool:
        return self.reason_found and not self.traceback and self.catalog_kept is not False


def run_case(case: Case, world: World, case_dir: Path) -> tuple[Outcome, str]:
    cache = case_dir / "cache"
    if case.catalog:
        shutil.copytree(world.indexed_cache, cache)
    before = _catalog_images(cache)
    args = case.args(world, case_dir)
    if case.tool == "explorer" and "--model" not in args:
        args = ["--model", str(world.model), *args]
    if case.args is _unplugged:  # the catalog belongs to world.photos: the drive is "unplugged" by moving it away
        away = case_dir / "away"
        shutil.move(str(world.photos), away)
        world.photos.mkdir()
        try:
            done = _run(case.tool, ["--model", str(world.model), "index", str(world.photos)], cache)
        finally:
            shutil.rmtree(world.photos)
            shutil.move(str(away), world.photos)
    else:
        done = _run(case.tool, args, cache)
    text = done.stdout + done.stderr
    kept: bool | None = None
    if case.catalog == "kept":
        kept = _catalog_images(cache) == before > 0
    elif case.catalog == "damaged":
        kept = any(p.stat().st_size > 0 for p in cache.rglob("catalog.sqlite*") if "-wal" not in p.name)
    outcome = Outcome(case.name, done.returncode, case.reason.lower() in text.lower(), "Traceback" in text, kept)
    return outcome, text


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return _world(tmp_path_factory.mktemp("adversarial"))


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_input(case: Case, world: World, tmp_path: Path) -> None:
    outcome, text = run_case(case, world, tmp_path)
    exits = EXPLORER_EXITS if case.tool == "explorer" else TRAINER_EXITS
    assert not outcome.traceback, text
    assert outcome.exit_code in exits and outcome.exit_code in case.exits, text
    assert outcome.reason_found, f"expected {case.reason!r} in:\n{text}"
    assert outcome.catalog_kept is not False, text


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        world = _world(Path(tmp) / "world")
        rows = []
        for i, case in enumerate(CASES):
            outcome, _ = run_case(case, world, Path(tmp) / f"case{i}")
            expected = outcome.exit_code in case.exits
            rows.append(
                f"| {case.name} | {case.tool} | {outcome.exit_code} | {'yes' if outcome.reason_found else 'NO'} | "
                f"{'YES' if outcome.traceback else 'no'} | "
                f"{'-' if outcome.catalog_kept is None else ('yes' if outcome.catalog_kept else 'NO')} | "
                f"{'pass' if outcome.ok and expected else 'FAIL'} |"
            )
        print("| case | tool | exit | reason named | traceback | catalog kept | outcome |")
        print("|---|---|---:|---|---|---|---|")
        print("\n".join(rows))
        print(f"\n{sum('| pass |' in r for r in rows)} of {len(rows)} cases pass")
    return 0


if __name__ == "__main__":
    sys.exit(main())
