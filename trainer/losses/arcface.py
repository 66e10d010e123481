"""ArcFace: additive angular margin loss (Deng, Guo, Xue & Zafeiriou, "ArcFace: Additive Angular Margin Loss
for Deep Face Recognition", CVPR 2019).

Embeddings and class weights are L2-normalised, so each logit is cos θ_j, the angle to class j's proxy. The
target logit becomes cos(θ_y + m) before scaling by s and a softmax cross-entropy: the embedding must beat
every other class by an angle m, a geodesic margin on the sphere that retrieval by cosine directly benefits
from. Defaults m = 0.5 rad and s = 64 are the paper's.

Threshold handling (as in the authors' insightface code): cos(θ + m) is only monotonically decreasing in θ
while θ + m ≤ π. For θ > π - m the target logit is replaced by the linear continuation cos θ - m·sin m, which
keeps it decreasing so that a badly misclassified sample is still pushed towards its class. `easy_margin`
instead applies the margin only where cos θ > 0 (θ < 90°) and leaves harder samples un-margined.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class ArcFaceLoss(nn.Module):
    """Additive angular margin softmax over learnable, normalised class proxies."""

    def __init__(
        self, num_classes: int, dim: int, margin: float = 0.5, scale: float = 64.0, easy_margin: bool = False
    ) -> None:
        super().__init__()
        if num_classes < 1 or dim < 1:
            raise ValueError(f"num_classes and dim must be at least 1, got {num_classes}, {dim}")
        if not 0 <= margin < math.pi / 2:
            raise ValueError(f"margin must lie in [0, pi/2) radians, got {margin}")
        if not scale > 0:
            raise ValueError(f"scale must be positive, got {scale}")
        self.num_classes = num_classes
        self.dim = dim
        self.margin = float(margin)
        self.scale = float(scale)
        self.easy_margin = easy_margin
        self.weight = nn.Parameter(torch.empty(num_classes, dim))
        # Xavier-uniform, as insightface: only the directions matter after normalisation, and a symmetric draw
        # spreads them over the sphere.
        nn.init.xavier_uniform_(self.weight)

    def logits(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        """Scaled logits with the angular margin applied to each row's target class."""
        if embeddings.ndim != 2 or embeddings.shape[1] != self.dim:
            raise ValueError(f"expected embeddings of shape (B, {self.dim}), got {tuple(embeddings.shape)}")
        cosine = F.normalize(embeddings, dim=1) @ F.normalize(self.weight, dim=1).T
        # Clamped below: d sqrt/dx is infinite at 0, i.e. for an embedding exactly on a proxy.
        sine = (1.0 - cosine * cosine).clamp(min=1e-9).sqrt()
        cos_m, sin_m = math.cos(self.margin), math.sin(self.margin)
        phi = cosine * cos_m - sine * sin_m  # cos(θ + m)
        if self.easy_margin:
            phi = torch.where(cosine > 0, phi, cosine)
        else:
            threshold = math.cos(math.pi - self.margin)
            phi = torch.where(cosine > threshold, phi, cosine - math.sin(math.pi - self.margin) * self.margin)
        target = F.one_hot(labels, self.num_classes).to(dtype=torch.bool)
        return self.scale * torch.where(target, phi, cosine)

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        return F.cross_entropy(self.logits(embeddings, labels), labels)

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, dim={self.dim}, margin={self.margin}, scale={self.scale}, "
            f"easy_margin={self.easy_margin}"
        )
