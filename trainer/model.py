"""The one embedding model definition, shared by the explorer and the trainer.

backbone -> global average pooling -> LayerNorm (no affine) -> Linear (no bias) -> D-dimensional embedding,
as in Zhai & Wu, "Classification is a Strong Baseline for Deep Metric Learning" (BMVC 2019). The LayerNorm
centres each vector, which is what makes binarization at zero keep the information; the embedding layer is
skipped when it would only map the backbone width onto itself untrained.

A model on disk is two files: `<name>.safetensors` (weights; loading never unpickles) and `<name>.json`
(the model card: architecture, input contract, nested dimensions, training data and measured metrics).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from trainer.atomic import atomic_write
from trainer.backbones import get_backbone

CARD_FORMAT_VERSION = 1


def nested_dims(dim: int, smallest: int = 64) -> list[int]:
    """The prefix dimensions a model of width `dim` is trained (and compared) at: powers of two, then `dim`.

    >>> nested_dims(1280)
    [64, 128, 256, 512, 1024, 1280]
    >>> nested_dims(48)
    [48]
    """
    dims = []
    d = smallest
    while d < dim:
        dims.append(d)
        d *= 2
    return [*dims, dim]


@dataclass
class ModelCard:
    """Everything needed to rebuild, feed and judge a model, stored beside its weights as JSON."""

    name: str
    backbone: str
    feature_dim: int
    dim: int
    has_embedding_layer: bool
    input_size: int
    resize_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    nested_dims: list[int]
    trained: bool
    description: str = ""
    trained_on: list[str] = field(default_factory=list)
    recipe: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    architecture: str = "EmbeddingModel"
    format_version: int = CARD_FORMAT_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=False)

    @classmethod
    def from_json(cls, text: str) -> ModelCard:
        """The card, checked before anything is built from it: types, ranges and the backbone's own contract."""
        if len(text) > MAX_CARD_BYTES:
            raise ModelFileError(f"model card is {len(text):,} bytes; a card is a few kilobytes")
        try:
            data = json.loads(text)
        except RecursionError:
            raise ModelFileError("model card nests too deeply to be a model card") from None
        if not isinstance(data, dict):
            raise ModelFileError("model card is not a JSON object")
        if data.get("architecture") != "EmbeddingModel":
            raise ModelFileError(f"unsupported architecture {data.get('architecture')!r}")
        if int(data.get("format_version", 0)) > CARD_FORMAT_VERSION:
            raise ModelFileError("model card is from a newer version of this program")
        known = set(cls.__dataclass_fields__)
        card = cls(**{k: v for k, v in data.items() if k in known})
        card.mean = tuple(card.mean)  # type: ignore[assignment]
        card.std = tuple(card.std)  # type: ignore[assignment]
        if len(card.std) != 3 or not all(isinstance(x, int | float) and x > 0 for x in card.std):
            raise ModelFileError(f"the card's std must be three positive numbers, got {list(card.std)}")
        _check_card(card)
        return card

    @classmethod
    def for_backbone(cls, name: str, backbone: str, dim: int | None = None, **extra: Any) -> ModelCard:
        """A card for a fresh model; `dim=None` keeps the backbone width with no embedding layer."""
        spec = get_backbone(backbone)
        layer = dim is not None
        d = spec.feature_dim if dim is None else dim
        return cls(
            name=name, backbone=backbone, feature_dim=spec.feature_dim, dim=d, has_embedding_layer=layer,
            input_size=spec.input_size, resize_size=spec.resize_size, mean=spec.mean, std=spec.std,
            nested_dims=nested_dims(d), trained=False, **extra,
        )  # fmt: skip


class ModelFileError(RuntimeError):
    """A model file or card is missing, corrupt or incompatible; the message names the file."""


MAX_CARD_BYTES = 1 << 20
MAX_INPUT_SIZE = 1024  # pixels a side: beyond it one image's activations take gigabytes


def _check_card(card: ModelCard) -> None:
    """Refuse a card that would build a wrong or dangerous model, with the field named."""
    from trainer.backbones import BACKBONES

    if card.backbone not in BACKBONES:
        raise ModelFileError(
            f"unknown backbone {card.backbone!r} in the model card; known: {', '.join(sorted(BACKBONES))}"
        )
    ints = {"feature_dim": card.feature_dim, "dim": card.dim, "input_size": card.input_size,
            "resize_size": card.resize_size}  # fmt: skip
    for name, value in ints.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ModelFileError(f"the card's {name} must be a positive whole number, got {value!r}")
    if card.feature_dim != BACKBONES[card.backbone].feature_dim:
        raise ModelFileError(f"the card's feature_dim {card.feature_dim} is not {card.backbone}'s width")
    if not card.input_size <= card.resize_size <= MAX_INPUT_SIZE:
        raise ModelFileError(
            f"the card's input_size {card.input_size} and resize_size {card.resize_size} must satisfy "
            f"input_size <= resize_size <= {MAX_INPUT_SIZE}"
        )
    if len(card.mean) != 3 or not all(isinstance(x, int | float) and -10 < x < 10 for x in card.mean):
        raise ModelFileError(f"the card's mean must be three numbers, got {list(card.mean)}")
    if not isinstance(card.nested_dims, list) or not all(
        isinstance(d, int) and 0 < d <= card.dim for d in card.nested_dims
    ):
        raise ModelFileError(f"the card's nested_dims must be dimensions up to {card.dim}")


