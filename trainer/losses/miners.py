"""Pair and triplet selection shared by the pair-based losses, as pure functions of a distance or similarity
matrix and the labels.

Mining decides *which* relations of a batch a loss looks at, and the papers disagree mostly there, so each
rule lives here once, close to its definition, and is tested on constructed batches:

* semi-hard triplets: Schroff, Kalenichenko & Philbin, "FaceNet: A Unified Embedding for Face Recognition and
  Clustering", CVPR 2015;
* batch-hard triplets: Hermans, Beyer & Leibe, "In Defense of the Triplet Loss for Person Re-Identification",
  arXiv 1703.07737, 2017;
* multi-similarity pairs: Wang, Han, Huang, Dong & Scott, "Multi-Similarity Loss with General Pair Weighting
  for Deep Metric Learning", CVPR 2019;
* distance-weighted negatives: Wu, Manmatha, Smola & Krähenbühl, "Sampling Matters in Deep Embedding
  Learning", ICCV 2017.

Selection is never differentiated: every function reads the matrix without gradient and returns int64 index
tensors, and the loss then gathers the (differentiable) distances at those indices.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def unit_euclidean_distances(embeddings: Tensor) -> Tensor:
    """(B, B) Euclidean distances between the L2-normalised rows of `embeddings`, in [0, 2].

    On the unit sphere d² = 2 - 2 cos, so margins quoted in the papers (which all normalise) keep their
    meaning. The square is clamped away from zero before the root: sqrt has an infinite derivative at 0, and
    identical rows (an item with itself, or a collapsed pair) would otherwise poison the gradient with NaN.
    """
    x = F.normalize(embeddings, dim=1)
    squared = (2.0 - 2.0 * (x @ x.T)).clamp(min=1e-12)
    return squared.sqrt()


def label_masks(labels: Tensor) -> tuple[Tensor, Tensor]:
    """(positive, negative) boolean (B, B) masks; an item is never its own positive.

    Self-pairs have distance zero, so counting them as positives would hand every anchor a trivially
    satisfied pair and, for batch-hard, could hide the real hardest positive behind nothing.
    """
    if labels.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {tuple(labels.shape)}")
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(labels.shape[0], dtype=torch.bool, device=labels.device)
    return same & ~eye, ~same


def _empty_index(device: torch.device) -> Tensor:
    return torch.empty(0, dtype=torch.long, device=device)


@torch.no_grad()
def semihard_triplets(dist: Tensor, labels: Tensor, margin: float) -> tuple[Tensor, Tensor, Tensor]:
    """One triplet per (anchor, positive) pair, with the FaceNet semi-hard negative.

    Semi-hard negatives are farther from the anchor than the positive but still inside the margin
    (d_ap < d_an < d_ap + margin): they carry a loss, yet are not the hardest ones, which FaceNet found to
    collapse the embedding early in training. Among them we take the closest (as the TensorFlow reference
    implementation does), so the choice is deterministic. When an (anchor, positive) pair has none, the
    hardest negative (smallest d_an) stands in: if it lies inside d_ap it is a genuinely violated triplet that
    should not be silently skipped, and if it lies beyond the margin the triplet costs nothing. (TensorFlow's
    implementation falls back to the *easiest* negative instead, which almost always costs nothing.)
    Pairs whose anchor has no negative at all in the batch are dropped.
    """
    pos, neg = label_masks(labels)
    a, p = pos.nonzero(as_tuple=True)
    if a.numel() == 0:
        e = _empty_index(dist.device)
        return e, e, e
    d_ap = dist[a, p][:, None]
    d_an = dist[a]
    negatives = neg[a]
    semi = negatives & (d_an > d_ap) & (d_an < d_ap + margin)
    inf = torch.full_like(d_an, math.inf)
    closest_semi = torch.where(semi, d_an, inf).argmin(dim=1)
    hardest = torch.where(negatives, d_an, inf).argmin(dim=1)
    n = torch.where(semi.any(dim=1), closest_semi, hardest)
    keep = negatives.any(dim=1)
    return a[keep], p[keep], n[keep]


@torch.no_grad()
def batch_hard_triplets(dist: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """One triplet per anchor: its farthest positive and its closest negative (Hermans et al., "batch hard").

    Anchors without a positive or without a negative in the batch are dropped.
    """
    pos, neg = label_masks(labels)
    inf = torch.full_like(dist, math.inf)
    hardest_pos = torch.where(pos, dist, -inf).argmax(dim=1)
    hardest_neg = torch.where(neg, dist, inf).argmin(dim=1)
    keep = pos.any(dim=1) & neg.any(dim=1)
    anchors = torch.arange(labels.shape[0], device=dist.device)
    return anchors[keep], hardest_pos[keep], hardest_neg[keep]


@torch.no_grad()
def all_triplets(labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Every valid (anchor, positive, negative) index triple of the batch ("batch all")."""
    pos, neg = label_masks(labels)
    a, p, n = (pos[:, :, None] & neg[:, None, :]).nonzero(as_tuple=True)
    return a, p, n


