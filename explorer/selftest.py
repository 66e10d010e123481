"""`retrieval-explorer --self-test`: prove that a build (source checkout or frozen bundle) can actually search.

A bundle that starts but cannot find its model, import torch's or faiss's native libraries, or write its cache
only fails when a user points it at their photos. This runs the whole engine path headlessly, with nothing
but what the app ships: the bundled model, a few generated images in a temporary folder, indexing into a
temporary cache, and one query per group, and checks that the ranking makes sense. It opens no window and
needs no display, so it runs in CI, in `scripts/build_bundle.py` right after a build, and on a user's machine
when a support request says "it does not work".

Exit status: 0 when every check passed, 1 when a check failed, 2 when a step raised (the message says which).
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image

GROUPS = ("stripes", "disks")
"""Two synthetic groups that any ImageNet-trained trunk tells apart: warm horizontal stripes vs cool disks."""


class SelfTestFailure(Exception):
    """A check did not hold; the message says what was expected and what was seen."""


def _stripes(rng: np.random.Generator, size: int) -> np.ndarray:
    """Warm (red/orange/yellow) horizontal stripes with a random period and phase, plus a little noise."""
    period = rng.uniform(8, 18)
    phase = rng.uniform(0, period)
    rows = (np.sin(2 * np.pi * (np.arange(size) + phase) / period) > 0).astype(np.float32)
    base = np.array([230, rng.uniform(60, 200), rng.uniform(0, 60)], dtype=np.float32)
    dark = np.array([90, 20, 0], dtype=np.float32)
    img = dark + rows[:, None, None] * (base - dark)
    img = np.broadcast_to(img, (size, size, 3)) + rng.normal(0, 8, (size, size, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def _disks(rng: np.random.Generator, size: int) -> np.ndarray:
    """One to three bright cool (blue/green) disks on a dark blue background, plus a little noise."""
    yy, xx = np.mgrid[0:size, 0:size]
    img = np.empty((size, size, 3), dtype=np.float32)
    img[:] = np.array([10, 20, rng.uniform(50, 90)], dtype=np.float32)
    for _ in range(int(rng.integers(1, 4))):
        cy, cx = rng.uniform(0.2, 0.8, 2) * size
        r = rng.uniform(0.12, 0.3) * size
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = np.array([40, rng.uniform(150, 230), 240], dtype=np.float32)
    img += rng.normal(0, 8, (size, size, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def make_images(folder: Path, per_group: int = 5, size: int = 96, seed: int = 0) -> dict[str, list[str]]:
    """Write `per_group` PNGs of each group into `folder`; returns {group: [file names]} (deterministic)."""
    rng = np.random.default_rng(seed)
    draw = {"stripes": _stripes, "disks": _disks}
    names: dict[str, list[str]] = {g: [] for g in GROUPS}
    folder.mkdir(parents=True, exist_ok=True)
    for group in GROUPS:
        for i in range(per_group):
            name = f"{group}_{i:02d}.png"
            Image.fromarray(draw[group](rng, size)).save(folder / name)
            names[group].append(name)
    return names


@contextmanager
def _temporary_env(name: str, value: str) -> Iterator[None]:
    """Set an environment variable for the test only: an in-process run must not leak into the caller."""
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


def _group_of(relpath: str) -> str:
    return Path(relpath).name.split("_", 1)[0]


def run_self_test(out: Callable[[str], object] = print, per_group: int = 5, image_size: int = 96) -> int:
    """Run every step, printing each with its time; 0 on success, non-zero with a clear message otherwise."""
    started = time.perf_counter()
    step_no = 0

    @contextmanager
    def step(title: str) -> Iterator[None]:
        nonlocal step_no
        step_no += 1
        t0 = time.perf_counter()
        out(f"[{step_no}] {title} ...")
        yield
        out(f"[{step_no}] {title}: ok ({time.perf_counter() - t0:.2f} s)")

    frozen = bool(getattr(sys, "frozen", False))
    out(
        f"Retrieval Explorer self-test: Python {platform.python_version()} on {platform.system()} "
        f"{platform.machine()}, {'frozen bundle at ' + str(getattr(sys, '_MEIPASS', '?')) if frozen else 'source'}"
    )
    current = "starting"
    try:
        with tempfile.TemporaryDirectory(prefix="retrieval-explorer-selftest-") as tmp:
            images, cache = Path(tmp) / "images", Path(tmp) / "cache"
            with _temporary_env("RETRIEVAL_EXPLORER_CACHE", str(cache)):
                current = "importing the engine and reading the bundled model card"
                with step(current):
                    from explorer import paths
                    from explorer.engine.session import RetrievalSession

                    BUNDLED_MODEL = paths.BUNDLED_MODEL
                    for suffix in (".json", ".safetensors"):
                        f = BUNDLED_MODEL.with_suffix(suffix)
                        if not f.is_file():
                            raise SelfTestFailure(f"bundled model file missing: {f}")
                    session = RetrievalSession()
                    out(f"    model {session.card.name!r}, {session.card.dim}-d, from {BUNDLED_MODEL}")

                current = "building the network and loading its weights"
                with step(current):
                    _ = session.embedder
                    import torch

                    out(f"    {session.runtime}; torch {torch.__version__}, {torch.get_num_threads()} threads")

                current = "generating test images"
                with step(current):
                    names = make_images(images, per_group, image_size)
                    out(f"    {sum(map(len, names.values()))} images ({per_group} per group: {', '.join(GROUPS)})")

                current = "indexing into a temporary cache"
                with step(current):
                    report = session.index(images)
                    expected = per_group * len(GROUPS)
                    if report.embedded != expected or report.skipped:
                        raise SelfTestFailure(
                            f"expected {expected} images embedded, got {report.embedded} "
                            f"(skipped: {[(s.relpath, s.reason) for s in report.skipped][:3]})"
                        )
                    if not session.catalog_path(images).is_relative_to(cache):
                        raise SelfTestFailure(
                            f"catalog written outside the temporary cache: {session.catalog_path(images)}"
                        )
                    out(f"    {report.embedded} embedded; catalog {session.catalog_path(images)}")

                for group in GROUPS:
                    query = names[group][0]
                    current = f"querying with {query}"
                    with step(current):
                        # as an embedding: a query file of the folder is otherwise left out of its own results
                        embedding = session.embed_query(images / query)
                        result = session.query(embedding, images, k=expected)
                        _check_ranking(result.float_ranking.results, query, group, per_group, out, "float")
                        own = [r for r in result.ranking(binary=True).results if r.relpath == query]
                        if not own or own[0].hamming_distance != 0:
                            raise SelfTestFailure(f"binary code of {query} differs from its indexed code: {own}")
                session.close()
    except SelfTestFailure as exc:
        out(f"SELF-TEST FAILED while {current}: {exc}")
        return 1
    except Exception as exc:  # any error is a finding: report it, with where it came from
        out(f"SELF-TEST ERROR while {current}: {type(exc).__name__}: {exc}")
        out(traceback.format_exc().rstrip())
        return 2
    out(f"SELF-TEST PASSED in {time.perf_counter() - started:.1f} s")
    return 0


def _check_ranking(
    results: list, query: str, group: str, per_group: int, out: Callable[[str], object], kind: str
) -> None:
    """The query ranks first at distance ~0, and its nearest other neighbours are from its own group.

    Only the top three others must match (not all of the group), so a future bundled model that ranks the
    group's last member below a look-alike of the other group does not fail a working build.
    """
    shown = ", ".join(f"{r.relpath} ({r.cosine_distance:.3f})" for r in results[: per_group + 1])
    out(f"    {kind} ranking: {shown}")
    if not results or results[0].relpath != query:
        raise SelfTestFailure(
            f"{query} is not its own nearest neighbour: first is {results[0].relpath if results else None}"
        )
    if results[0].cosine_distance > 1e-3:
        raise SelfTestFailure(f"{query} is at cosine distance {results[0].cosine_distance:.4f} from itself")
    need = min(3, per_group - 1)
    others = [_group_of(r.relpath) for r in results[1 : need + 1]]
    if others != [group] * need:
        raise SelfTestFailure(f"nearest {need} neighbours of {query} should be {group!r}, got {others}")
    same = [_group_of(r.relpath) == group for r in results]
    separated = all(same[:per_group]) and not any(same[per_group:])
    out(f"    own group first: {need} of {need} required; whole group before the other: {separated}")


if __name__ == "__main__":
    raise SystemExit(run_self_test())
