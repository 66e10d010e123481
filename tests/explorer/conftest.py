"""Fixtures for the explorer tests: a fast real model, an embedder, and generated image folders.

The bundled model embeds at 224x224, about 20 images/s on a small CPU. EfficientNet is fully
convolutional, so the same ImageNet weights with a card that asks for 64x64 input (resize 72) give real,
discriminative features at about a tenth of the cost; that saved copy is what the engine tests use.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from imagegen import make_image
from PIL import Image

from explorer.engine.catalog import Catalog
from trainer.inference import BatchEmbedder
from trainer.model import EmbeddingModel, load_model, save_model

PROJECT_ROOT = Path(__file__).resolve().parents[2]
BUNDLED_MODEL = PROJECT_ROOT / "resources" / "models" / "default"

SMALL_INPUT = 64
SMALL_RESIZE = 72

ImageMaker = Callable[..., Path]


@pytest.fixture(scope="session")
def make_img() -> ImageMaker:
    """`make_img(path, seed, size=(96, 80), fmt=None) -> path` for tests that need extra pictures."""
    return make_image


@pytest.fixture(scope="session")
def small_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled ImageNet weights saved with a 64x64 input contract (a real, fast model on disk)."""
    model = load_model(BUNDLED_MODEL)
    card = dataclasses.replace(
        model.card,
        name="test-small-lite0",
        input_size=SMALL_INPUT,
        resize_size=SMALL_RESIZE,
        description="bundled weights at 64x64 input, for tests",
    )
    weights, _card = save_model(model, tmp_path_factory.mktemp("model") / "small", card)
    return weights.with_suffix("")


@pytest.fixture(scope="session")
def small_model(small_model_path: Path) -> EmbeddingModel:
    return load_model(small_model_path)


@pytest.fixture
def reuse_small_model(
    small_model_path: Path, small_model: EmbeddingModel, monkeypatch: pytest.MonkeyPatch
) -> list[Path]:
    """Sessions (and so the CLI) get the already loaded small model instead of loading it again.

    Returns the list of paths the session layer asked to load, for tests of lazy loading.
    """
    from trainer import model as model_module  # the session imports load_model when it first needs it

    original = model_module.load_model
    asked: list[Path] = []

    def cached(path: Path) -> EmbeddingModel:
        asked.append(Path(path))
        return small_model if Path(path) == small_model_path else original(path)

    monkeypatch.setattr(model_module, "load_model", cached)
    return asked


@pytest.fixture
def run(
    small_model_path: Path, reuse_small_model: list[Path], capsys: pytest.CaptureFixture[str]
) -> Callable[..., tuple[int, str, str]]:
    """run(*args) -> (exit code, stdout, stderr) of `explorer --model <small> --device cpu *args`."""
    from explorer.cli import main

    def invoke(*args: object) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main(["--model", str(small_model_path), "--device", "cpu", *map(str, args)])
        out, err = capsys.readouterr()
        return code, out, err

    return invoke


@pytest.fixture
def catalog(tmp_path: Path) -> Iterator[Catalog]:
    """An empty catalog for 1280-d embeddings (the bundled model's), closed after the test."""
    c = Catalog(tmp_path / "cache" / "catalog.sqlite", 1280)
    yield c
    c.close()


@pytest.fixture
def embedder(small_model: EmbeddingModel) -> BatchEmbedder:
    """A CPU embedder over the shared small model, in batches of 4 (so a folder of 12 is three batches)."""
    return BatchEmbedder(small_model, "cpu", batch_size=4, decode_workers=2)


def write_bad_corpus(root: Path) -> dict[str, str | None]:
    """Every kind of file a real photo folder holds, under `root`.

    Returns relpath -> expected outcome: None for files that must be indexed, a substring of the reason
    for files that must be reported as skipped, and "" for files that must be ignored silently (hidden
    files and OS debris are not the user's photos).
    """
    root.mkdir(parents=True, exist_ok=True)
    expected: dict[str, str | None] = {}

    make_image(root / "good.jpg", seed=1)
    expected["good.jpg"] = None

    full = make_image(root / "tmp_full.jpg", seed=2, size=(160, 120)).read_bytes()
    (root / "tmp_full.jpg").unlink()
    (root / "truncated.jpg").write_bytes(full[: len(full) // 2])
    expected["truncated.jpg"] = "truncated"

    (root / "empty.jpg").write_bytes(b"")
    expected["empty.jpg"] = "zero-byte"

    (root / "text.jpg").write_text("this is not a picture, just a note someone renamed\n")
    expected["text.jpg"] = "not an image (text file)"

    (root / "notes.txt").write_text("shopping list\n")
    expected["notes.txt"] = "not an image file type (.txt)"

    rgb = np.asarray(Image.open(make_image(root / "tmp.png", seed=3, fmt="PNG")).convert("RGB"))
    (root / "tmp.png").unlink()
    Image.fromarray(rgb).convert("CMYK").save(root / "cmyk.jpg", "JPEG")
    expected["cmyk.jpg"] = None

    pal = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    pal.info["transparency"] = 0
    pal.save(root / "palette.png", transparency=0)
    expected["palette.png"] = None

    deep = (rgb[..., 0].astype(np.uint16) * 257).astype(np.uint16)
    Image.fromarray(deep).save(root / "deep16.png")  # uint16 -> mode I;16
    expected["deep16.png"] = None

    (root / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1" + bytes(100))
    expected[".DS_Store"] = ""
    make_image(root / ".hidden.jpg", seed=4)
    expected[".hidden.jpg"] = ""
    return expected


@pytest.fixture
def bad_corpus(tmp_path: Path) -> tuple[Path, dict[str, str | None]]:
    root = tmp_path / "messy"
    return root, write_bad_corpus(root)
