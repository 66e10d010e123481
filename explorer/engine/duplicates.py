"""Duplicates and bursts: two questions, two signals, two thresholds.

Users of other photo tools get thousands of "duplicates" that are only similar photos, because one threshold on one
distance answers two questions. Here:

* *similar* (the same scene: a burst, a second frame) is a question for the embedding: two photos whose binary codes
  differ in at most `similar_bits` of 1280 (bench/results/duplicates.md: bursts and every planted variant lie within
  480 bits, other photos from 376 on);
* *duplicate* (the same photo: resized, re-encoded, cropped a little, rotated by EXIF, brightened) is a question for
  the pixels: among similar pairs, the two pictures' 32 x 32 grey thumbnails, the smaller one zoomed by up to 8 % to
  undo a crop, correlate at `duplicate_correlation` or more. Measured on planted variants of 150 real photos: every
  duplicate >= 0.994, every burst frame <= 0.932, other photos <= 0.65 (`bench/duplicates.py`).

Candidates come from faiss's Hamming k-NN on the 256-bit prefix of the codes (the model is trained so that prefixes
are embeddings of their own): 100,000 images in about 6 s on two cores; each candidate is then checked on the full
codes, and only the pictures of similar pairs are decoded (small: draft-mode JPEG).

Groups are the connected pairs; each group suggests a keeper by a stated rule: the most pixels, then the largest
file, then the oldest.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image

from trainer.images import ImageLoadError, load_rgb
from trainer.progress import CancelCheck, Cancelled, never_cancelled

SIMILAR_BITS = 480
DUPLICATE_CORRELATION = 0.97
CANDIDATE_BITS = 256
NEIGHBOURS = 16
_ZOOMS = (0.0, 0.02, 0.04, 0.06, 0.08)
KEEPER_RULE = "the most pixels, then the largest file, then the oldest"


@dataclass(frozen=True)
class Member:
    path: Path
    width: int
    height: int
    bytes: int
    mtime: float


@dataclass
class Group:
    kind: str  # "duplicates" or "similar"
    members: list[Member]  # the suggested keeper first
    keeper_rule: str = KEEPER_RULE


@dataclass
class DuplicateReport:
    groups: list[Group] = field(default_factory=list)
    images: int = 0
    unreadable: list[tuple[Path, str]] = field(default_factory=list)

    def of_kind(self, kind: str) -> list[Group]:
        return [g for g in self.groups if g.kind == kind]


def candidate_pairs(codes: npt.NDArray[np.uint8], similar_bits: int = SIMILAR_BITS) -> list[tuple[int, int, int]]:
    """(i, j, Hamming bits at full width) for i < j whose full codes differ in at most `similar_bits`, found among
    each image's NEIGHBOURS nearest by the 256-bit prefix."""
    import faiss

    n = len(codes)
    if n < 2:
        return []
    prefix = np.ascontiguousarray(codes[:, : CANDIDATE_BITS // 8])
    index = faiss.IndexBinaryFlat(prefix.shape[1] * 8)
    index.add(prefix)
    _d, neighbours = index.search(prefix, min(NEIGHBOURS + 1, n))
    table = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1).sum(axis=1)
    pairs: dict[tuple[int, int], int] = {}
    for i in range(n):
        others = neighbours[i][(neighbours[i] != i) & (neighbours[i] >= 0)]
        if len(others) == 0:
            continue
        bits = table[np.bitwise_xor(codes[others], codes[i])].sum(axis=1)
        for j, b in zip(others.tolist(), bits.tolist(), strict=True):
            if b <= similar_bits:
                pairs[(min(i, j), max(i, j))] = int(b)
    return [(i, j, b) for (i, j), b in sorted(pairs.items())]


def _grey(path: Path) -> Image.Image:
    return load_rgb(path, min_side=128).convert("L")


def _thumb(picture: Image.Image, zoom: float) -> npt.NDArray[np.float64]:
    w, h = picture.size
    box = (round(zoom * w), round(zoom * h), round((1 - zoom) * w), round((1 - zoom) * h))
    a = np.asarray(picture.crop(box).resize((32, 32), Image.Resampling.BILINEAR), np.float64)
    return (a - a.mean()) / (a.std() + 1e-9)


def aligned_correlation(a: Image.Image, b: Image.Image) -> float:
    """How alike two pictures' pixels are, forgiving a crop of up to 8 % a side: the best correlation of 32 x 32 grey
    thumbnails, either one zoomed in."""
    ta = {z: _thumb(a, z) for z in _ZOOMS}
    tb = {z: _thumb(b, z) for z in _ZOOMS}
    return max(max(float((ta[z] * tb[0.0]).mean()), float((ta[0.0] * tb[z]).mean())) for z in _ZOOMS)


def _member(path: Path, picture: Image.Image | None) -> Member:
    try:
        st = os.stat(path)
        size, mtime = st.st_size, st.st_mtime
    except OSError:
        size, mtime = 0, 0.0
    try:
        with Image.open(path) as im:
            width, height = im.size
    except Exception:
        width, height = picture.size if picture is not None else (0, 0)
    return Member(path, width, height, size, mtime)


def _keeper_first(members: list[Member]) -> list[Member]:
    return sorted(members, key=lambda m: (-m.width * m.height, -m.bytes, m.mtime, str(m.path)))


def _components(n: int, edges: list[tuple[int, int]]) -> list[list[int]]:
    parent = list(range(n))

    def root(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for i, j in edges:
        parent[root(i)] = root(j)
    groups: dict[int, list[int]] = {}
    for i in {v for e in edges for v in e}:
        groups.setdefault(root(i), []).append(i)
    return sorted((sorted(g) for g in groups.values()), key=lambda g: g[0])


def find_duplicates(
    paths: list[Path],
    codes: npt.NDArray[np.uint8],
    similar_bits: int = SIMILAR_BITS,
    duplicate_correlation: float = DUPLICATE_CORRELATION,
    progress: Callable[[int, int], None] = lambda _done, _total: None,
    cancel: CancelCheck = never_cancelled,
) -> DuplicateReport:
    """Groups of duplicates (the same photo) and of similar photos (the same scene, copies included) among `paths`,
    whose full binary codes are `codes` (one row each). A photo is in at most one group of each kind; a similar group
    that is only copies of one photo is not listed twice."""
    report = DuplicateReport(images=len(paths))
    pairs = candidate_pairs(codes, similar_bits)
    needed = sorted({i for p in pairs for i in p[:2]})
    pictures: dict[int, Image.Image | None] = {}
    for done, i in enumerate(needed, 1):
        if cancel():
            raise Cancelled("finding duplicates was cancelled")
        try:
            pictures[i] = _grey(paths[i])
        except ImageLoadError as exc:
            pictures[i] = None
            report.unreadable.append((paths[i], str(exc)))
        progress(done, len(needed))
    same_photo = []
    for i, j, _bits in pairs:
        a, b = pictures.get(i), pictures.get(j)
        if a is not None and b is not None and aligned_correlation(a, b) >= duplicate_correlation:
            same_photo.append((i, j))

    def group(kind: str, rows: list[int]) -> Group:
        return Group(kind, _keeper_first([_member(paths[i], pictures.get(i)) for i in rows]))

    duplicate_sets = [frozenset(c) for c in _components(len(paths), same_photo)]
    report.groups += [group("duplicates", sorted(c)) for c in duplicate_sets]
    for component in _components(len(paths), [(i, j) for i, j, _b in pairs]):
        if frozenset(component) not in duplicate_sets:  # else nothing but copies of one photo: listed already
            report.groups.append(group("similar", component))
    return report
