"""The one embedding model definition, shared by the explorer and the trainer.

backbone -> global average pooling -> LayerNorm (no affine) -> Linear (no bias) -> D-dimensional embedding,
as in Zhai & Wu, "Classification is a Strong Baseline for Deep Metric Learning" (BMVC 2019). The LayerNorm
centres each vector, which is what makes binarization at zero keep the information; the embedding layer is
skipped when it would only map the backbone width onto itself untrained.

A model on disk is `<name>.safetensors` (weights; loading never unpickles) beside its card (`trainer.card`:
what the model is and how it is fed, without torch).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from trainer.atomic import atomic_write
from trainer.backbones import get_backbone
from trainer.card import ModelCard, ModelFileError, load_card, model_paths, save_card


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


def save_model(model: EmbeddingModel, path: Path, card: ModelCard | None = None) -> tuple[Path, Path]:
    """Save weights (safetensors), card (JSON) and its Markdown rendering for people, each atomically."""
    card = card or model.card
    weights, _card_path = model_paths(path)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write(weights, lambda p: save_file(state, str(p), metadata={"format": "pt", "name": card.name}))
    return weights, save_card(card, path)


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
