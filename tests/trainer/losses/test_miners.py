"""Miners select exactly what their definitions say, on hand-constructed distance / similarity matrices."""

from __future__ import annotations

import math

import pytest
import torch

from trainer.losses.miners import (
    all_triplets,
    batch_hard_triplets,
    distance_weighted_log_weights,
    distance_weighted_triplets,
    label_masks,
    multisimilarity_pairs,
    semihard_triplets,
    unit_euclidean_distances,
)


def symmetric(n: int, entries: dict[tuple[int, int], float]) -> torch.Tensor:
    m = torch.zeros(n, n)
    for (i, j), v in entries.items():
        m[i, j] = m[j, i] = v
    return m


# labels 0 0 1 1 1
LABELS = torch.tensor([0, 0, 1, 1, 1])
DIST = symmetric(
    5,
    {
        (0, 1): 0.5, (0, 2): 0.45, (0, 3): 0.6, (0, 4): 0.65,
        (1, 2): 1.0, (1, 3): 1.5, (1, 4): 0.3,
        (2, 3): 0.2, (2, 4): 0.9,
        (3, 4): 0.5,
    },
)  # fmt: skip


def as_set(*indices: torch.Tensor) -> set[tuple[int, ...]]:
    return set(zip(*(t.tolist() for t in indices), strict=True))


def test_label_masks_exclude_self_from_positives() -> None:
    pos, neg = label_masks(torch.tensor([3, 3, 7]))
    assert pos.tolist() == [[False, True, False], [True, False, False], [False, False, False]]
    assert neg.tolist() == [[False, False, True], [False, False, True], [True, True, False]]


def test_unit_euclidean_distances_normalise_first() -> None:
    x = torch.tensor([[3.0, 0.0], [0.0, 0.5], [-2.0, 0.0]])
    d = unit_euclidean_distances(x)
    assert d[0, 1].item() == pytest.approx(math.sqrt(2), abs=1e-6)
    assert d[0, 2].item() == pytest.approx(2.0, abs=1e-6)
    assert d[1, 1].item() == pytest.approx(0.0, abs=1e-5)


def test_semihard_picks_closest_negative_inside_the_margin_else_the_hardest() -> None:
    a, p, n = semihard_triplets(DIST, LABELS, margin=0.2)
    # (0,1): d_ap=0.5, negatives 0.45 (hard), 0.6 and 0.65 (both semi-hard) -> the closer semi-hard one, 3.
    # (1,0): d_ap=0.5, negatives 1.0, 1.5, 0.3: none in (0.5, 0.7) -> hardest, 4.
    # (2,3): d_ap=0.2, negatives 0.45, 1.0: none in (0.2, 0.4) -> hardest, 0.
    # (2,4): d_ap=0.9, negative 1.0 in (0.9, 1.1) -> 1.
    # (3,2): d_ap=0.2, negatives 0.6, 1.5 -> none -> hardest 0.   (3,4): d_ap=0.5, 0.6 in window -> 0.
    # (4,2): d_ap=0.9, negatives 0.65, 0.3 -> none -> hardest 1.  (4,3): d_ap=0.5, 0.65 in window -> 0.
    assert as_set(a, p, n) == {
        (0, 1, 3), (1, 0, 4), (2, 3, 0), (2, 4, 1), (3, 2, 0), (3, 4, 0), (4, 2, 1), (4, 3, 0),
    }  # fmt: skip


def test_batch_hard_picks_farthest_positive_and_closest_negative() -> None:
    a, p, n = batch_hard_triplets(DIST, LABELS)
    assert as_set(a, p, n) == {(0, 1, 2), (1, 0, 4), (2, 4, 0), (3, 4, 0), (4, 2, 1)}


def test_batch_hard_drops_anchors_without_positive() -> None:
    a, _, _ = batch_hard_triplets(symmetric(3, {(0, 1): 0.3, (0, 2): 1.0, (1, 2): 1.2}), torch.tensor([0, 0, 1]))
    assert sorted(a.tolist()) == [0, 1]


