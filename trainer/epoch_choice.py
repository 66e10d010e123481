"""What chooses the epoch to keep, without torch: the trainer, `trainer fit`, the wizard and the estimate ask here.

Two ways, both from the training part only (the held-out part shown to the person never chooses):

* a part set aside (trainer.folders.carve_validation) judges every candidate epoch of the one run; the way for
  recipes that train the backbone, where a run is costly;
* folds: with the whole backbone frozen and a part of the training classes set aside (my classes), that part
  trains too, and `choice_folds` folds of every training image each judge a copy trained on the others
  (trainer.fold_choice says why).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from trainer.config import FitConfig
from trainer.folders import LabelledFolder
from trainer.metrics import query_gallery_metrics

GALLERY_IMAGES = 150
"""Training images a my-classes selection part is searched against (trainer.epoch_judge; the estimate counts them)."""

MIN_PER_FOLD_CLASS = 2
"""Every class keeps this many images on the training side of every fold (a class-balanced batch needs them)."""


@dataclass(frozen=True)
class RunParts:
    """What a run trains on and what chooses its epoch: a part set aside (`selection`), or `folds` of `train`."""

    train: LabelledFolder
    selection: LabelledFolder | None
    folds: int = 0
    stretch: bool = False  # the one "epoch" is the stretch (trainer.class_stretch): kept or not, nothing to choose

    def text(self) -> str:
        """How the epoch is chosen, for a log line or the wizard.

        >>> from pathlib import Path
        >>> samples = [(Path(f"{c}{i}"), k) for k, c in enumerate("ab") for i in range(5)]
        >>> f = LabelledFolder(Path("x"), ["a", "b"], samples)
        >>> RunParts(f, None, 5).text(), RunParts(f, None).text()
        ('the epoch chosen on 5 folds of the 10 training images', 'the last epoch kept')
        >>> RunParts(f, None, 5, stretch=True).text()
        'the stretch kept if it beats the start on 5 folds of the 10 training images'
        """
        if self.folds:
            what = "the stretch kept if it beats the start" if self.stretch else "the epoch chosen"
            return f"{what} on {self.folds} folds of the {len(self.train.samples):,} training images"
        if self.selection is None:
            return "the last epoch kept"
        if not self.selection.samples:
            return "too few classes to judge training for new classes (the starting model is kept)"
        judge = "judge the stretch" if self.stretch else "choose the epoch"
        return f"{len(self.selection.samples):,} set aside to {judge}"


def run_parts(fitted: LabelledFolder, chooser: LabelledFolder | None, config: FitConfig) -> RunParts:
    """The parts a run really uses, from what trainer.folders.carve_validation gave: by folds when the config asks
    for them (`choice_folds`), the backbone is frozen and cached, the part set aside holds the training classes,
    and every class has images enough for the folds; else as given."""
    by_folds = (
        config.choice_folds > 0 and config.trainable_stages == 0 and config.cache_trunk
        and chooser is not None and bool(chooser.samples) and chooser.classes == fitted.classes
    )  # fmt: skip
    stretch = bool(config.stretch)
    if not by_folds:
        return RunParts(fitted, chooser, stretch=stretch)
    assert chooser is not None
    merged = LabelledFolder(fitted.root, fitted.classes, sorted(fitted.samples + chooser.samples), fitted.skipped)
    folds = usable_folds(merged.labels, config.choice_folds)
    return RunParts(merged, None, folds, stretch) if folds else RunParts(fitted, chooser, stretch=stretch)


def fold_of_each_image(labels: npt.NDArray[np.int64], folds: int, seed: int) -> npt.NDArray[np.int64]:
    """Which fold judges each image: every class's images dealt round-robin in a shuffled order, so each fold
    holds about 1/folds of every class.

    >>> f = fold_of_each_image(np.array([0] * 10 + [1] * 5), 5, seed=0)
    >>> [np.bincount(f[:10], minlength=5).tolist(), np.bincount(f[10:], minlength=5).tolist()]
    [[2, 2, 2, 2, 2], [1, 1, 1, 1, 1]]
    """
    rng = np.random.default_rng(seed)
    fold = np.empty(len(labels), dtype=np.int64)
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        fold[members] = np.arange(len(members)) % folds
    return fold


def usable_folds(labels: npt.NDArray[np.int64], folds: int) -> int:
    """`folds`, or 0 when the training part cannot be cut into them: fewer than two classes, or a class that would
    keep fewer than MIN_PER_FOLD_CLASS images on the training side of a fold.

    >>> usable_folds(np.array([0] * 20 + [1] * 3), 5), usable_folds(np.array([0] * 20 + [1] * 2), 5)
    (5, 0)
    """
    counts = np.bincount(labels)
    counts = counts[counts > 0]
    smallest = int(counts.min()) if len(counts) else 0
    # A class of n images dealt into k folds keeps at least n - ceil(n / k) on the training side of each.
    if len(counts) < 2 or folds < 2 or smallest - -(-smallest // folds) < MIN_PER_FOLD_CLASS:
        return 0
    return folds


Indices = npt.NDArray[np.int64]


def fold_scores(emb: npt.NDArray[np.float32], labels: Indices, judge: Indices, rest: Indices) -> dict[str, float]:
    """A fold's images (`judge`) searched among the other folds' (`rest`), as a person searches for more of their
    labelled categories: Recall@1 and MAP@R, float and binary, keyed as trainer.fit's selection scores.

    >>> emb = np.array([[1.0, 0.1], [0.9, 0.2], [-1.0, 0.1], [-0.9, -0.2]], np.float32)
    >>> fold_scores(emb, np.array([0, 0, 1, 1]), np.array([0, 2]), np.array([1, 3]))["chosen on R@1"]
    1.0
    """
    found = query_gallery_metrics(emb[judge], labels[judge], emb[rest], labels[rest])
    return {f"chosen on {key}": value for key, value in found.items()}


def replaces_best(scores: dict[str, float], start: dict[str, float], best_score: float) -> bool:
    """Whether an epoch with these selection scores replaces the best so far: a higher score, and float and binary
    Recall@1 each at least the starting model's.

    >>> start = {"chosen on R@1": 0.8, "chosen on binary R@1": 0.8}
    >>> replaces_best({"chosen on R@1": 0.9, "chosen on binary R@1": 0.8}, start, 0.8)
    True
    >>> replaces_best({"chosen on R@1": 1.0, "chosen on binary R@1": 0.75}, start, 0.8)  # binary worse than the start
    False
    """
    no_worse = all(scores[k] >= start.get(k, 0.0) for k in ("chosen on R@1", "chosen on binary R@1"))
    return no_worse and selection_score(scores) > best_score + 1e-9


def selection_score(scores: dict[str, float]) -> float:
    """What chooses the epoch to keep: Recall@1 and MAP@R, float and binary, alike (the window searches with both).

    The selection part is small (a few dozen images), where Recall@1 moves in steps of several points from one
    image's neighbour; MAP@R looks at every same-class image of every query and moves smoothly, so together they
    choose a model that is better rather than one that was lucky.

    >>> selection_score({"chosen on R@1": 0.8, "chosen on binary R@1": 0.7, "chosen on MAP@R": 0.5,
    ...                  "chosen on binary MAP@R": 0.4})
    0.6
    """
    keys = ("chosen on R@1", "chosen on binary R@1", "chosen on MAP@R", "chosen on binary MAP@R")
    present = [scores[k] for k in keys if k in scores]
    return sum(present) / len(present)
