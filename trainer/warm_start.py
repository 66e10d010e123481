"""Where a run starts: a new embedding layer as the principal directions of the features, proxies at the class means.

Random proxies make the first steps pull the embedding layer (and, after warm-up, the backbone) towards arbitrary
directions, which costs the pretrained features some of their generality; proxies that start where the classes
already are leave the loss only the genuinely useful work. trainer.fit calls these on features of the training
images before the first step.
"""

from __future__ import annotations

import torch
from torch import nn


def pca_rotation(features: torch.Tensor, dim: int) -> torch.Tensor:
    """(dim, F) rows = principal directions of LayerNorm'd pooled features, largest variance first.

    Starting the embedding layer as this rotation keeps cosine retrieval of the pretrained backbone intact
    (at dim = F it is orthogonal), orders the dimensions so that every prefix is already a sensible smaller
    embedding, and decorrelates the coordinates before the sign is taken, which is what binarization needs.

    >>> rows = pca_rotation(torch.tensor([[3.0, 0.0], [-3.0, 0.0], [0.0, 1.0], [0.0, -1.0]]), 1)
    >>> [round(abs(v), 3) for v in rows[0].tolist()]  # the direction of largest variance: the first axis
    [1.0, 0.0]
    """
    x = features.double() - features.double().mean(0, keepdim=True)
    cov = x.T @ x / max(1, x.shape[0] - 1)
    _evals, evecs = torch.linalg.eigh(cov)
    return evecs.flip(1)[:, :dim].T.float().contiguous()


def proxies_to_class_means(objective: nn.Module, emb: torch.Tensor, labels: torch.Tensor) -> None:
    """Every proxy matrix of the objective (one per nested prefix; ArcFace's class weights) gets the normalised
    class means of its prefix, at the norm it had; classes with no image here keep their proxy."""
    for module in objective.modules():
        proxies = getattr(module, "proxies", None)
        if proxies is None and module.__class__.__name__ == "ArcFaceLoss":
            proxies = getattr(module, "weight", None)
        if not isinstance(proxies, nn.Parameter) or proxies.dim() != 2:
            continue
        n_classes, d = proxies.shape
        x = torch.nn.functional.normalize(emb[:, :d], dim=1)
        sums = torch.zeros(n_classes, d, device=x.device).index_add_(0, labels, x)
        counts = torch.bincount(labels, minlength=n_classes)
        seen = counts > 0
        means = torch.nn.functional.normalize(sums[seen], dim=1)
        proxies.data[seen] = means.to(proxies.dtype) * proxies.data[seen].norm(dim=1, keepdim=True)
