"""Multi-similarity loss and miner (Wang, Han, Huang, Dong & Scott, "Multi-Similarity Loss with General Pair
Weighting for Deep Metric Learning", CVPR 2019), on cosine similarities S of the embeddings.

    L = 1/m Σ_i [ 1/α · log(1 + Σ_{k ∈ P_i} exp(-α (S_ik - λ)))
                + 1/β · log(1 + Σ_{k ∈ N_i} exp( β (S_ik - λ))) ]

P_i / N_i are the positives / negatives of anchor i kept by the mining step (`MultiSimilarityMiner`), m the
batch size, λ (`base`) the similarity around which pairs are weighted. The soft-max form weights each pair by
its own similarity *and* by its relation to the anchor's other pairs, which is what the paper argues the
single-similarity losses miss. Defaults: α=2 and β=50 as reported in the paper, λ=0.5 and ε=0.1 as in the
authors' released code (its `thresh` and `margin`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trainer.losses.miners import label_masks, multisimilarity_pairs


def _soft_plus_sum(values: Tensor, mask: Tensor) -> Tensor:
    """Row-wise log(1 + Σ_{mask} exp(values)), stable for β = 50 (plain exp overflows at S ≈ 1.8)."""
    masked = values.masked_fill(~mask, -math.inf)
    zeros = torch.zeros(values.shape[0], 1, dtype=values.dtype, device=values.device)
    return torch.logsumexp(torch.cat([zeros, masked], dim=1), dim=1)


class MultiSimilarityMiner(nn.Module):
    """The MS pair-mining rule as a module, for use with other pair losses or for monitoring."""

    def __init__(self, epsilon: float = 0.1) -> None:
        super().__init__()
        if epsilon < 0:
            raise ValueError(f"epsilon must be non-negative, got {epsilon}")
        self.epsilon = float(epsilon)

    def forward(self, embeddings: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(pos_anchor, pos_other, neg_anchor, neg_other) index tensors of the kept pairs."""
        x = F.normalize(embeddings.detach(), dim=1)
        return multisimilarity_pairs(x @ x.T, labels, self.epsilon)

    def extra_repr(self) -> str:
        return f"epsilon={self.epsilon}"


class MultiSimilarityLoss(nn.Module):
    """MS loss; `mine=False` applies the weighting to every pair (the paper's ablation without mining)."""

    def __init__(
        self,
        alpha: float = 2.0,
        beta: float = 50.0,
        base: float = 0.5,
        epsilon: float = 0.1,
        mine: bool = True,
    ) -> None:
        super().__init__()
        if not (alpha > 0 and beta > 0):
            raise ValueError(f"alpha and beta must be positive, got alpha={alpha}, beta={beta}")
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.base = float(base)
        self.miner = MultiSimilarityMiner(epsilon) if mine else None

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        x = F.normalize(embeddings, dim=1)
        sim = x @ x.T
        if self.miner is None:
            pos, neg = label_masks(labels)
        else:
            pa, pp, na, nn_ = multisimilarity_pairs(sim.detach(), labels, self.miner.epsilon)
            pos = torch.zeros_like(sim, dtype=torch.bool)
            neg = torch.zeros_like(sim, dtype=torch.bool)
            pos[pa, pp] = True
            neg[na, nn_] = True
        pos_term = _soft_plus_sum(-self.alpha * (sim - self.base), pos) / self.alpha
        neg_term = _soft_plus_sum(self.beta * (sim - self.base), neg) / self.beta
        return (pos_term + neg_term).mean()

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, beta={self.beta}, base={self.base}, mine={self.miner is not None}"