def test_all_triplets_enumerates_every_valid_triple() -> None:
    assert as_set(*all_triplets(torch.tensor([0, 0, 1]))) == {(0, 1, 2), (1, 0, 2)}
    # class 0: 2 anchors x 1 positive x 3 negatives; class 1: 3 anchors x 2 positives x 2 negatives
    assert all_triplets(LABELS)[0].numel() == 2 * 1 * 3 + 3 * 2 * 2


def test_multisimilarity_pairs_follow_the_epsilon_rule() -> None:
    sim = symmetric(4, {(0, 1): 0.7, (0, 2): 0.65, (0, 3): 0.3, (1, 2): 0.2, (1, 3): 0.75, (2, 3): 0.9})
    pa, pp, na, nn_ = multisimilarity_pairs(sim, torch.tensor([0, 0, 1, 1]), epsilon=0.1)
    # anchor 0: least similar positive 0.7 -> negatives above 0.6: {2 (0.65)}; most similar negative 0.65
    #           -> positives below 0.75: {1 (0.7)}
    # anchor 1: negatives above 0.6: {3 (0.75)}; positives below 0.85: {0}
    # anchor 2: positive 0.9 -> negatives above 0.8: none; most similar negative 0.65 -> positives below 0.75:
    #           none (0.9). anchor 3: likewise nothing (negatives 0.3, 0.75 < 0.8; positive 0.9 >= 0.85).
    assert as_set(pa, pp) == {(0, 1), (1, 0)}
    assert as_set(na, nn_) == {(0, 2), (1, 3)}


def test_distance_weighted_log_weights_match_the_sphere_density() -> None:
    dist = torch.tensor([[0.3, 0.8, 1.2]])
    n = 5  # 1/q(d) = d^(2-n) (1 - d^2/4)^(-(n-3)/2), with d clipped below at the cutoff 0.5
    expected = [(2 - n) * math.log(d) - (n - 3) / 2 * math.log(1 - d * d / 4) for d in (0.5, 0.8, 1.2)]
    assert distance_weighted_log_weights(dist, n, cutoff=0.5)[0].tolist() == pytest.approx(expected, abs=1e-5)


def test_distance_weighted_sampling_frequencies_and_exclusions() -> None:
    labels = torch.tensor([0, 0, 1, 1, 1])
    dist = symmetric(
        5,
        {(0, 1): 0.3, (0, 2): 0.6, (0, 3): 1.0, (0, 4): 1.5, (1, 2): 1.0, (1, 3): 1.0, (1, 4): 1.0,
         (2, 3): 0.4, (2, 4): 0.4, (3, 4): 0.4},
    )  # fmt: skip
    generator = torch.Generator().manual_seed(0)
    counts = {2: 0, 3: 0, 4: 0}
    trials = 250
    for _ in range(trials):
        a, p, n = distance_weighted_triplets(dist, labels, dim=3, generator=generator)
        assert all(labels[i] == labels[j] and i != j for i, j in zip(a.tolist(), p.tolist(), strict=True))
        assert all(labels[i] != labels[k] for i, k in zip(a.tolist(), n.tolist(), strict=True))
        counts[int(n[(a == 0).nonzero()[0, 0]])] += 1
    # dim 3: weight 1/q(d) = 1/d; negative 4 lies beyond the non-zero-loss cutoff 1.4 and is never drawn.
    assert counts[4] == 0
    expected_2 = (1 / 0.6) / (1 / 0.6 + 1 / 1.0)
    assert counts[2] / trials == pytest.approx(expected_2, abs=0.08)


def test_distance_weighted_sampling_is_reproducible_from_the_seed() -> None:
    dist = torch.rand(8, 8)
    dist = (dist + dist.T) / 2 + 0.5
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    runs = [
        distance_weighted_triplets(dist, labels, dim=16, generator=torch.Generator().manual_seed(7))[2]
        for _ in range(2)
    ]
    assert torch.equal(runs[0], runs[1])
