"""Labelled folders and how they are split, without torch: the wizard's GUI thread uses all of it.

Two protocols, because people fine-tune for two different reasons:

* *my classes* (`split_by_images`): "find more like this among my categories". A share of every class's images
  is held out; the model trains on the rest of every class and is judged on the held-out images.
* *new classes* (`split_by_class`): the metric-learning literature's protocol (../shared/datasets/README.md):
  the sorted class names' first half trains, the second half is judged, never seen in training.

Either way the held-out part is only ever shown to the person, never used to choose anything; the epoch that is
kept is chosen on a further part carved from the training data (`carve_validation`).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from trainer.images import Skipped

MIN_IMAGES_PER_CLASS = 2
PROTOCOLS = ("images", "classes", "none")
"""`trainer fit --split`: images = my classes, classes = new classes, none = train on everything."""


class DatasetError(ValueError):
    """The folder cannot be used for training or evaluation; the message says why and what to do."""


@dataclass
class LabelledFolder:
    root: Path
    classes: list[str]
    samples: list[tuple[Path, int]]  # (path, index into classes)
    skipped: list[Skipped] = field(default_factory=list)

    @property
    def labels(self) -> npt.NDArray[np.int64]:
        return np.array([label for _, label in self.samples], dtype=np.int64)

    def counts(self) -> dict[str, int]:
        c = Counter(label for _, label in self.samples)
        return {name: c.get(i, 0) for i, name in enumerate(self.classes)}

    def subset(self, class_names: Sequence[str]) -> LabelledFolder:
        """The same images restricted to some classes, relabelled 0..len(class_names)-1."""
        keep = {name: i for i, name in enumerate(class_names)}
        samples = [(p, keep[self.classes[y]]) for p, y in self.samples if self.classes[y] in keep]
        return LabelledFolder(self.root, list(class_names), samples, self.skipped)


def trainability_problems(folder: LabelledFolder, min_per_class: int = MIN_IMAGES_PER_CLASS) -> list[str]:
    """Every reason this folder cannot train, as sentences for a person (empty when it can)."""
    problems = []
    if not folder.samples:
        problems.append(f"{folder.root} has no readable images in class sub-folders (one sub-folder per class)")
        return problems
    if len(folder.classes) < 2:
        problems.append(
            f"{folder.root} has only one class ({folder.classes[0]!r}); metric learning needs at least two "
            "sub-folders, one per class"
        )
    small = [c for c, n in folder.counts().items() if n < min_per_class]
    if small:
        shown = ", ".join(repr(c) for c in small[:5]) + (" ..." if len(small) > 5 else "")
        problems.append(
            f"{len(small)} class(es) have fewer than {min_per_class} images and cannot form a positive pair: {shown}"
        )
    return problems


def require_trainable(folder: LabelledFolder, min_per_class: int = MIN_IMAGES_PER_CLASS) -> None:
    problems = trainability_problems(folder, min_per_class)
    if problems:
        raise DatasetError("; ".join(problems))


def split_by_class(folder: LabelledFolder, seed: int | None = None) -> tuple[LabelledFolder, LabelledFolder]:
    """First half of the sorted class names trains, second half tests; with a seed, a seeded shuffle instead."""
    names = sorted(folder.classes)
    if seed is not None:
        random.Random(seed).shuffle(names)
    if len(names) < 4:
        raise DatasetError(
            f"{folder.root} has {len(names)} classes; a split by class needs at least 4 (2 to train, 2 to test)"
        )
    half = len(names) // 2
    return folder.subset(sorted(names[:half])), folder.subset(sorted(names[half:]))


def split_by_images(folder: LabelledFolder, share: float = 0.2, seed: int = 0) -> tuple[LabelledFolder, LabelledFolder]:
    """(train, held out): `share` of every class's images held out, at least 2 (a held-out image needs a positive
    among the held-out ones) and never more than leaves 2 to train; a class of fewer than 4 images trains whole.

    >>> from pathlib import Path
    >>> f = LabelledFolder(Path("x"), ["a", "b"], [(Path(f"{c}{i}"), k) for k, c in enumerate("ab") for i in range(10)])
    >>> train, held = split_by_images(f)
    >>> [len(train.samples), len(held.samples)], sorted(set(train.samples) & set(held.samples))
    ([16, 4], [])
    """
    rng = random.Random(seed)
    train: list[tuple[Path, int]] = []
    held: list[tuple[Path, int]] = []
    for label in range(len(folder.classes)):
        paths = sorted(p for p, y in folder.samples if y == label)
        rng.shuffle(paths)
        n_held = min(max(2, round(share * len(paths))), len(paths) - 2) if len(paths) >= 4 else 0
        held += [(p, label) for p in sorted(paths[:n_held])]
        train += [(p, label) for p in sorted(paths[n_held:])]
    held_classes = sorted({y for _, y in held})
    kept = LabelledFolder(folder.root, list(folder.classes), train, folder.skipped)
    shown = LabelledFolder(folder.root, list(folder.classes), held, [])
    if len(held_classes) < 2:
        raise DatasetError(f"{folder.root}: holding out images needs at least two classes with 4 or more images each")
    return kept, shown


def split(
    folder: LabelledFolder, protocol: str, seed: int | None = None
) -> tuple[LabelledFolder, LabelledFolder | None]:
    """(train, held out) for `trainer fit --split` / the wizard's protocol choice; `none` holds nothing out."""
    if protocol == "images":
        return split_by_images(folder, seed=seed or 0)
    if protocol == "classes":
        return split_by_class(folder, seed)
    if protocol == "none":
        return folder, None
    raise DatasetError(f"unknown split {protocol!r}; use one of {', '.join(PROTOCOLS)}")


def carve_validation(
    train: LabelledFolder, protocol: str, seed: int = 0
) -> tuple[LabelledFolder, LabelledFolder | None]:
    """(what trains, what chooses the epoch to keep), both from the training part.

    For *new classes* with at least 4 training classes, a quarter of them (whole classes, at least 2) choose:
    that is what the held-out classes will ask of the model, and images of the training classes cannot tell
    (on 8 bird species they chose an epoch 1.7 points worse on the new species than the start). With fewer
    classes, no part can judge new classes: an empty part comes back, and trainer.fit then keeps the starting
    model. For *my classes*, 20 % of each class's images choose. None when the training part is too small to
    spare any (the last epoch is then kept).
    """
    if protocol == "classes":
        if len(train.classes) < 4:
            # Nothing in 2 or 3 training classes can say how the model does on new classes (their own images
            # chose epochs 5 points worse on the new ones): an empty part, and trainer.fit keeps the start.
            return train, LabelledFolder(train.root, [], [])
        names = sorted(train.classes)
        random.Random(seed).shuffle(names)
        n_val = max(2, len(names) // 4)
        return train.subset(sorted(names[n_val:])), train.subset(sorted(names[:n_val]))
    try:
        rest, chooser = split_by_images(train, share=0.2, seed=seed + 1)
    except DatasetError:
        return train, None
    if trainability_problems(rest):
        return train, None
    return rest, chooser
