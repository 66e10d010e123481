"""The registry of training methods offered by `trainer fit --method` and the fine-tune wizard.

Every method is an objective module: forward(embeddings (B, D), labels (B,)) -> scalar loss, owning whatever
it learns besides the embedding model (proxies, β, a message-passing network), so the trainer optimises
`model.parameters()` together with `objective.parameters()` and exports only the model. Methods differ only
in that module, which keeps comparisons between them honest: same backbone, same sampler, same schedule.

Nested dimensions: with `nested_dims`, one independent objective is built per prefix width d and applied to
embeddings[:, :d] (each with its own proxies where it has any), and the losses are summed, so that every
prefix of the embedding is itself a trained embedding (as in Kusupati et al., "Matryoshka Representation
Learning", NeurIPS 2022) and can be served or binarised on its own.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from torch import Tensor, nn

from trainer.das import DASObjective, DenselyAnchoredSampling
from trainer.losses.arcface import ArcFaceLoss
from trainer.losses.contrastive import ContrastiveLoss
from trainer.losses.margin import MarginLoss
from trainer.losses.multisimilarity import MultiSimilarityLoss
from trainer.losses.normsoftmax import NormSoftmaxLoss
from trainer.losses.triplet import TripletLoss
from trainer.mpn import IntraBatchObjective

HParam = float | int | str


@dataclass(frozen=True)
class MethodSpec:
    """A training method as the CLI and the wizard present it."""

    name: str
    summary: str
    build: Callable[..., nn.Module]
    defaults: Mapping[str, HParam]
    needs_num_classes: bool


class NestedObjective(nn.Module):
    """Sum over prefix widths d of an independent objective on embeddings[:, :d]."""

    def __init__(self, objectives: Mapping[int, nn.Module]) -> None:
        super().__init__()
        if not objectives:
            raise ValueError("NestedObjective needs at least one prefix dimension")
        if any(d < 1 for d in objectives):
            raise ValueError(f"prefix dimensions must be positive, got {sorted(objectives)}")
        self.dims: tuple[int, ...] = tuple(sorted(objectives))
        self.objectives = nn.ModuleDict({str(d): objectives[d] for d in self.dims})

    def __getitem__(self, dim: int) -> nn.Module:
        """The objective trained on the first `dim` coordinates."""
        return self.objectives[str(dim)]

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        if embeddings.ndim != 2 or embeddings.shape[1] < self.dims[-1]:
            raise ValueError(f"expected embeddings of shape (B, >= {self.dims[-1]}), got {tuple(embeddings.shape)}")
        losses = [self.objectives[str(d)](embeddings[:, :d], labels) for d in self.dims]
        total: Tensor = sum(losses[1:], losses[0])
        return total

    def extra_repr(self) -> str:
        return f"dims={list(self.dims)}"


# -- builders ---------------------------------------------------------------------------------------------

_DAS_DEFAULTS: Mapping[str, HParam] = {
    "topk_channels": 4,
    "memory_per_class": 10,
    "produced_per_anchor": 3,
    "scale_low": 0.5,
    "scale_high": 2.0,
    "shift_scale": 0.01,
    "das_seed": 0,
}


def _das(dim: int, hp: Mapping[str, HParam]) -> DenselyAnchoredSampling:
    return DenselyAnchoredSampling(
        dim,
        topk_channels=int(hp["topk_channels"]),
        memory_per_class=int(hp["memory_per_class"]),
        produced_per_anchor=int(hp["produced_per_anchor"]),
        scale_range=(float(hp["scale_low"]), float(hp["scale_high"])),
        shift_scale=float(hp["shift_scale"]),
        seed=int(hp["das_seed"]),
    )


def _normsoftmax(dim: int, num_classes: int, *, temperature: float) -> nn.Module:
    return NormSoftmaxLoss(num_classes, dim, temperature=temperature)


def _arcface(dim: int, num_classes: int, *, margin: float, scale: float) -> nn.Module:
    return ArcFaceLoss(num_classes, dim, margin=margin, scale=scale)


def _triplet(dim: int, num_classes: int, *, margin: float, mining: str) -> nn.Module:
    return TripletLoss(margin=margin, mining=mining)


def _triplet_batchhard(dim: int, num_classes: int, *, margin: float) -> nn.Module:
    return TripletLoss(margin=margin, mining="batch_hard")


def _contrastive(dim: int, num_classes: int, *, pos_margin: float, neg_margin: float) -> nn.Module:
    return ContrastiveLoss(pos_margin=pos_margin, neg_margin=neg_margin)


def _margin(
    dim: int,
    num_classes: int,
    *,
    beta: float,
    margin: float,
    learn_beta: int,
    per_class_beta: int,
    cutoff: float,
    nonzero_loss_cutoff: float,
    seed: int,
) -> nn.Module:
    return MarginLoss(
        beta=beta,
        margin=margin,
        learn_beta=bool(learn_beta),
        num_classes=num_classes if per_class_beta else None,
        cutoff=cutoff,
        nonzero_loss_cutoff=nonzero_loss_cutoff,
        seed=seed,
    )


def _multisimilarity(
    dim: int, num_classes: int, *, alpha: float, beta: float, base: float, epsilon: float
) -> nn.Module:
    return MultiSimilarityLoss(alpha=alpha, beta=beta, base=base, epsilon=epsilon)


def _multisimilarity_das(dim: int, num_classes: int, **hp: HParam) -> nn.Module:
    loss = MultiSimilarityLoss(
        alpha=float(hp["alpha"]), beta=float(hp["beta"]), base=float(hp["base"]), epsilon=float(hp["epsilon"])
    )
    return DASObjective(loss, _das(dim, hp))


def _triplet_das(dim: int, num_classes: int, **hp: HParam) -> nn.Module:
    return DASObjective(TripletLoss(margin=float(hp["margin"]), mining="semihard"), _das(dim, hp))


def _intra_batch(
    dim: int, num_classes: int, *, num_heads: int, num_layers: int, ff_mult: int, dropout: float
) -> nn.Module:
    return IntraBatchObjective(
        dim, num_classes, num_heads=num_heads, num_layers=num_layers, ff_mult=ff_mult, dropout=dropout
    )


_MS_DEFAULTS: Mapping[str, HParam] = {"alpha": 2.0, "beta": 50.0, "base": 0.5, "epsilon": 0.1}

_SPECS = (
    MethodSpec(
        "normsoftmax",
        "Default: softmax over cosine similarity to one learned proxy per class; stable, fast, strong.",
        _normsoftmax,
        {"temperature": 0.05},
        needs_num_classes=True,
    ),
    MethodSpec(
        "arcface",
        "Proxy classification with an additive angular margin; tighter classes, wants many photos per class.",
        _arcface,
        {"margin": 0.5, "scale": 64.0},
        needs_num_classes=True,
    ),
    MethodSpec(
        "triplet",
        "Triplet loss with FaceNet semi-hard mining; the classic pair-based baseline.",
        _triplet,
        {"margin": 0.2, "mining": "semihard"},
        needs_num_classes=False,
    ),
    MethodSpec(
        "triplet-batchhard",
        "Triplet loss on each anchor's hardest positive and negative; strong on clean labels, hurt by noise.",
        _triplet_batchhard,
        {"margin": 0.2},
        needs_num_classes=False,
    ),
    MethodSpec(
        "contrastive",
        "Pulls same-class pairs together, pushes others beyond a margin; the simplest pair-based baseline.",
        _contrastive,
        {"pos_margin": 0.0, "neg_margin": 0.5},
        needs_num_classes=False,
    ),
    MethodSpec(
        "margin",
        "Margin loss with a learned boundary and distance-weighted negatives; a robust pair-based method.",
        _margin,
        {
            "beta": 1.2,
            "margin": 0.2,
            "learn_beta": 1,
            "per_class_beta": 0,
            "cutoff": 0.5,
            "nonzero_loss_cutoff": 1.4,
            "seed": 0,
        },
        needs_num_classes=False,
    ),
    MethodSpec(
        "multisimilarity",
        "Multi-similarity loss with its pair mining; usually the strongest of the pair-based methods.",
        _multisimilarity,
        _MS_DEFAULTS,
        needs_num_classes=False,
    ),
    MethodSpec(
        "multisimilarity-das",
        "Multi-similarity loss on batches densified with DAS-produced embeddings; helps small batches.",
        _multisimilarity_das,
        {**_MS_DEFAULTS, **_DAS_DEFAULTS},
        needs_num_classes=False,
    ),
    MethodSpec(
        "triplet-das",
        "Semi-hard triplet loss on batches densified with DAS-produced embeddings.",
        _triplet_das,
        {"margin": 0.2, **_DAS_DEFAULTS},
        needs_num_classes=False,
    ),
    MethodSpec(
        "intra-batch",
        "Classification after message passing across the batch; the extra network is used in training only.",
        _intra_batch,
        {"num_heads": 2, "num_layers": 1, "ff_mult": 2, "dropout": 0.0},
        needs_num_classes=True,
    ),
)

METHODS: Mapping[str, MethodSpec] = MappingProxyType({spec.name: spec for spec in _SPECS})


def _coerce(method: str, name: str, value: object, default: HParam) -> HParam:
    """`value` as the type of `default`, accepting the strings a command line produces."""
    kind = type(default)
    try:
        if kind is str:
            if not isinstance(value, str):
                raise TypeError
            return value
        if isinstance(value, bool):
            value = int(value)
        if kind is int:
            number = float(value) if isinstance(value, str) else value
            if not isinstance(number, int | float) or not float(number).is_integer():
                raise TypeError
            return int(number)
        number = float(value)  # type: ignore[arg-type]
        if not math.isfinite(number):
            raise TypeError
        return number
    except (TypeError, ValueError):
        raise ValueError(
            f"hyperparameter {name!r} of method {method!r} expects {kind.__name__} (default {default!r}), got {value!r}"
        ) from None


def resolve_hparams(name: str, **hparams: object) -> dict[str, HParam]:
    """The method's defaults overridden by `hparams`, type-checked; unknown names raise ValueError."""
    spec = METHODS.get(name)
    if spec is None:
        raise ValueError(f"unknown method {name!r}; valid methods: {', '.join(METHODS)}")
    unknown = sorted(set(hparams) - set(spec.defaults))
    if unknown:
        raise ValueError(
            f"unknown hyperparameter(s) {', '.join(unknown)} for method {name!r}; "
            f"valid: {', '.join(spec.defaults) or '(none)'}"
        )
    resolved = dict(spec.defaults)
    for key, value in hparams.items():
        resolved[key] = _coerce(name, key, value, spec.defaults[key])
    return resolved


def build_objective(
    name: str, dim: int, num_classes: int, nested_dims: Sequence[int] | None = None, **hparams: object
) -> nn.Module:
    """The objective of method `name` for `dim`-dimensional embeddings and `num_classes` training classes.

    With more than one (or a partial) nested dimension, a `NestedObjective` with one independent objective per
    prefix width; `nested_dims == [dim]` is the plain objective.
    """
    resolved = resolve_hparams(name, **hparams)
    spec = METHODS[name]
    if dim < 1:
        raise ValueError(f"dim must be at least 1, got {dim}")
    if spec.needs_num_classes and num_classes < 1:
        raise ValueError(f"method {name!r} needs the number of training classes, got {num_classes}")
    if nested_dims is None:
        return spec.build(dim, num_classes, **resolved)
    dims = sorted(set(nested_dims))
    if not dims or dims[0] < 1 or dims[-1] > dim:
        raise ValueError(f"nested dimensions must lie in [1, {dim}], got {list(nested_dims)}")
    if dims == [dim]:
        return spec.build(dim, num_classes, **resolved)
    return NestedObjective({d: spec.build(d, num_classes, **resolved) for d in dims})
