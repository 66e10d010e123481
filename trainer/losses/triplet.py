"""Triplet loss with online mining.

loss(a, p, n) = max(0, d(a, p) - d(a, n) + margin), d the Euclidean distance between L2-normalised
embeddings (so d ∈ [0, 2] and d² = 2 - 2 cos; a margin of 0.2 means the same thing at any embedding width).

Mining strategies:
* 'semihard' — Schroff et al., "FaceNet: A Unified Embedding for Face Recognition and Clustering", CVPR 2015:
  for every (anchor, positive) pair the closest negative with d_ap < d_an < d_ap + margin, falling back to the
  hardest negative when there is none; averaged over the mined triplets.
* 'batch_hard' — Hermans, Beyer & Leibe, "In Defense of the Triplet Loss for Person Re-Identification", 2017:
  per anchor the farthest positive and the closest negative; averaged over anchors.
* 'all' — every valid triplet, averaged over those with a non-zero loss (the paper's "batch all ≠ 0"
  variant: averaging over all of them lets the growing number of satisfied triplets wash the gradient out).
"""

from __future__ import annotations

from typing import Literal, get_args

import torch
from torch import Tensor, nn

from trainer.losses.miners import (
    all_triplets,
    batch_hard_triplets,
    semihard_triplets,
    unit_euclidean_distances,
)

Mining = Literal["semihard", "batch_hard", "all"]
MINING_STRATEGIES: tuple[str, ...] = get_args(Mining)


class TripletLoss(nn.Module):
    """Margin triplet loss on unit-sphere Euclidean distances with a choice of online mining."""

    def __init__(self, margin: float = 0.2, mining: str = "semihard") -> None:
        super().__init__()
        if not margin > 0:
            raise ValueError(f"margin must be positive, got {margin}")
        if mining not in MINING_STRATEGIES:
            raise ValueError(f"unknown mining {mining!r}; valid: {', '.join(MINING_STRATEGIES)}")
        self.margin = float(margin)
        self.mining = mining

    def mine(self, dist: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(anchor, positive, negative) indices chosen by this loss's strategy (exposed for monitoring)."""
        if self.mining == "semihard":
            return semihard_triplets(dist, labels, self.margin)
        if self.mining == "batch_hard":
            return batch_hard_triplets(dist, labels)
        return all_triplets(labels)

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        dist = unit_euclidean_distances(embeddings)
        a, p, n = self.mine(dist.detach(), labels)
        if a.numel() == 0:
            # No valid triplet (e.g. one class in the batch): a zero that still belongs to the graph, so a
            # training step can call backward() unconditionally.
            return embeddings.sum() * 0.0
        losses = torch.relu(dist[a, p] - dist[a, n] + self.margin)
        if self.mining == "all":
            active = losses > 0
            return losses[active].mean() if bool(active.any()) else losses.sum() * 0.0
        return losses.mean()

    def extra_repr(self) -> str:
        return f"margin={self.margin}, mining={self.mining!r}, distance='euclidean (unit sphere)'"
