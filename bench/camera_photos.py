"""Indexing camera-sized photos: decode alone, model alone and end to end, torch against ONNX Runtime.

    .venv/bin/python bench/camera_photos.py [--photos 48] [--raw-photos 12] [--heic-photos 8] [--rounds 2]

Photographers' folders hold 12- and 24-megapixel JPEGs, where decoding, not the model, sets the pace. The photos
are made from ../shared/datasets pictures (upscaled to 4000 x 3000 and 6000 x 4000 with film grain, saved as JPEG
quality 90, so they compress like photos) in a temporary folder. Interleaved rounds, the best of `--rounds`:

  decode alone   the indexing pipeline's decoding (draft-mode JPEG decode, resize, centre crop) on its threads
  model alone    `embed_arrays` on the decoded batches
  end to end     `embed_paths` over the files: decoding a few batches ahead of the model

Camera RAW files (24 MP DNGs written by tests/raw_files.py: a 12-bit Bayer mosaic with the camera's JPEG preview) are
measured beside them, with ONNX Runtime: a full-size preview (Canon, Nikon), a 1616 x 1080 one (Sony), and none (LibRaw
demosaics at half size), and 12 MP HEIC photos (as iPhones write them; pillow-heif's libheif decodes them, with no
reduced-scale decoding).

Writes bench/results/camera_photos.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from trainer.card import model_fingerprint
from trainer.images import load_for_model
from trainer.inference import BatchEmbedder, embed_all
from trainer.model import load_model
from trainer.onnx_export import export_runtime
from trainer.onnx_runtime import OnnxEmbedder, onnx_paths_cached
from trainer.paths import BUNDLED_MODEL

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT.parent / "shared" / "datasets" / "cub100"
RESULTS = ROOT / "bench" / "results" / "camera_photos.md"
SIZES = {"12 MP": (4000, 3000), "24 MP": (6000, 4000)}
RAW_SIZE = (6000, 4000)
RAW_PREVIEWS: dict[str, int | None] = {"full-size preview": 6000, "1616 px preview": 1616, "no preview": None}


def grainy_photos(n: int, size: tuple[int, int]) -> list[Image.Image]:
    """Dataset pictures upscaled to camera size with film grain, so they compress like photos."""
    sources = sorted(SOURCE.rglob("*.jpg"))[:: max(1, len(sorted(SOURCE.rglob("*.jpg"))) // n)][:n]
    rng = np.random.default_rng(0)
    out = []
    for src in sources:
        img = Image.open(src).convert("RGB").resize(size, Image.Resampling.BICUBIC)
        grain = rng.normal(0, 6, (size[1], size[0], 1)).astype(np.float32)
        out.append(Image.fromarray(np.clip(np.asarray(img, np.float32) + grain, 0, 255).astype(np.uint8)))
    return out


def make_photos(folder: Path, n: int, size: tuple[int, int]) -> list[Path]:
    out = []
    for i, img in enumerate(grainy_photos(n, size)):
        path = folder / f"IMG_{i:04d}.jpg"
        img.save(path, quality=90)
        out.append(path)
    return out


def make_raws(folder: Path, n: int, preview_side: int | None) -> list[Path]:
    """24 MP DNGs with the given embedded preview (tests/raw_files.py, loaded by path: `tests` is not a package)."""
    spec = importlib.util.spec_from_file_location("raw_files", ROOT / "tests" / "raw_files.py")
    assert spec is not None and spec.loader is not None
    raw_files = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(raw_files)
    return [
        raw_files.write_dng(folder / f"DSC_{i:04d}.dng", img, preview_side=preview_side)
        for i, img in enumerate(grainy_photos(n, RAW_SIZE))
    ]


HEIC_QUALITY = 50
"""pillow-heif's quality 50 gives these grainy 12 MP pictures 2.6 MB, an iPhone's size (quality 90: 8.6 MB)."""


def make_heics(folder: Path, n: int) -> list[Path]:
    import pillow_heif

    pillow_heif.register_heif_opener()
    out = []
    for i, img in enumerate(grainy_photos(n, SIZES["12 MP"])):
        path = folder / f"IMG_{i:04d}.HEIC"
        img.save(path, format="HEIF", quality=HEIC_QUALITY)
        out.append(path)
    return out


NOTES = """Decoding and the model share the same 2 cores, so end to end cannot exceed 1 / (1/decode + 1/model): {bound}

