"""A map of the collection, without Qt: every image placed in two dimensions, coloured by its sub-folder.

The layout is a PCA of the unit embeddings (the cosine geometry the search uses): two directions of the largest
spread, computed from the D x D covariance (one pass over the vectors, seconds at 100,000 x 1280 on two cores) in a
worker, and kept beside the catalog (`map-<identity>-<generation>.npz`, written to a temporary file and renamed,
with a checksum) so that reopening the folder draws at once and any change to the catalog makes a new one. UMAP
separates classes better but takes minutes and a package the app does not need; it is used where `umap-learn` is
installed and the collection is small enough (`UMAP_LIMIT`).

A query is placed on the same map (`project`), so the person sees where it falls among the folder's groups and
where its neighbours are.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from explorer.app.jobs import Executor, LatestJob, Reply
from trainer.atomic import atomic_write

if TYPE_CHECKING:
    from explorer.app.analysis import IndexSummary
    from explorer.engine.session import RetrievalSession

UMAP_LIMIT = 20_000
_CHUNK = 16_384


@dataclass(frozen=True)
class MapLayout:
    xy: npt.NDArray[np.float32]  # (n, 2), one row per catalog row (the snapshot's order)
    paths: list[Path]
    groups: list[str]  # the sub-folder names, sorted ("" for pictures at the top of the folder)
    group_of: npt.NDArray[np.int32]  # (n,) index into `groups`
    mean: npt.NDArray[np.float64]  # of the unit embeddings: with `axes`, places any embedding on the map
    axes: npt.NDArray[np.float64]  # (2, D); zeros when the layout is UMAP's (then `project` uses the neighbours)
    method: str  # "PCA" or "UMAP"

    @functools.cached_property
    def row_of(self) -> dict[Path, int]:
        """Each image's row (built in the worker that made the layout: 100,000 entries take tens of ms)."""
        return {p: i for i, p in enumerate(self.paths)}

    def project(self, embedding: npt.NDArray[np.float32], unit: npt.NDArray[np.float32] | None = None) -> np.ndarray:
        """Where an embedding falls on the map."""
        q = np.asarray(embedding, np.float64)
        q = q / max(float(np.linalg.norm(q)), 1e-12)
        if self.method == "PCA" or unit is None:
            return np.asarray((q - self.mean) @ self.axes.T, np.float32)
        nearest = np.argsort(-(unit @ q))[:5]  # UMAP has no linear map: the mean place of the 5 nearest
        return np.asarray(self.xy[nearest].mean(axis=0), np.float32)


