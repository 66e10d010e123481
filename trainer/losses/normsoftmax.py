"""NormSoftmax: classification as a metric-learning objective (Zhai & Wu, "Classification is a Strong
Baseline for Deep Metric Learning", BMVC 2019).

Each class owns a learnable proxy; an embedding is scored against every proxy by cosine similarity and the
scores go through a plain softmax cross-entropy. Normalising *both* sides removes the norm as a shortcut for
confidence, so the only way to lower the loss is to move angles, which is what retrieval by cosine (and by
the sign bits of the embedding) rewards. The low temperature (0.05 in the paper) restores the dynamic range
that cosine in [-1, 1] would otherwise lack; without it the softmax stays nearly uniform and gradients are
weak.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class NormSoftmaxLoss(nn.Module):
    """Temperature-scaled cross-entropy over cosine similarities to L2-normalised class proxies.

    There is deliberately no bias: a per-class offset would let the classifier prefer classes regardless of
    the embedding, and that preference does not carry over to retrieval of unseen classes.
    """

    def __init__(self, num_classes: int, dim: int, temperature: float = 0.05) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {num_classes}")
        if dim < 1:
            raise ValueError(f"dim must be at least 1, got {dim}")
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.num_classes = num_classes
        self.dim = dim
        self.temperature = temperature
        self.proxies = nn.Parameter(torch.empty(num_classes, dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialise like the reference code (nn.Linear's uniform(-1/sqrt(dim), 1/sqrt(dim))).

        The scale is irrelevant once the proxies are normalised, but a symmetric uniform draw gives directions
        spread over the sphere, so no two classes start out nearly collinear.
        """
        bound = 1.0 / math.sqrt(self.dim)
        with torch.no_grad():
            self.proxies.uniform_(-bound, bound)

    def logits(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Class scores (B, num_classes): cosine to each proxy divided by the temperature.

        Exposed separately so that training can report classification accuracy from the same scores the loss
        sees.
        """
        if embeddings.ndim != 2 or embeddings.shape[1] != self.dim:
            raise ValueError(f"expected embeddings of shape (B, {self.dim}), got {tuple(embeddings.shape)}")
        cosine = F.normalize(embeddings, dim=1) @ F.normalize(self.proxies, dim=1).T
        return cosine / self.temperature

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of the batch; `labels` are class indices in [0, num_classes)."""
        return F.cross_entropy(self.logits(embeddings), labels)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, dim={self.dim}, temperature={self.temperature}"
