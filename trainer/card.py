"""The model card and the model file layout, without torch: what a model is, checked, named and saved.

A model on disk is `<name>.safetensors` (weights; loading never unpickles), `<name>.json` (this card: architecture,
input contract, nested dimensions, training data and measured metrics) and `<name>.md` (the card for people, with
the recipe and the metrics tables). The GUI thread reads, checks and shows cards and must not import torch;
`trainer.model` builds and loads the network from them, and every model is saved through `save_card` there.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from trainer.atomic import atomic_write
from trainer.backbone_specs import BACKBONE_INFO

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
        spec = BACKBONE_INFO.get(backbone)
        if spec is None:
            raise ModelFileError(f"unknown backbone {backbone!r}; known: {', '.join(sorted(BACKBONE_INFO))}")
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
    if card.backbone not in BACKBONE_INFO:
        raise ModelFileError(
            f"unknown backbone {card.backbone!r} in the model card; known: {', '.join(sorted(BACKBONE_INFO))}"
        )
    ints = {"feature_dim": card.feature_dim, "dim": card.dim, "input_size": card.input_size,
            "resize_size": card.resize_size}  # fmt: skip
    for name, value in ints.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ModelFileError(f"the card's {name} must be a positive whole number, got {value!r}")
    if card.feature_dim != BACKBONE_INFO[card.backbone].feature_dim:
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


def model_paths(path: Path) -> tuple[Path, Path]:
    """Accepts `x`, `x.safetensors` or `x.json`; returns (weights, card)."""
    path = Path(path)
    stem = path.with_suffix("") if path.suffix in (".safetensors", ".json") else path
    return stem.with_name(stem.name + ".safetensors"), stem.with_name(stem.name + ".json")


def load_card(path: Path) -> ModelCard:
    _weights, card_path = model_paths(path)
    try:
        return ModelCard.from_json(card_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelFileError(f"model card not found: {card_path}") from None
    except (json.JSONDecodeError, TypeError, ValueError) as exc:
        raise ModelFileError(f"model card {card_path} is not valid: {exc}") from None


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


Metrics = Mapping[str, Mapping[int, Mapping[str, float]]]


def metrics_table(metrics: Metrics, title: str = "") -> str:
    """A Markdown table: one row per (representation, dimension), one column per metric, in percent.

    >>> print(metrics_table({"float": {64: {"R@1": 0.5}}, "binary": {64: {"R@1": 0.25}}}))
    | repr | dim | bytes | R@1 |
    |---|---:|---:|---:|
    | float | 64 | 256 | 50.0 |
    | binary | 64 | 8 | 25.0 |
    """
    names: list[str] = []
    for per_dim in metrics.values():
        for values in per_dim.values():
            names.extend(n for n in values if n not in names)
    lines = [f"### {title}", ""] if title else []
    lines.append("| repr | dim | bytes | " + " | ".join(names) + " |")
    lines.append("|---|---:|---:|" + "---:|" * len(names))
    for rep, per_dim in metrics.items():
        for d, values in sorted(per_dim.items(), key=lambda kv: int(kv[0])):
            size = int(d) // 8 if rep == "binary" else 4 * int(d)
            cells = " | ".join(f"{100 * values[n]:.1f}" if n in values else "" for n in names)
            lines.append(f"| {rep} | {d} | {size} | {cells} |")
    return "\n".join(lines)


def recipe_text(recipe: Mapping[str, Any]) -> str:
    """A training recipe (FitConfig fields, as a card stores them) in one paragraph for people.

    >>> import textwrap
    >>> print(textwrap.fill(recipe_text({"method": "normsoftmax", "dim": 512, "epochs": 20, "warmup_epochs": 1,
    ...     "classes_per_batch": 25, "per_class": 3, "lr": 0.01, "lr_milestones": [0.6, 0.85],
    ...     "trainable_stages": 6, "cache_trunk": False, "crop_size": 160}), 100))
    normsoftmax, 512-d with every nested prefix trained; the last 6 backbone stages trained (the earlier
    ones frozen at their ImageNet weights), at 160 px random resized crops with flips; 20 epochs (the
    first 1 training only the new layers), batches of 25 classes x 3 images; SGD momentum 0.9, weight
    decay 0.0001, lr 0.01 (backbone x1), x0.1 at 60% and 85% of the fine-tuning epochs; batch-norm
    statistics kept at ImageNet's; seed 0.
    """
    r = recipe
    if r.get("stretch"):
        folds = r.get("choice_folds")
        return (
            f"{r.get('method', 'normsoftmax')}, the starting model's embedding layer stretched {r['stretch']:g}x along "
            "the directions that separate the classes' proxies (fitted at temperature 0.05 to its embeddings of the "
            "training images' centre crops), the backbone kept as it is"
            + (f"; kept only where it beats the start on {folds} folds of the training images" if folds else "")
            + f"; seed {r.get('seed', 0)}."
        )
    k = r.get("trainable_stages")
    if k is None:
        trained = "the whole backbone trained"
    elif k == 0:
        trained = "the backbone kept as it is (only the embedding layer and the proxies trained, on its features"
        trained += ", computed once per image)" if r.get("cache_trunk") else ")"
    else:
        cached = ", computed once per image" if r.get("cache_trunk") else ""
        trained = f"the last {k} backbone stages trained (the earlier ones frozen at their ImageNet weights{cached})"
    crops = "centre crops flipped at random" if r.get("cache_trunk") else "random resized crops with flips"
    crop = f"{r['crop_size']} px" if r.get("crop_size") else "the model's input size"
    nested = "with every nested prefix trained" if r.get("nested", True) else "full dimension only"
    milestones = " and ".join(f"{m:.0%}" for m in r.get("lr_milestones", ()))
    bn = "kept at ImageNet's" if r.get("freeze_batchnorm", True) else "re-estimated in training"
    width = f"{r['dim']}-d" if r.get("dim") else "the starting model's width"
    rates = f"proxies x{r.get('proxy_lr_mult', 1):g}, " if r.get("proxy_lr_mult", 1) != 1 else ""
    rates += f"backbone x{r.get('backbone_lr_mult', 1):g}" if k != 0 else "backbone frozen"
    chosen = (
        f"the epoch kept chosen on {r['choice_folds']} folds of the training images; "
        if (k == 0 and r.get("choice_folds"))
        else ""
    )
    warm = r.get("warmup_epochs", 0)
    warmup = f"the first {warm} training only the new layers" if warm else "no warm-up"
    return (
        f"{r.get('method', 'normsoftmax')}, {width} {nested}; {trained}, at {crop} {crops}; "
        f"{r.get('epochs')} epochs ({warmup}), batches of "
        f"{r.get('classes_per_batch')} classes x {r.get('per_class')} images; SGD momentum {r.get('momentum', 0.9):g}, "
        f"weight decay {r.get('weight_decay', 1e-4):g}, lr {r.get('lr'):g} "
        f"({rates}), "
        f"x{r.get('lr_gamma', 0.1):g} at {milestones} of the fine-tuning epochs; batch-norm statistics {bn}; "
        f"{chosen}seed {r.get('seed', 0)}."
    )


def _as_metrics(value: Any) -> Metrics | None:
    """Card metrics are stored as JSON (string dimension keys); recognise a {repr: {dim: {metric: v}}} block."""
    if isinstance(value, Mapping) and value and set(value) <= {"float", "binary"}:
        return {rep: {int(d): v for d, v in per.items()} for rep, per in value.items()}
    return None


def _metric_sections(metrics: Mapping[str, Any], path: str = "") -> list[str]:
    out: list[str] = []
    for key, value in metrics.items():
        label = f"{path} / {key}" if path else key
        table = _as_metrics(value)
        if table is not None:
            out += ["", metrics_table(table, label)]
        elif isinstance(value, Mapping):
            out += _metric_sections(value, label)
        else:
            out += ["", f"{label}: {value}"]
    return out


def card_markdown(card: ModelCard) -> str:
    status = "trained for retrieval" if card.trained else "UNTRAINED for retrieval"
    lines = [
        f"# {card.name}",
        "",
        card.description or f"{card.backbone} embedding model ({status}).",
        "",
        f"- backbone: {card.backbone}, {card.dim}-d embedding"
        f"{' (embedding layer without bias)' if card.has_embedding_layer else ' (no embedding layer)'}",
        f"- input: resize {card.resize_size}, centre crop {card.input_size}, "
        f"mean {list(card.mean)}, std {list(card.std)}",
        f"- nested dimensions: {', '.join(map(str, card.nested_dims))}; binary code: sign of each dimension",
        f"- status: {status}",
        "",
        "## Training data",
        "",
    ]
    lines += [f"- {t}" for t in card.trained_on] or ["- none"]
    recipe = {k: v for k, v in card.recipe.items() if k != "history"}
    lines += ["", "## Recipe", ""]
    if "epochs" in recipe:
        lines += [recipe_text(recipe), ""]
    lines += ["```json", json.dumps(recipe, indent=2, default=str), "```"]
    history = card.recipe.get("history")
    if history:
        keys = [k for k in history[0] if k != "epoch"]
        lines += ["", "## Training history", "", "| epoch | " + " | ".join(keys) + " |"]
        lines.append("|---:|" + "---:|" * len(keys))
        for row in history:
            lines.append(f"| {row['epoch']} | " + " | ".join(f"{row.get(k, float('nan')):.4f}" for k in keys) + " |")
    if card.metrics:
        lines += ["", "## Metrics (in percent)"]
        lines += _metric_sections(card.metrics)
    return "\n".join(lines) + "\n"


def save_card(card: ModelCard, path: Path) -> Path:
    """Write the card (JSON) and its Markdown rendering for people beside the weights, each atomically; returns
    the JSON's path."""
    _weights, card_path = model_paths(path)
    atomic_write(card_path, lambda p: p.write_text(card.to_json() + "\n", encoding="utf-8"))
    markdown = card_markdown(card)
    atomic_write(card_path.with_suffix(".md"), lambda p: p.write_text(markdown, encoding="utf-8"))
    return card_path
