"""Contrastive loss (Hadsell, Chopra & LeCun, "Dimensionality Reduction by Learning an Invariant Mapping",
CVPR 2006), on Euclidean distances between L2-normalised embeddings (d ∈ [0, 2]).

For a pair at distance d:
    positive pair: ½ · max(0, d - pos_margin)²
    negative pair: ½ · max(0, neg_margin - d)²
With pos_margin = 0 the positive term is exactly Hadsell's ½ d²; pos_margin > 0 (as in later work) stops
pulling positives that are already close enough, which leaves room for intra-class variation.

Reduction: the mean over positive pairs plus the mean over negative pairs. A class-balanced batch of C classes
x S samples has C·S(S-1)/2 positive but C(C-1)S²/2 negative pairs; a single mean over all pairs would let
negatives outvote positives by a factor of about (C-1)S/(S-1) and the attraction term would barely train.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from trainer.losses.miners import label_masks, unit_euclidean_distances


class ContrastiveLoss(nn.Module):
    """Hadsell's squared-hinge contrastive loss over all pairs of the batch."""

    def __init__(self, pos_margin: float = 0.0, neg_margin: float = 0.5) -> None:
        super().__init__()
        if pos_margin < 0 or neg_margin <= pos_margin:
            raise ValueError(f"need 0 <= pos_margin < neg_margin, got pos_margin={pos_margin}, neg_margin={neg_margin}")
        self.pos_margin = float(pos_margin)
        self.neg_margin = float(neg_margin)

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        dist = unit_euclidean_distances(embeddings)
        pos, neg = label_masks(labels)
        # Each unordered pair once; the means are the same as over ordered pairs, the work is halved.
        upper = torch.ones_like(pos).triu(diagonal=1)
        pos, neg = pos & upper, neg & upper
        loss = embeddings.sum() * 0.0
        if bool(pos.any()):
            loss = loss + 0.5 * torch.relu(dist[pos] - self.pos_margin).pow(2).mean()
        if bool(neg.any()):
            loss = loss + 0.5 * torch.relu(self.neg_margin - dist[neg]).pow(2).mean()
        return loss

    def extra_repr(self) -> str:
        return f"pos_margin={self.pos_margin}, neg_margin={self.neg_margin}"
