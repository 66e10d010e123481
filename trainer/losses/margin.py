"""Margin loss with distance-weighted sampling (Wu, Manmatha, Smola & Krähenbühl, "Sampling Matters in Deep
Embedding Learning", ICCV 2017).

For a pair (i, j) at Euclidean distance D_ij between L2-normalised embeddings, with y_ij = +1 for a positive
and -1 for a negative pair:
    ℓ(i, j) = max(0, margin + y_ij · (D_ij - β))
β is the boundary between "same" and "different"; the paper learns it (optionally one per class,
β = β^(0) + β^(class), here a per-class parameter initialised to β^(0)), which lets it settle where the data
puts the boundary instead of where it was guessed. The loss is the sum over pairs divided by the number of
pairs with a non-zero loss, as in the authors' code: the gradient does not fade as more pairs get satisfied.

Pairs: every (anchor, positive) of the batch, and for each one negative drawn with probability ∝ 1/q(D), the
inverse density of distances on the sphere (see `trainer.losses.miners.distance_weighted_triplets`). This
spreads the negatives over all distances: uniform sampling sees almost only D ≈ √2 (no signal), hardest
negatives give high-variance gradients and collapse.

Note: the paper trains β with its own learning rate (it lives in this module's parameters; a trainer may put
it in a separate parameter group).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from trainer.losses.miners import distance_weighted_triplets, unit_euclidean_distances


class MarginLoss(nn.Module):
    """Margin loss with a learnable boundary β and distance-weighted negative sampling."""

    beta: Tensor

    def __init__(
        self,
        beta: float = 1.2,
        margin: float = 0.2,
        learn_beta: bool = True,
        num_classes: int | None = None,
        cutoff: float = 0.5,
        nonzero_loss_cutoff: float = 1.4,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if not margin > 0:
            raise ValueError(f"margin must be positive, got {margin}")
        if num_classes is not None and num_classes < 1:
            raise ValueError(f"num_classes must be at least 1 or None, got {num_classes}")
        if not 0 <= cutoff < nonzero_loss_cutoff:
            raise ValueError(f"need 0 <= cutoff < nonzero_loss_cutoff, got {cutoff}, {nonzero_loss_cutoff}")
        self.margin = float(margin)
        self.num_classes = num_classes
        self.cutoff = float(cutoff)
        self.nonzero_loss_cutoff = float(nonzero_loss_cutoff)
        self.seed = seed
        initial = torch.full((num_classes or 1,), float(beta))
        if learn_beta:
            self.beta = nn.Parameter(initial)
        else:
            self.register_buffer("beta", initial)
        self._generator = torch.Generator().manual_seed(seed)

    def boundaries(self, labels: Tensor) -> Tensor:
        """β for each anchor label: its class's own value, or the shared one without `num_classes`."""
        if self.num_classes is None:
            return self.beta.expand(labels.shape[0])
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= self.num_classes):
            raise ValueError(f"labels must lie in [0, {self.num_classes}) for class-specific beta")
        return self.beta[labels]

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        dist = unit_euclidean_distances(embeddings)
        a, p, n = distance_weighted_triplets(
            dist.detach(),
            labels,
            embeddings.shape[1],
            self._generator,
            cutoff=self.cutoff,
            nonzero_loss_cutoff=self.nonzero_loss_cutoff,
        )
        if a.numel() == 0:
            return embeddings.sum() * 0.0 + self.beta.sum() * 0.0
        beta = self.boundaries(labels[a])
        pos_loss = torch.relu(dist[a, p] - beta + self.margin)
        neg_loss = torch.relu(beta - dist[a, n] + self.margin)
        active = (pos_loss > 0).sum() + (neg_loss > 0).sum()
        return (pos_loss.sum() + neg_loss.sum()) / active.clamp(min=1)

    def extra_repr(self) -> str:
        learn = isinstance(self.beta, nn.Parameter)
        return (
            f"margin={self.margin}, beta_shape={tuple(self.beta.shape)}, learn_beta={learn}, "
            f"cutoff={self.cutoff}, nonzero_loss_cutoff={self.nonzero_loss_cutoff}, seed={self.seed}"
        )