def _units(vectors: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    out = np.empty_like(vectors)
    for start in range(0, len(vectors), _CHUNK):
        block = vectors[start : start + _CHUNK].astype(np.float32)
        out[start : start + _CHUNK] = block / np.maximum(np.linalg.norm(block, axis=1, keepdims=True), 1e-12)
    return out


def pca_axes(unit: npt.NDArray[np.float32]) -> tuple[np.ndarray, np.ndarray]:
    """(mean, the two principal directions) of the rows, from the covariance accumulated in chunks.

    >>> x = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 0.1], [0.0, -0.1]], np.float32)
    >>> mean, axes = pca_axes(x)
    >>> np.abs(axes[0]).round(3).tolist()  # the widest spread is along the first coordinate
    [1.0, 0.0]
    """
    n, d = unit.shape
    mean = unit.astype(np.float64).mean(axis=0)
    cov = np.zeros((d, d), np.float64)
    for start in range(0, n, _CHUNK):
        block = unit[start : start + _CHUNK].astype(np.float64) - mean
        cov += block.T @ block
    _values, vectors = np.linalg.eigh(cov / max(1, n - 1))
    axes = vectors[:, ::-1][:, :2].T.copy()
    for axis in axes:  # a sign that does not flip between runs
        if axis[np.argmax(np.abs(axis))] < 0:
            axis *= -1
    return mean, axes


def _groups(relpaths: list[str]) -> tuple[list[str], npt.NDArray[np.int32]]:
    """The sub-folders (sorted; "" for pictures at the top) and each picture's index among them."""
    per_image = [r.split("/", 1)[0] if "/" in r else "" for r in relpaths]
    groups = sorted(set(per_image))
    index = {g: i for i, g in enumerate(groups)}
    return groups, np.array([index[g] for g in per_image], np.int32)


def layout_from(vectors: npt.NDArray[np.float32], relpaths: list[str], folder: Path) -> MapLayout:
    unit = _units(np.asarray(vectors, np.float32))
    groups, group_of = _groups(relpaths)
    paths = [folder / r for r in relpaths]
    if len(unit) < 3:
        return MapLayout(np.zeros((len(unit), 2), np.float32), paths, groups, group_of,
                         np.zeros(unit.shape[1]), np.zeros((2, unit.shape[1])), "PCA")  # fmt: skip
    umap = _umap_module() if len(unit) <= UMAP_LIMIT else None
    mean, axes = pca_axes(unit)
    if umap is not None:
        xy = umap.UMAP(n_components=2, metric="cosine", random_state=0).fit_transform(unit).astype(np.float32)
        return MapLayout(xy, paths, groups, group_of, mean, np.zeros_like(axes), "UMAP")
    xy = ((unit - mean) @ axes.T).astype(np.float32)
    return MapLayout(xy, paths, groups, group_of, mean, axes, "PCA")


def _umap_module() -> Any:
    try:
        import umap
    except ImportError:
        return None
    return umap


def _digest(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for key in sorted(arrays):
        h.update(key.encode())
        h.update(np.ascontiguousarray(arrays[key]).tobytes())
    return h.hexdigest()


def cached_layout(session: RetrievalSession, folder: Path) -> MapLayout:
    """The folder's map, from its file beside the catalog when that matches the catalog now, else computed."""
    collection = session.collection(folder)
    snapshot = collection.snapshot
    meta = collection.catalog.meta()
    key = f"map-{meta.get('identity', 'none')}-{meta.get('generation', '0')}.npz"
    path = collection.catalog.path.with_name(key)
    relpaths = list(snapshot.relpaths)
    if path.exists():
        try:
            with np.load(path, allow_pickle=False) as f:
                arrays = {k: f[k] for k in ("xy", "mean", "axes", "ids")}
                stored, method = str(f["digest"]), str(f["method"])
            if stored == _digest(arrays) and np.array_equal(arrays["ids"], snapshot.ids):
                groups, group_of = _groups(relpaths)
                paths = [folder / r for r in relpaths]
                return MapLayout(arrays["xy"], paths, groups, group_of, arrays["mean"], arrays["axes"], method)
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            pass  # damaged or of another version: computed again and rewritten
    layout = layout_from(snapshot.embeddings, relpaths, folder)
    arrays = {"xy": layout.xy, "mean": layout.mean, "axes": layout.axes, "ids": np.asarray(snapshot.ids)}
    for stale in path.parent.glob("map-*.npz"):
        stale.unlink(missing_ok=True)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:  # a file object: np.savez would add ".npz" to a name
            np.savez(fh, digest=_digest(arrays), method=layout.method, **arrays)

    with contextlib.suppress(OSError):  # a cache that cannot be written: drawn anyway, computed again next time
        atomic_write(path, write)
    return layout


class CollectionMap:
    """The current folder's map for the window: computed in a worker after each finished indexing run."""

    def __init__(self, executor: Executor, changed: Callable[[MapLayout | None, str], None]) -> None:
        self.job = LatestJob(executor, "analysis-map")
        self.changed = changed
        self.layout: MapLayout | None = None

    def start(self, session: RetrievalSession, summary: IndexSummary) -> None:
        folder = summary.folder
        if summary.count == 0:
            self.layout = None
            self.changed(None, "Nothing is indexed in this folder yet.")
            return

        def done(layout: MapLayout) -> None:
            self.layout = layout
            self.changed(layout, "")

        self.changed(self.layout, "Placing every image on the map…")

        def work(_task: object) -> MapLayout:
            layout = cached_layout(session, folder)
            _ = layout.row_of  # built here, not on the GUI thread when the first query is marked
            return layout

        self.job.start(
            "map", work,
            Reply(done=done, failed=lambda message: self.changed(None, f"The map failed: {message}")),
        )  # fmt: skip

    def forget(self) -> None:
        self.job.forget()
        self.layout = None
