"""The Markdown model card and the doctest examples of the small pure modules."""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

from trainer.card import ModelCard, card_markdown, metrics_table

TRAINER = Path(__file__).resolve().parents[2] / "trainer"
WITH_EXAMPLES = sorted(p.stem for p in TRAINER.glob("*.py") if ">>> " in p.read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", WITH_EXAMPLES)
def test_docstring_examples_hold(name: str) -> None:
    """Every module of `trainer` with worked examples in its docstrings is collected here, by itself."""
    failures, tried = doctest.testmod(importlib.import_module(f"trainer.{name}"))
    assert tried > 0 and failures == 0


def test_metrics_table_orders_dimensions_numerically_and_sizes_bytes() -> None:
    table = metrics_table({"float": {1024: {"R@1": 0.9}, 128: {"R@1": 0.8}}, "binary": {1024: {"R@1": 0.85}}})
    rows = table.splitlines()[2:]
    assert rows == [
        "| float | 128 | 512 | 80.0 |",
        "| float | 1024 | 4096 | 90.0 |",
        "| binary | 1024 | 128 | 85.0 |",
    ]


def test_card_markdown_shows_recipe_history_and_every_metrics_block() -> None:
    card = ModelCard.for_backbone("demo", "efficientnet_lite0", 256, trained_on=["birds (3 classes)"])
    card.trained = True
    card.recipe = {"method": "normsoftmax", "history": [{"epoch": 0, "R@1": 0.5}, {"epoch": 1, "R@1": 0.75}]}
    card.metrics = {
        "protocol": "held-out classes",
        "held_out": {"birds": {"float": {"256": {"R@1": 0.75}}, "binary": {"256": {"R@1": 0.7}}}},
    }
    text = card_markdown(card)
    assert text.startswith("# demo\n")
    assert "- birds (3 classes)" in text and '"method": "normsoftmax"' in text
    assert "| 1 | 0.7500 |" in text  # the history table
    assert "### held_out / birds" in text and "| binary | 256 | 32 | 70.0 |" in text
    assert "protocol: held-out classes" in text and "status: trained for retrieval" in text