RAW files (issue 17): with the camera's full-size JPEG preview a 24 MP DNG costs what a 24 MP JPEG costs (the preview
is that JPEG, read from inside the RAW); with a 1616 px preview (Sony's size) decoding takes a tenth of that and the
model sets the pace; without a preview LibRaw's half-size demosaic is four times slower than a JPEG of the same size.
LibRaw reads the sensor data only when it demosaics, so the preview path never touches it.

HEIC has no reduced-scale decode: libheif (libde265) decodes the whole HEVC picture, about 0.45 s of a core for a
12 MP photo of an iPhone's size, where a JPEG in draft mode takes 30 ms; a HEIC's own thumbnail (320 x 240 on an
iPhone) is smaller than the model's 256 px, so it cannot stand in for the picture. A library of HEIC photos indexes
at the decoder's pace (the model waits); its thumbnails are then made in the same pass, never decoded again.
"""


def bound_text(best: dict[str, float]) -> str:
    """The 2-core bound on end to end for 12 MP photos with ONNX Runtime, and what 85 % of decode alone would need."""
    decode, model, e2e = best["decode"], best["ONNX Runtime model"], best["ONNX Runtime e2e"]
    bound = 1 / (1 / decode + 1 / model)
    needed = decode / (1 / 0.85 - 1)
    return (
        f"12 MP with ONNX Runtime, 1 / (1/{decode:.1f} + 1/{model:.1f}) = {bound:.1f} images/s "
        f"({100 * bound / decode:.0f} % of decode alone), measured {e2e:.1f}. 85 % of decode alone would need the "
        f"model at {needed:.0f} images/s on the cores decoding also needs, {needed / model:.1f} times ONNX Runtime's "
        "fp32 here (int8 is slower on these cores: bench/results/int8_recall.md)."
    )


def onnx_row(label: str, files: list[Path], onnx: OnnxEmbedder, workers: int, rounds: int) -> str:
    """A table row of decode alone and end to end with ONNX Runtime (the best of `rounds`) for these files."""
    mb = np.mean([f.stat().st_size for f in files]) / 2**20
    best: dict[str, float] = {}
    for _ in range(rounds):
        rate, _decoded = decode_rate(files, workers, onnx.card.resize_size, onnx.card.input_size)
        best["decode"] = max(best.get("decode", 0.0), rate)
        t = time.perf_counter()
        embed_all(onnx, files)
        best["e2e"] = max(best.get("e2e", 0.0), len(files) / (time.perf_counter() - t))
    return (
        f"| {label} | {mb:.1f} | {best['decode']:.1f} | ONNX Runtime | | {best['e2e']:.1f} | "
        f"{100 * best['e2e'] / best['decode']:.0f} % |"
    )


def decode_rate(files: list[Path], workers: int, resize: int, crop: int) -> tuple[float, np.ndarray]:
    with ThreadPoolExecutor(workers) as pool:
        t = time.perf_counter()
        decoded = np.stack(list(pool.map(lambda f: load_for_model(f, resize, crop), files)))
        return len(files) / (time.perf_counter() - t), decoded


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--photos", type=int, default=48)
    p.add_argument("--raw-photos", type=int, default=12, help="DNGs per kind of preview (0: no RAW rows)")
    p.add_argument("--heic-photos", type=int, default=8, help="12 MP HEIC photos (0: no HEIC row)")
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args()
    if not SOURCE.is_dir():
        print(f"skipped: {SOURCE} is absent", file=sys.stderr)
        return 0
    work = Path(tempfile.mkdtemp(prefix="camera-photos-"))
    graph, record = onnx_paths_cached(work, model_fingerprint(BUNDLED_MODEL))
    export_runtime(BUNDLED_MODEL, graph, record)
    model = load_model(BUNDLED_MODEL)
    card = model.card
    runners = {"torch": BatchEmbedder(model, "cpu", batch_size=32), "ONNX Runtime": OnnxEmbedder(graph, card)}
    workers = BatchEmbedder(model, "cpu").decode_workers
    lines = [
        "## Camera-sized photos: where the time goes (bench/camera_photos.py)",
        "",
        f"Bundled model, 224 px, CPU ({os.cpu_count()} cores), {args.photos} photos per size made from cub100 "
        f"(upscaled with grain, JPEG quality 90); best of {args.rounds} interleaved rounds; images/s.",
        "",
        "| photos | MB each | decode alone | runtime | model alone | end to end | end to end / decode alone |",
        "|---|---:|---:|---|---:|---:|---:|",
    ]
    for label, size in SIZES.items():
        folder = work / label.replace(" ", "")
        folder.mkdir()
        files = make_photos(folder, args.photos, size)
        mb = np.mean([f.stat().st_size for f in files]) / 2**20
        best: dict[str, float] = {}
        for _ in range(args.rounds):
            rate, decoded = decode_rate(files, workers, card.resize_size, card.input_size)
            best["decode"] = max(best.get("decode", 0.0), rate)
            for name, runner in runners.items():
                runner.embed_arrays(decoded[:8])
                t = time.perf_counter()
                for i in range(0, len(decoded), 32):
                    runner.embed_arrays(decoded[i : i + 32])
                best[f"{name} model"] = max(best.get(f"{name} model", 0.0), len(files) / (time.perf_counter() - t))
                t = time.perf_counter()
                embed_all(runner, files)
                best[f"{name} e2e"] = max(best.get(f"{name} e2e", 0.0), len(files) / (time.perf_counter() - t))
        if label == "12 MP":
            twelve = dict(best)
        for name in runners:
            e2e = best[f"{name} e2e"]
            lines.append(
                f"| {label} | {mb:.1f} | {best['decode']:.1f} | {name} | {best[f'{name} model']:.1f} | {e2e:.1f} | "
                f"{100 * e2e / best['decode']:.0f} % |"
            )
            print(lines[-1], flush=True)
    onnx = runners["ONNX Runtime"]
    kinds = [(f"24 MP DNG, {label}", lambda f, side=side: make_raws(f, args.raw_photos, side))
             for label, side in RAW_PREVIEWS.items() if args.raw_photos]  # fmt: skip
    if args.heic_photos:
        kinds.append(("12 MP HEIC", lambda f: make_heics(f, args.heic_photos)))
    for label, make in kinds:
        folder = work / label.replace(" ", "-").replace(",", "")
        folder.mkdir()
        lines.append(onnx_row(label, make(folder), onnx, workers, args.rounds))
        print(lines[-1], flush=True)
    text = "\n".join(lines) + "\n\n" + NOTES.format(bound=bound_text(twelve))
    print(text)
    RESULTS.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
