"""Class-balanced batch sampling: every batch holds C classes with S images each.

The NormSoftmax paper (Zhai & Wu, BMVC 2019) trains with batches of 75 built from C = 75 / S classes and
finds that the number of samples per class S matters: more images of the same class in a batch give the
normalisation layer and the softmax a better view of each class's spread. A plain shuffled loader cannot
control S, so this sampler chooses the classes first and the images second.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
import numpy.typing as npt
from torch.utils.data import Sampler

# Tags that keep the random streams for class order and for image choice independent of each other.
_CLASS_STREAM = 0
_IMAGE_STREAM = 1


class ClassBalancedSampler(Sampler[list[int]]):
    """Yield batches (lists of dataset indices) of `classes_per_batch` classes x `samples_per_class` images.

    Use it as `DataLoader(dataset, batch_sampler=sampler)` and call `set_epoch(epoch)` before each epoch.

    Classes are drawn *without* replacement: a pass is a fresh shuffle of all classes cut into groups of C, so
    every class is used once per pass and rare classes are not starved. When the class count is not a
    multiple of C, the last group of a pass is completed with other classes of the same pass (never
    duplicating a class inside one batch), so those few classes appear twice in that pass.

    Images are drawn without replacement inside the chosen class. A class with fewer than S images first
    contributes all of them, then repeats: whole shuffled copies while they fit, and the remainder without
    replacement, so each image appears floor(S / n) or ceil(S / n) times. Repeats are the only way to keep the
    batch shape fixed (the loss and batch-norm see constant C x S batches); images from other classes would
    break the promise that a slot of class c holds class c, and dropping the class would bias training
    toward large classes.

    An epoch has `batches_per_epoch` batches, by default `len(labels) // (C * S)` (at least one) so that an
    epoch costs about one pass over the images. If that is at least the ceil(num_classes / C) batches of a
    class pass, every epoch starts a fresh pass and sees every class. If it is smaller (many small classes,
    large S), consecutive epochs share one class pass, continuing where the previous epoch stopped, so every
    class is still seen within each ceil(pass / batches_per_epoch) epochs instead of some never being drawn.

    Everything depends only on (`seed`, epoch): the order is reproducible and resumable without state.
    """

    def __init__(
        self,
        labels: Sequence[int] | npt.ArrayLike,
        classes_per_batch: int,
        samples_per_class: int,
        batches_per_epoch: int | None = None,
        seed: int = 0,
    ) -> None:
        label_array = np.asarray(labels)
        if label_array.ndim != 1 or label_array.size == 0:
            raise ValueError("labels must be a non-empty one-dimensional sequence of class ids")
        if not np.issubdtype(label_array.dtype, np.integer):
            raise ValueError(f"labels must be integers, got dtype {label_array.dtype}")
        classes, inverse = np.unique(label_array, return_inverse=True)
        if classes_per_batch < 1:
            raise ValueError(f"classes_per_batch must be at least 1, got {classes_per_batch}")
        if classes_per_batch > len(classes):
            raise ValueError(
                f"classes_per_batch={classes_per_batch} is larger than the number of classes"
                f" ({len(classes)}): a batch cannot hold that many distinct classes"
            )
        if samples_per_class < 1:
            raise ValueError(f"samples_per_class must be at least 1, got {samples_per_class}")
        if batches_per_epoch is not None and batches_per_epoch < 1:
            raise ValueError(f"batches_per_epoch must be at least 1 (or None), got {batches_per_epoch}")
        if seed < 0:
            raise ValueError(f"seed must be non-negative, got {seed}")

        self.classes_per_batch = classes_per_batch
        self.samples_per_class = samples_per_class
        self.seed = seed
        self.epoch = 0
        self.num_classes = len(classes)
        # Dataset indices of each class, in dataset order (the shuffling happens per batch).
        order = np.argsort(inverse, kind="stable")
        bounds = np.cumsum(np.bincount(inverse, minlength=self.num_classes))[:-1]
        self._members: list[npt.NDArray[np.int64]] = [m.astype(np.int64) for m in np.split(order, bounds)]
        batch_size = classes_per_batch * samples_per_class
        self.batches_per_epoch = (
            batches_per_epoch if batches_per_epoch is not None else max(1, len(label_array) // batch_size)
        )
        self._batches_per_pass = math.ceil(self.num_classes / classes_per_batch)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose batches the next iteration yields (a new shuffle per epoch)."""
        if epoch < 0:
            raise ValueError(f"epoch must be non-negative, got {epoch}")
        self.epoch = epoch

    def __len__(self) -> int:
        return self.batches_per_epoch

    def __iter__(self) -> Iterator[list[int]]:
        image_rng = np.random.default_rng([self.seed, _IMAGE_STREAM, self.epoch])
        for class_group in self._class_groups(self.epoch):
            batch: list[int] = []
            for c in class_group:
                batch.extend(self._draw_images(self._members[c], image_rng))
            yield batch

    def _class_groups(self, epoch: int) -> Iterator[npt.NDArray[np.int64]]:
        """The class indices of each batch of `epoch`.

        Epochs are grouped into cycles of `epochs_per_cycle` epochs that read one stream of class passes;
        with enough batches per epoch a cycle is a single epoch and each epoch starts its own passes.
        """
        epochs_per_cycle = max(1, math.ceil(self._batches_per_pass / self.batches_per_epoch))
        cycle, within = divmod(epoch, epochs_per_cycle)
        first = within * self.batches_per_epoch
        current_pass = -1
        groups: list[npt.NDArray[np.int64]] = []
        for b in range(first, first + self.batches_per_epoch):
            pass_index, group_index = divmod(b, self._batches_per_pass)
            if pass_index != current_pass:
                groups = self._class_pass(cycle, pass_index)
                current_pass = pass_index
            yield groups[group_index]

    def _class_pass(self, cycle: int, pass_index: int) -> list[npt.NDArray[np.int64]]:
        """One shuffle of all classes cut into groups of C, the last group completed without duplicates."""
        rng = np.random.default_rng([self.seed, _CLASS_STREAM, cycle, pass_index])
        c = self.classes_per_batch
        perm = rng.permutation(self.num_classes).astype(np.int64)
        groups = [perm[i : i + c] for i in range(0, self.num_classes, c)]
        missing = c - len(groups[-1])
        if missing:
            others = np.setdiff1d(perm, groups[-1], assume_unique=True)
            groups[-1] = np.concatenate([groups[-1], rng.choice(others, size=missing, replace=False)])
        return groups

    def _draw_images(self, members: npt.NDArray[np.int64], rng: np.random.Generator) -> list[int]:
        s = self.samples_per_class
        n = len(members)
        if n >= s:
            return [int(i) for i in rng.choice(members, size=s, replace=False)]
        copies, rest = divmod(s, n)
        parts = [rng.permutation(members) for _ in range(copies)]
        parts.append(rng.choice(members, size=rest, replace=False))
        return [int(i) for i in np.concatenate(parts)]


