"""The model card for people: Markdown beside the JSON card, with the recipe and the metrics tables."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trainer.model import ModelCard

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
    k = r.get("trainable_stages")
    if k is None:
        trained = "the whole backbone trained"
    else:
        cached = ", computed once per image" if r.get("cache_trunk") else ""
        trained = f"the last {k} backbone stages trained (the earlier ones frozen at their ImageNet weights{cached})"
    crops = "centre crops flipped at random" if r.get("cache_trunk") else "random resized crops with flips"
    crop = f"{r['crop_size']} px" if r.get("crop_size") else "the model's input size"
    nested = "with every nested prefix trained" if r.get("nested", True) else "full dimension only"
    milestones = " and ".join(f"{m:.0%}" for m in r.get("lr_milestones", ()))
    bn = "kept at ImageNet's" if r.get("freeze_batchnorm", True) else "re-estimated in training"
    width = f"{r['dim']}-d" if r.get("dim") else "the starting model's width"
    return (
        f"{r.get('method', 'normsoftmax')}, {width} {nested}; {trained}, at {crop} {crops}; "
        f"{r.get('epochs')} epochs (the first {r.get('warmup_epochs', 0)} training only the new layers), batches of "
        f"{r.get('classes_per_batch')} classes x {r.get('per_class')} images; SGD momentum {r.get('momentum', 0.9):g}, "
        f"weight decay {r.get('weight_decay', 1e-4):g}, lr {r.get('lr'):g} "
        f"(backbone x{r.get('backbone_lr_mult', 1):g}), "
        f"x{r.get('lr_gamma', 0.1):g} at {milestones} of the fine-tuning epochs; batch-norm statistics {bn}; "
        f"seed {r.get('seed', 0)}."
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
