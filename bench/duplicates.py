"""Where do duplicates end and bursts begin? Hamming distances between the binary codes of planted variants of
real photos (issue 16's calibration: measured before any threshold is chosen).

A folder is made under runs/bench/duplicates (never inside the project's tracked files, never copied into it) from
`--bases` real photos of ../shared/datasets (several data sets, every one a different picture), and, per base:

* *duplicates* (the same photo): resized to half, re-encoded as JPEG at quality 40 and 75, cropped 4 % a side,
  stored rotated with an EXIF orientation that turns it back, brightened 10 %;
* for a third of the bases, a *burst* (the same scene, another frame): shifted by 12 % of the width and turned 4
  degrees, and one shifted by 20 %: similar, never duplicates.

The folder is indexed with the bundled model, and the distances (bits of 1280 that differ from the original) are
printed per kind, with each original's nearest other photo for comparison.

    .venv/bin/python bench/duplicates.py [--bases 150]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageEnhance

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ROOT.parent / "shared" / "datasets"
WORK = ROOT / "runs" / "bench" / "duplicates"
RESULTS = ROOT / "bench" / "results" / "duplicates.md"  # --skip N writes duplicates_skip<N>.md
SOURCES = ["caltech101", "flowers51", "clothing10", "cub100", "cars98"]

DUPLICATE_KINDS = ("half size", "jpeg q40", "jpeg q75", "crop 4 %", "exif rotated", "brighter 10 %")
BURST_KINDS = ("shifted 12 % turned 4 deg", "shifted 20 %")


def variant(img: Image.Image, kind: str) -> tuple[Image.Image, dict[str, object]]:
    """The picture as `kind` makes it, and the save options (EXIF for the rotated one)."""
    w, h = img.size
    if kind == "half size":
        return img.resize((max(1, w // 2), max(1, h // 2)), Image.Resampling.LANCZOS), {"quality": 92}
    if kind.startswith("jpeg q"):
        return img, {"quality": int(kind[6:])}
    if kind == "crop 4 %":
        return img.crop((round(0.04 * w), round(0.04 * h), round(0.96 * w), round(0.96 * h))), {"quality": 92}
    if kind == "exif rotated":
        exif = Image.Exif()
        exif[0x0112] = 6  # "rotate 90 CW to view": the pixels are stored turned the other way
        return img.transpose(Image.Transpose.ROTATE_90), {"quality": 92, "exif": exif.tobytes()}
    if kind == "brighter 10 %":
        return ImageEnhance.Brightness(img).enhance(1.1), {"quality": 92}
    if kind == "shifted 12 % turned 4 deg":
        turned = img.rotate(4, resample=Image.Resampling.BICUBIC, expand=False)
        return turned.crop((round(0.12 * w), 0, w, h)), {"quality": 92}
    if kind == "shifted 20 %":
        return img.crop((round(0.2 * w), 0, w, h)), {"quality": 92}
    raise ValueError(kind)


def bases(n: int, skip: int = 0) -> list[Path]:
    """`n` real photos, round-robin over the data sets and their classes (a different picture each), after the
    first `skip` (another set of photos than the one the thresholds were chosen on)."""
    per_source = []
    for name in SOURCES:
        classes = sorted(p for p in (DATASETS / name).iterdir() if p.is_dir())
        per_source.append([sorted(c.iterdir())[i] for i in range(6) for c in classes])
    out: list[Path] = []
    while len(out) < n + skip:
        for files in per_source:
            if files and len(out) < n + skip:
                out.append(files.pop(0))
    return out[skip:]


def build(n: int, skip: int = 0) -> dict[str, tuple[int, str]]:
    """The folder; relpath -> (base number, kind)."""
    folder = WORK / "photos"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    planted: dict[str, tuple[int, str]] = {}
    for b, path in enumerate(bases(n, skip)):
        img = Image.open(path).convert("RGB")
        kinds = ("original", *DUPLICATE_KINDS, *(BURST_KINDS if b % 3 == 0 else ()))
        for kind in kinds:
            out, options = (img, {"quality": 95}) if kind == "original" else variant(img, kind)
            rel = f"{b:04d}_{kind.replace(' ', '_').replace('%', 'pc')}.jpg"
            out.save(folder / rel, **options)
            planted[rel] = (b, kind)
    return planted


def grouping_figures(coll: Any, planted: dict[str, tuple[int, str]], codes: np.ndarray) -> list[str]:
    """Precision and recall of explorer.engine.duplicates' duplicate groups against the planted ones, by pairs."""
    from explorer.engine.duplicates import DUPLICATE_CORRELATION, SIMILAR_BITS, find_duplicates

    relpaths = list(coll.snapshot.relpaths)
    paths = [WORK / "photos" / r for r in relpaths]
    started = time.perf_counter()
    report = find_duplicates(paths, codes)
    seconds = time.perf_counter() - started
    same_photo = {"original", *DUPLICATE_KINDS}
    truth = set()
    by_base: dict[int, list[str]] = {}
    for rel, (b, kind) in planted.items():
        if kind in same_photo:
            by_base.setdefault(b, []).append(rel)
    for members in by_base.values():
        truth |= {frozenset((a, c)) for a in members for c in members if a < c}
    found = set()
    bursts_as_duplicates = 0
    for group in report.of_kind("duplicates"):
        names = [m.path.name for m in group.members]
        found |= {frozenset((a, c)) for a in names for c in names if a < c}
        bursts_as_duplicates += sum(planted[n][1] in BURST_KINDS for n in names)
    hits = len(found & truth)
    precision = hits / len(found) if found else 0.0
    recall = hits / len(truth) if truth else 0.0
    return [
        f"Groups at the defaults (similar: codes within {SIMILAR_BITS} bits; duplicates: aligned correlation of the "
        f"pixels >= {DUPLICATE_CORRELATION}), {len(paths)} pictures, {seconds:.1f} s: duplicate pairs precision "
        f"**{precision:.3f}**, recall **{recall:.3f}** ({hits} of {len(truth)} planted pairs, {len(found)} reported); "
        f"burst frames reported as duplicates: **{bursts_as_duplicates}**; {len(report.of_kind('similar'))} similar "
        "groups.",
    ]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bases", type=int, default=150)
    p.add_argument("--skip", type=int, default=0, help="start after this many photos (a held-out set: --skip 150)")
    args = p.parse_args()
    if not DATASETS.is_dir():
        print(f"skipped: {DATASETS} is absent (see ../shared/datasets/README.md)", file=sys.stderr)
        return 0
    import os

    os.environ.setdefault("RETRIEVAL_EXPLORER_CACHE", str(WORK / "cache"))
    from explorer.engine.session import RetrievalSession
    from trainer.binary import hamming_distances

    planted = build(args.bases, args.skip)
    session = RetrievalSession()
    started = time.perf_counter()
    session.index(WORK / "photos")
    print(f"{len(planted)} pictures indexed in {time.perf_counter() - started:.0f} s", flush=True)
    coll = session.collection(WORK / "photos")
    codes = coll.codes
    assert codes is not None
    row = {r: i for i, r in enumerate(coll.snapshot.relpaths)}
    originals = {b: row[r] for r, (b, kind) in planted.items() if kind == "original"}
    by_kind: dict[str, list[int]] = {}
    for rel, (b, kind) in planted.items():
        if kind != "original":
            d = int(hamming_distances(codes[originals[b]], codes[row[rel]][None])[0])
            by_kind.setdefault(kind, []).append(d)
    others = []  # each original's nearest picture of another base
    base_of = np.array([planted[r][0] for r in coll.snapshot.relpaths])
    for b, i in originals.items():
        dist = hamming_distances(codes[i], codes).astype(float)
        dist[base_of == b] = np.inf
        others.append(int(dist.min()))
    lines = [
        "## Duplicates and bursts: Hamming distances of planted variants (bench/duplicates.py)",
        "",
        f"{args.bases} real photos of ../shared/datasets ({', '.join(SOURCES)}; after the first {args.skip}), each "
        "with the variants below; "
        f"bits of {codes.shape[1] * 8} that differ from the original, bundled model.",
        "",
        "| kind | pairs | min | median | 95th pct | max |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for kind, ds in [*by_kind.items(), ("nearest other photo", others)]:
        a = np.array(ds)
        lines.append(f"| {kind} | {len(a)} | {a.min()} | {np.median(a):.0f} | {np.percentile(a, 95):.0f} | {a.max()} |")
    lines += ["", *grouping_figures(coll, planted, codes), ""]
    lines += [
        "What the distances alone say: with the codes alone, a duplicate threshold cannot be drawn. Half-size "
        "copies (median 268 bits at --skip 0: 112-px pictures upscaled by the model's resize) and JPEG quality 40 "
        "lie as far from their original as burst frames do, while every variant stays closer than most other "
        "photos. The duplicate level needs a second signal that is sensitive to a shift and blind to re-encoding. "
        "For the similar level the codes mostly suffice (variants and bursts up to 479 bits, other photos from 376: "
        "the tails overlap). explorer.engine.duplicates therefore asks the codes for similar pairs and the pixels "
        "(32 x 32 grey thumbnails, a crop of up to 8 % undone) for duplicates; the figures above are its groups at "
        "the default thresholds.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    (RESULTS.with_name(f"duplicates_skip{args.skip}.md") if args.skip else RESULTS).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
