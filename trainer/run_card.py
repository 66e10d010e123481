"""What a finished run says about the model it kept: the message of the choice, and the card's recipe record.

The card travels with the exported model (the app's model page, `trainer eval`, the fine-tune wizard's result page
read it), so it records how the kept model was chosen in words a person can check.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from trainer.card import ModelCard
from trainer.config import FitConfig
from trainer.folders import LabelledFolder


@dataclass(frozen=True)
class KeptChoice:
    """How the exported model was chosen: the epoch kept (0: the start; None: the last, nothing chose) and by what."""

    epoch: int | None
    stretch: bool  # the small-folder recipe: epoch 1 is the stretched embedding layer (trainer.class_stretch)
    unjudged: bool  # a selection part was asked for, but too few classes could judge new classes
    folds: int | None  # chosen on this many folds of the training images
    selection: LabelledFolder | None  # chosen on this part set aside from the training images

    def message(self, epochs: int) -> str:
        """One line for the run's log and the wizard.

        >>> KeptChoice(0, False, False, 5, None).message(10)
        'no epoch beat the starting model on folds of the training images; the starting model is kept'
        >>> KeptChoice(1, True, False, 5, None).message(1)
        'kept the stretched embedding layer'
        """
        if self.epoch:
            return "kept the stretched embedding layer" if self.stretch else f"kept epoch {self.epoch} of {epochs}"
        if self.unjudged:
            return "too few training classes to judge training for new classes; the starting model is kept"
        if self.folds is not None:
            what = "stretch" if self.stretch else "epoch"
            return f"no {what} beat the starting model on folds of the training images; the starting model is kept"
        return "no epoch beat the starting model on the images set aside to choose; the starting model is kept"

    def chosen_on(self, train_images: int) -> str:
        """The card's "chosen_on": what judged the epochs.

        >>> KeptChoice(None, False, False, None, None).chosen_on(120)
        'none: the last epoch is kept'
        """
        if self.folds is not None:
            return (
                f"{self.folds} folds of the {train_images} training images, each judging a copy trained on the "
                "others (mean of Recall@1 and MAP@R, float and binary)"
            )
        if self.selection is not None:
            return (
                f"{len(self.selection.samples)} training images of {len(self.selection.classes)} classes set aside "
                "(mean of Recall@1 and MAP@R, float and binary)"
            )
        if self.unjudged:
            return "none could judge new classes (fewer than 4 training classes): the start is kept"
        return "none: the last epoch is kept"


def trained_card(
    card: ModelCard,
    name: str,
    config: FitConfig,
    train: LabelledFolder,
    kept: KeptChoice,
    base: str,
    run_facts: dict[str, Any],
) -> ModelCard:
    """The exported model's card: its name, what it trained on and the recipe, with `run_facts` (device,
    processes, steps, history...) and how the kept epoch was chosen. Machine-local settings are left out."""
    local = ("device", "num_workers", "cache_dir")
    recipe = {k: v for k, v in asdict(config).items() if k not in local}
    return ModelCard(
        **{
            **asdict(card),
            "name": name,
            "trained": True,
            "trained_on": [f"{train.root} ({len(train.classes)} classes, {len(train.samples)} images)"],
            "recipe": {
                **recipe,
                **run_facts,
                "kept_epoch": config.epochs if kept.epoch is None else kept.epoch,
                "chosen_on": kept.chosen_on(len(train.samples)),
                "base": base,
            },
        }
    )