class DistributedClassBalancedSampler(ClassBalancedSampler):
    """One process's share of `ClassBalancedSampler`'s global batches: its own C / N classes x S images.

    Every process draws the same global batch (C classes x S images, from (seed, epoch) alone, as the
    single-process sampler does) and keeps the consecutive block of classes that belongs to its rank: rank r
    gets the classes r * C / N ... (r + 1) * C / N - 1 of the batch, in the batch's order. So the processes agree
    on who trains on what without talking to each other, the shares never overlap and together are the whole
    batch in its order, a resumed run continues at the exact batch, and with one process the batches are those
    of `ClassBalancedSampler` itself, which is what lets a run on N processes reproduce a run on one.

    Shares are whole classes (not image slots) because the gathered batch must be the global batch in the same
    order, and because a class split across processes would leave each with fewer than S images of it for the
    parts of a method that look at one process's share alone (batch statistics, when they are not frozen).
    """

    def __init__(
        self,
        labels: Sequence[int] | npt.ArrayLike,
        classes_per_batch: int,
        samples_per_class: int,
        batches_per_epoch: int | None = None,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank must lie in [0, world_size), got rank {rank} of {world_size}")
        if classes_per_batch % world_size:
            raise ValueError(
                f"classes_per_batch={classes_per_batch} cannot be shared by {world_size} processes: each needs "
                f"the same number of whole classes, so use a multiple of {world_size}"
            )
        super().__init__(labels, classes_per_batch, samples_per_class, batches_per_epoch, seed)
        self.rank = rank
        self.world_size = world_size
        self.share_size = classes_per_batch // world_size * samples_per_class
        """Images per process and batch (C / N classes x S)."""

    @property
    def first_position(self) -> int:
        """Where this process's share starts in the global batch (what seeds its images' augmentation)."""
        return self.rank * self.share_size

    def global_batches(self) -> Iterator[list[int]]:
        """The whole batches of the current epoch, every process's share included."""
        return super().__iter__()

    def __iter__(self) -> Iterator[list[int]]:
        start = self.first_position
        for batch in self.global_batches():
            yield batch[start : start + self.share_size]