@torch.no_grad()
def multisimilarity_pairs(sim: Tensor, labels: Tensor, epsilon: float = 0.1) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Informative pairs by the multi-similarity mining rule (Wang et al., Eq. 7 and 8).

    For anchor i (S = cosine similarity):
      * a negative pair (i, j) is kept if S_ij > min over positives k of S_ik - epsilon, i.e. the negative is
        nearly as similar to the anchor as its least similar positive;
      * a positive pair (i, j) is kept if S_ij < max over negatives k of S_ik + epsilon, i.e. the positive is
        nearly as dissimilar as the anchor's most similar negative.
    Everything else is already well separated relative to the anchor's other relations and only dilutes the
    loss. An anchor without positives keeps no negatives (and vice versa), as in the reference code.

    Returns (pos_anchor, pos_other, neg_anchor, neg_other).
    """
    pos, neg = label_masks(labels)
    inf = torch.full_like(sim, math.inf)
    least_similar_pos = torch.where(pos, sim, inf).min(dim=1).values
    most_similar_neg = torch.where(neg, sim, -inf).max(dim=1).values
    keep_neg = neg & (sim > least_similar_pos[:, None] - epsilon)
    keep_pos = pos & (sim < most_similar_neg[:, None] + epsilon)
    pa, pp = keep_pos.nonzero(as_tuple=True)
    na, nn_ = keep_neg.nonzero(as_tuple=True)
    return pa, pp, na, nn_


def distance_weighted_log_weights(dist: Tensor, dim: int, cutoff: float = 0.5) -> Tensor:
    """log of the inverse density of pairwise distances between points uniform on the unit sphere S^(dim-1).

    Wu et al. (Eq. 4): q(d) ∝ d^(n-2) (1 - d²/4)^((n-3)/2). Sampling negatives with weight 1/q(d) draws them
    uniformly over distance instead of concentrating near sqrt(2), where high-dimensional random pairs live.
    Distances are clipped below at `cutoff` because 1/q explodes for very close pairs, which are often label
    noise and give the noisiest gradients; the upper clip keeps log(1 - d²/4) finite at antipodes.
    """
    d = dist.clamp(min=cutoff, max=2.0 - 1e-4)
    return (2.0 - dim) * torch.log(d) - ((dim - 3) / 2.0) * torch.log((1.0 - 0.25 * d * d).clamp(min=1e-8))


@torch.no_grad()
def distance_weighted_triplets(
    dist: Tensor,
    labels: Tensor,
    dim: int,
    generator: torch.Generator,
    cutoff: float = 0.5,
    nonzero_loss_cutoff: float = 1.4,
) -> tuple[Tensor, Tensor, Tensor]:
    """Every (anchor, positive) pair, each with one negative drawn by distance-weighted sampling (Wu et al.).

    As in the authors' code, negatives at distance >= `nonzero_loss_cutoff` get weight zero: the margin loss
    is zero there for any sensible beta + margin, so drawing them would waste the sample. An anchor whose
    negatives all lie beyond it draws uniformly among its negatives (those pairs then cost nothing). Draws use
    `generator` (a CPU generator) so that a run is reproducible from its seed.
    """
    pos, neg = label_masks(labels)
    a, p = pos.nonzero(as_tuple=True)
    has_neg = neg.any(dim=1)
    if a.numel() == 0 or not bool(has_neg.any()):
        e = _empty_index(dist.device)
        return e, e, e
    log_w = distance_weighted_log_weights(dist, dim, cutoff)
    eligible = neg & (dist < nonzero_loss_cutoff)
    # Rows with no eligible negative fall back to all negatives; rows without any negative get a dummy
    # uniform row (their anchors are dropped below) so that multinomial sees valid distributions only.
    fallback = torch.where(has_neg[:, None], neg, torch.ones_like(neg))
    allowed = torch.where(eligible.any(dim=1, keepdim=True), eligible, fallback)
    log_w = torch.where(eligible.any(dim=1, keepdim=True), log_w, torch.zeros_like(log_w))
    probs = torch.softmax(log_w.masked_fill(~allowed, -math.inf), dim=1)
    per_anchor = int(pos.sum(dim=1).max())
    draws = torch.multinomial(probs.float().cpu(), per_anchor, replacement=True, generator=generator)
    draws = draws.to(dist.device)
    rank = (pos.long().cumsum(dim=1) - 1)[a, p]
    n = draws[a, rank]
    keep = has_neg[a]
    return a[keep], p[keep], n[keep]
