"""BatchEmbedder: bad files are reported not fatal, order is kept, cancellation and progress, EXIF."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from imagegen import make_image
from PIL import Image

from trainer.images import ImageLoadError, Skipped
from trainer.inference import BatchEmbedder, embed_all
from trainer.model import EmbeddingModel, load_model
from trainer.progress import Cancelled, Progress

PROJECT_ROOT = Path(__file__).resolve().parents[2]
BUNDLED_MODEL = PROJECT_ROOT / "resources" / "models" / "default"
SHARED_DATASETS = PROJECT_ROOT.parent / "shared" / "datasets"


@pytest.fixture(scope="module")
def model() -> EmbeddingModel:
    return load_model(BUNDLED_MODEL)


@pytest.fixture
def embedder(model: EmbeddingModel) -> BatchEmbedder:
    """The bundled ImageNet weights fed 64x64 instead of 224x224 (the network is fully convolutional):
    real, discriminative features at a tenth of the cost."""
    e = BatchEmbedder(model, "cpu", batch_size=3, decode_workers=2)
    e.card = dataclasses.replace(model.card, input_size=64, resize_size=72)
    return e


def _cos(a: npt.NDArray[np.float32], b: npt.NDArray[np.float32]) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.fixture
def mixed_files(tmp_path: Path) -> tuple[list[Path], dict[Path, str]]:
    """Good and bad files interleaved; returns (paths in order, bad path -> expected reason)."""
    good = [make_image(tmp_path / f"good{i}{'.jpg' if i % 2 else '.png'}", seed=i) for i in range(5)]
    truncated = tmp_path / "truncated.jpg"
    data = make_image(tmp_path / "whole.jpg", seed=9, size=(160, 120)).read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    text = tmp_path / "text.jpg"
    text.write_text("not a picture\n")
    missing = tmp_path / "vanished.jpg"
    html = tmp_path / "page.png"
    html.write_text("<!DOCTYPE html><html><body>saved page</body></html>")
    order = [good[0], truncated, good[1], empty, text, missing, good[2], good[3], html, good[4]]
    bad = {
        truncated: "truncated JPEG",
        empty: "zero-byte file",
        text: "not an image (text file)",
        missing: "no such file (moved or deleted?)",
        html: "not an image (HTML page)",
    }
    return order, bad


def test_bad_files_are_skipped_with_reasons_and_order_is_kept(
    embedder: BatchEmbedder, mixed_files: tuple[list[Path], dict[Path, str]]
) -> None:
    paths, bad = mixed_files
    batches = list(embedder.embed_paths(paths))
    assert len(batches) == 4  # ceil(10 / 3): a batch of bad files still yields (and reports) them
    kept = [p for b in batches for p in b.paths]
    skipped = [s for b in batches for s in b.skipped]
    assert kept == [p for p in paths if p not in bad]
    assert [s.path for s in skipped] == [p for p in paths if p in bad]
    assert all(isinstance(s, Skipped) for s in skipped)
    assert {s.path: s.reason for s in skipped} == bad
    for b in batches:
        assert b.embeddings.dtype == np.float32
        assert b.embeddings.shape == (len(b.paths), 1280)
    # Each embedding belongs to its path: the same as embedding that file alone.
    emb = np.concatenate([b.embeddings for b in batches])
    assert np.isfinite(emb).all()
    single = np.stack([embedder.embed_file(p) for p in kept])
    np.testing.assert_allclose(emb, single, rtol=1e-4, atol=1e-4)
    # Different pictures really get different embeddings.
    assert max(_cos(emb[i], emb[j]) for i in range(5) for j in range(i + 1, 5)) < 0.99


def test_a_batch_of_only_bad_files(embedder: BatchEmbedder, tmp_path: Path) -> None:
    bad = [tmp_path / f"e{i}.jpg" for i in range(3)]
    for p in bad:
        p.write_bytes(b"")
    (batch,) = list(embedder.embed_paths(bad))
    assert batch.paths == []
    assert batch.embeddings.shape == (0, 1280)
    assert [s.path for s in batch.skipped] == bad


def test_embed_all_concatenates(embedder: BatchEmbedder, mixed_files: tuple[list[Path], dict[Path, str]]) -> None:
    paths, bad = mixed_files
    kept, emb, skipped = embed_all(embedder, paths)
    assert kept == [p for p in paths if p not in bad]
    assert emb.shape == (len(kept), 1280)
    assert {s.path for s in skipped} == set(bad)
    kept, emb, skipped = embed_all(embedder, [])
    assert (kept, emb.shape, skipped) == ([], (0, 1280), [])


def test_cancel_between_batches(embedder: BatchEmbedder, tmp_path: Path) -> None:
    paths = [make_image(tmp_path / f"c{i}.png", seed=i, size=(40, 40)) for i in range(9)]
    asked = []

    def cancel() -> bool:
        asked.append(True)
        return len(asked) > 1  # let the first batch through, then stop

    seen = []
    with pytest.raises(Cancelled):
        for batch in embedder.embed_paths(paths, cancel=cancel):
            seen.append(batch.paths)
    assert seen == [paths[:3]]

    with pytest.raises(Cancelled):
        next(iter(embedder.embed_paths(paths, cancel=lambda: True)))
    # The embedder is still usable after a cancelled run.
    assert [p for b in embedder.embed_paths(paths[:4]) for p in b.paths] == paths[:4]


def test_progress_is_monotonic_up_to_total(
    embedder: BatchEmbedder, mixed_files: tuple[list[Path], dict[Path, str]]
) -> None:
    paths, _ = mixed_files
    reports: list[Progress] = []
    for _ in embedder.embed_paths(paths, progress=reports.append):
        pass
    assert [r.done for r in reports] == [3, 6, 9, 10]  # skipped files count as done
    assert all(r.total == len(paths) for r in reports)
    assert all(r.rate > 0 and r.stage == "embedding" for r in reports)
    # Not a timing: the estimate of the work left is derived from done/total and must be zero at the end.
    assert reports[-1].seconds_left == 0.0


def test_single_image_entry_points_agree(embedder: BatchEmbedder, tmp_path: Path) -> None:
    path = make_image(tmp_path / "one.png", seed=3, size=(120, 90))
    from_file = embedder.embed_file(path)
    from_image = embedder.embed_image(Image.open(path))
    from_rgba = embedder.embed_image(Image.open(path).convert("RGBA"))  # a pasted screenshot
    assert from_file.shape == (1280,)
    np.testing.assert_allclose(from_file, from_image, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(from_file, from_rgba, rtol=1e-5, atol=1e-5)
    with pytest.raises(ImageLoadError, match="zero-byte"):
        (tmp_path / "zero.jpg").write_bytes(b"")
        embedder.embed_file(tmp_path / "zero.jpg")


def _upright_photo(tmp_path: Path) -> Image.Image:
    """A real photo where the shared data has one, else a generated picture that is not symmetric."""
    cub = SHARED_DATASETS / "cub100" / "Blue_Jay"
    if cub.is_dir():
        first = sorted(cub.glob("*.jpg"))[0]
        return Image.open(first).convert("RGB")
    return Image.open(make_image(tmp_path / "src.png", seed=21, size=(160, 110))).convert("RGB")


def test_exif_rotated_copy_embeds_like_the_upright_picture(model: EmbeddingModel, tmp_path: Path) -> None:
    # At the model's real input size: at 64x64, JPEG block-alignment noise alone moves the cosine by 0.01.
    embedder = BatchEmbedder(model, "cpu", decode_workers=1)
    upright = _upright_photo(tmp_path)
    plain = tmp_path / "upright.jpg"
    upright.save(plain, quality=95)
    # What a phone writes: pixels as the sensor saw them (turned 90 degrees) plus orientation 6,
    # "rotate 90 clockwise to display".
    exif = Image.Exif()
    exif[0x0112] = 6
    sideways = upright.transpose(Image.Transpose.ROTATE_90)
    tagged = tmp_path / "phone.jpg"
    sideways.save(tagged, quality=95, exif=exif.tobytes())
    untagged = tmp_path / "sideways.jpg"
    sideways.save(untagged, quality=95)

    e_plain, e_tagged, e_untagged = (embedder.embed_file(p) for p in (plain, tagged, untagged))
    assert _cos(e_plain, e_tagged) > 0.99
    # The check can fail: ignoring the orientation would give the sideways picture's embedding.
    assert _cos(e_plain, e_untagged) < 0.97