class EmbeddingModel(nn.Module):
    """Image batch (normalised float, NCHW) -> embedding (B, D); cosine on the L2-normalised output."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, card: ModelCard, pretrained: bool = False, backbone_weights: Path | None = None) -> None:
        super().__init__()
        self.card = card
        spec = get_backbone(card.backbone)
        self.backbone = spec.build(pretrained, backbone_weights)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.norm = nn.LayerNorm(card.feature_dim, elementwise_affine=False)
        self.embedding: nn.Module = (
            nn.Linear(card.feature_dim, card.dim, bias=False) if card.has_embedding_layer else nn.Identity()
        )
        self.register_buffer("mean", torch.tensor(card.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(card.std).view(1, 3, 1, 1), persistent=False)

    def pooled_features(self, images: torch.Tensor) -> torch.Tensor:
        """Backbone + pooling + LayerNorm: the input of the embedding layer."""
        return self.norm(self.pool(self.backbone(images)).flatten(1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.embedding(self.pooled_features(images))

    def normalize_uint8(self, batch: torch.Tensor) -> torch.Tensor:
        """uint8 NHWC (as decoded) -> normalised float NCHW, on the batch so it runs on the model's device."""
        x = batch.permute(0, 3, 1, 2).float().div_(255.0)
        return (x - self.mean) / self.std

    def new_layer_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters that are not the backbone's: what the frozen-backbone warm-up trains."""
        yield from self.embedding.parameters()


def model_paths(path: Path) -> tuple[Path, Path]:
    """Accepts `x`, `x.safetensors` or `x.json`; returns (weights, card)."""
    path = Path(path)
    stem = path.with_suffix("") if path.suffix in (".safetensors", ".json") else path
    return stem.with_name(stem.name + ".safetensors"), stem.with_name(stem.name + ".json")


def save_model(model: EmbeddingModel, path: Path, card: ModelCard | None = None) -> tuple[Path, Path]:
    """Save weights (safetensors), card (JSON) and its Markdown rendering for people, each atomically."""
    card = card or model.card
    weights, card_path = model_paths(path)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write(weights, lambda p: save_file(state, str(p), metadata={"format": "pt", "name": card.name}))
    atomic_write(card_path, lambda p: p.write_text(card.to_json() + "\n", encoding="utf-8"))
    from trainer.model_card import card_markdown

    markdown = card_markdown(card)
    atomic_write(card_path.with_suffix(".md"), lambda p: p.write_text(markdown, encoding="utf-8"))
    return weights, card_path


def load_card(path: Path) -> ModelCard:
    _weights, card_path = model_paths(path)
    try:
        return ModelCard.from_json(card_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelFileError(f"model card not found: {card_path}") from None
    except (json.JSONDecodeError, TypeError, ValueError) as exc:
        raise ModelFileError(f"model card {card_path} is not valid: {exc}") from None


def load_model(path: Path) -> EmbeddingModel:
    """Rebuild the model from its card and load its safetensors weights (strict: every tensor must fit)."""
    card = load_card(path)
    weights, _ = model_paths(path)
    try:
        state = load_file(str(weights))
    except FileNotFoundError:
        raise ModelFileError(f"model weights not found: {weights}") from None
    except Exception as exc:  # safetensors raises its own error types for corrupt headers
        raise ModelFileError(f"model weights {weights} are not readable: {exc}") from None
    bad = sorted(k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all()))
    if bad:
        raise ModelFileError(
            f"model weights {weights} hold values that are not numbers ({', '.join(bad[:3])}): the file is damaged"
        )
    model = EmbeddingModel(card, pretrained=False)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelFileError(f"weights {weights} do not fit the card {card.name!r}: {exc}") from None
    model.eval()
    with torch.inference_mode():  # a probe: a model whose output is not finite would rank by noise
        probe = model(torch.zeros(1, 3, 64, 64).uniform_(-1, 1, generator=torch.Generator().manual_seed(0)))
    if not bool(torch.isfinite(probe).all()):
        raise ModelFileError(f"model {path} gives embeddings that are not numbers: its weights or card are damaged")
    return model


def model_fingerprint(path: Path) -> str:
    """A short hash of the weights and the card's input contract: catalogs are keyed by it.

    A retrained model, or the same weights fed differently (input size, resize, mean/std), never reuses another
    model's embeddings.
    """
    weights, _ = model_paths(path)
    card = load_card(path)
    digest = hashlib.sha256()
    contract = [card.backbone, card.dim, card.input_size, card.resize_size, list(card.mean), list(card.std)]
    digest.update(json.dumps(contract).encode())
    with open(weights, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:16]
