"""ClassBalancedSampler: batch composition, reproducibility and class coverage."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from trainer.samplers import ClassBalancedSampler

# 7 classes of very different sizes: class 3 has a single image, class 5 two.
SIZES = {0: 10, 1: 6, 2: 4, 3: 1, 4: 8, 5: 2, 6: 5}
LABELS = [c for c, n in SIZES.items() for _ in range(n)]


def _batches(sampler: ClassBalancedSampler, epoch: int = 0) -> list[list[int]]:
    sampler.set_epoch(epoch)
    return list(sampler)


@pytest.mark.parametrize(("c", "s"), [(3, 4), (7, 1), (1, 5), (2, 3)])
def test_every_batch_has_c_distinct_classes_with_s_images_each_from_their_own_class(c: int, s: int) -> None:
    sampler = ClassBalancedSampler(LABELS, classes_per_batch=c, samples_per_class=s, batches_per_epoch=9)
    labels = np.array(LABELS)
    for epoch in range(3):
        for batch in _batches(sampler, epoch):
            assert len(batch) == c * s
            per_class = Counter(labels[batch].tolist())
            assert len(per_class) == c
            assert set(per_class.values()) == {s}
            # Within a class: no image repeated unless the class is smaller than S, and then the repeats are
            # spread evenly (each image floor(S/n) or ceil(S/n) times).
            for cls in per_class:
                images = Counter(i for i in batch if labels[i] == cls)
                n = SIZES[cls]
                if n >= s:
                    assert max(images.values()) == 1
                else:
                    assert len(images) == n
                    assert set(images.values()) <= {s // n, -(-s // n)}


def test_single_image_class_is_filled_with_itself() -> None:
    labels = [0, 1, 1, 1]
    sampler = ClassBalancedSampler(labels, classes_per_batch=2, samples_per_class=3, batches_per_epoch=4)
    for batch in sampler:
        assert sorted(batch).count(0) == 3
        assert sorted(i for i in batch if i != 0) == [1, 2, 3]


def test_same_seed_same_batches_and_epochs_differ() -> None:
    a = ClassBalancedSampler(LABELS, 3, 2, seed=11)
    b = ClassBalancedSampler(LABELS, 3, 2, seed=11)
    assert _batches(a, 0) == _batches(b, 0)
    assert _batches(a, 4) == _batches(b, 4)
    assert list(a) == list(a)  # iterating twice without set_epoch repeats the epoch
    assert _batches(a, 0) != _batches(a, 1)
    assert _batches(a, 0) != _batches(ClassBalancedSampler(LABELS, 3, 2, seed=12), 0)


def test_every_class_is_visited_in_an_epoch() -> None:
    # Default length: 36 images // (3 * 2) = 6 batches, enough for the ceil(7 / 3) = 3 batches of a pass.
    sampler = ClassBalancedSampler(LABELS, classes_per_batch=3, samples_per_class=2)
    assert len(sampler) == len(LABELS) // 6
    labels = np.array(LABELS)
    for epoch in range(5):
        batches = _batches(sampler, epoch)
        assert len(batches) == len(sampler)
        assert set(labels[np.concatenate(batches)].tolist()) == set(SIZES)


def test_short_epochs_continue_the_class_pass() -> None:
    # 20 classes, 1 class per batch, 3 batches per epoch: a pass over the classes spans 7 epochs, and those
    # 7 epochs together see all 20 classes with no class repeated before the pass ends.
    labels = [c for c in range(20) for _ in range(3)]
    sampler = ClassBalancedSampler(labels, classes_per_batch=1, samples_per_class=3, batches_per_epoch=3)
    seen = [labels[b[0]] for epoch in range(7) for b in _batches(sampler, epoch)]
    assert len(seen) == 21
    assert sorted(seen[:20]) == list(range(20))


def test_classes_are_drawn_without_replacement_across_a_pass() -> None:
    # 7 classes, 3 per batch: the first 3 batches of an epoch are one pass, so each class appears once,
    # except the 2 classes that complete the last group.
    sampler = ClassBalancedSampler(LABELS, classes_per_batch=3, samples_per_class=1, batches_per_epoch=3)
    labels = np.array(LABELS)
    counts = Counter(labels[np.concatenate(_batches(sampler, 2))].tolist())
    assert set(counts) == set(SIZES)
    assert sorted(counts.values()) == [1] * 5 + [2] * 2


def test_works_as_a_dataloader_batch_sampler() -> None:
    ds = TensorDataset(torch.arange(len(LABELS)), torch.tensor(LABELS))
    sampler = ClassBalancedSampler(LABELS, classes_per_batch=2, samples_per_class=3, batches_per_epoch=5)
    loader = DataLoader(ds, batch_sampler=sampler)
    got = [y for _, y in loader]
    assert len(got) == 5
    assert all(len(torch.unique(y)) == 2 and len(y) == 6 for y in got)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"classes_per_batch": 8, "samples_per_class": 2}, "larger than the number of classes"),
        ({"classes_per_batch": 0, "samples_per_class": 2}, "classes_per_batch must be at least 1"),
        ({"classes_per_batch": 2, "samples_per_class": 0}, "samples_per_class must be at least 1"),
        ({"classes_per_batch": 2, "samples_per_class": 2, "batches_per_epoch": 0}, "batches_per_epoch"),
        ({"classes_per_batch": 2, "samples_per_class": 2, "seed": -1}, "seed"),
    ],
)
def test_invalid_arguments_raise_clear_errors(kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ClassBalancedSampler(LABELS, **kwargs)


def test_invalid_labels_and_epoch() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        ClassBalancedSampler([], 1, 1)
    with pytest.raises(ValueError, match="integers"):
        ClassBalancedSampler([0.5, 1.5], 1, 1)
    with pytest.raises(ValueError, match="epoch"):
        ClassBalancedSampler(LABELS, 1, 1).set_epoch(-1)
