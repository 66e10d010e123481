"""Densely-Anchored Sampling (Liu, Huang, Zhuang, Yang, Tan & Wang, "DAS: Densely-Anchored Sampling for Deep
Metric Learning", ECCV 2022).

Pair-based losses only learn from the embeddings a batch happens to contain; with C classes x S samples most
regions around each sample are never used as an anchor. DAS produces extra embeddings around each real one,
for free (no forward pass), and hands batch + produced embeddings to the loss, so the loss sees the
neighbourhood of every anchor densely:

* Discriminative Feature Scaling (DFS): per class, a frequency count of which dimensions are among the
  `topk_channels` largest of the class's embeddings, accumulated over batches; the `topk_channels` most
  frequent ones are that class's discriminative dimensions. A produced embedding multiplies exactly those
  dimensions of its anchor by independent factors drawn uniformly from `scale_range`, a semantic change along
  the directions the class is recognised by.
* Memorized Transformation Shifting (MTS): per class, a FIFO memory of the last `memory_per_class` intra-class
  differences e_i - e_j (detached), collected from recent batches. A produced embedding adds
  `shift_scale` x one randomly drawn difference of its class: a plausible intra-class variation observed
  elsewhere, transplanted to this anchor.

Each real embedding yields `produced_per_anchor` new ones (both transformations applied), carrying the
anchor's label. Defaults follow the command-line defaults of the authors' code: 4 channels, scale factors
drawn from [0.5, 2.0) (an asymmetric range, not 1 ± r), 10 memorised differences, 3 produced per anchor,
shift scale 0.01, produced embeddings *not* detached, so they pass the gradient back to their anchor (several
of the authors' scripts pass `--detach`; here that is `detach=True`), and embeddings L2-normalised before and
after production, since the authors' models output unit vectors and the shift scale is relative to that.
(For MS loss on CUB/Cars their scripts used 8 channels and the range [0.99, 1.01].)

The frequency counts and memories are training-time statistics kept outside the state dict; after resuming
they refill within a few batches. In eval mode DAS is the identity.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class DenselyAnchoredSampling(nn.Module):
    """Produces DFS+MTS embeddings around every anchor of a training batch; identity in eval mode."""

    def __init__(
        self,
        dim: int,
        topk_channels: int = 4,
        memory_per_class: int = 10,
        produced_per_anchor: int = 3,
        scale_range: tuple[float, float] = (0.5, 2.0),
        shift_scale: float = 0.01,
        normalize: bool = True,
        detach: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if dim < 1:
            raise ValueError(f"dim must be at least 1, got {dim}")
        if not 0 <= topk_channels <= dim:
            raise ValueError(f"topk_channels must lie in [0, {dim}], got {topk_channels}")
        if memory_per_class < 1:
            raise ValueError(f"memory_per_class must be at least 1, got {memory_per_class}")
        if produced_per_anchor < 0:
            raise ValueError(f"produced_per_anchor must be non-negative, got {produced_per_anchor}")
        low, high = scale_range
        if not 0 <= low <= high:
            raise ValueError(f"scale_range must satisfy 0 <= low <= high, got {scale_range}")
        if shift_scale < 0:
            raise ValueError(f"shift_scale must be non-negative, got {shift_scale}")
        self.dim = dim
        self.topk_channels = topk_channels
        self.memory_per_class = memory_per_class
        self.produced_per_anchor = produced_per_anchor
        self.scale_range = (float(low), float(high))
        self.shift_scale = float(shift_scale)
        self.normalize = normalize
        self.detach = detach
        self.seed = seed
        self._generator = torch.Generator().manual_seed(seed)
        # Keyed lazily by label: only classes that were seen cost memory, and no class count is needed.
        self._frequency: dict[int, Tensor] = {}
        self._memory: dict[int, Tensor] = {}

    # -- statistics -------------------------------------------------------------------------------------

    def frequency(self, label: int) -> Tensor:
        """How often each dimension was among the top-k of this class's embeddings so far (dim,)."""
        return self._frequency.get(label, torch.zeros(self.dim, dtype=torch.long)).clone()

    def discriminative_channels(self, label: int) -> Tensor:
        """Indices of the class's `topk_channels` most frequently top-activated dimensions."""
        return torch.topk(self.frequency(label), self.topk_channels).indices

    def memory(self, label: int) -> Tensor:
        """The class's memorised differences, oldest first, (<= memory_per_class, dim)."""
        mem = self._memory.get(label)
        return torch.empty(0, self.dim) if mem is None else mem.clone()

    def reset(self) -> None:
        """Forget all frequency counts and memories (e.g. when the label set changes)."""
        self._frequency.clear()
        self._memory.clear()

    @torch.no_grad()
    def _update_frequency(self, x: Tensor, labels: Tensor) -> None:
        if self.topk_channels == 0:
            return
        top = torch.topk(x, self.topk_channels, dim=1).indices
        hits = torch.zeros(x.shape[0], self.dim, dtype=torch.long, device=x.device)
        hits.scatter_(1, top, 1)
        for label in labels.unique().tolist():
            counts = hits[labels == label].sum(dim=0).cpu()
            self._frequency[label] = self._frequency.get(label, torch.zeros(self.dim, dtype=torch.long)) + counts

    @torch.no_grad()
    def _update_memory(self, x: Tensor, labels: Tensor) -> None:
        for label in labels.unique().tolist():
            members = x[labels == label]
            diffs = (members[:, None, :] - members[None, :, :]).reshape(-1, self.dim)
            # Drops i == j (and exact duplicates), which would memorise "no transformation".
            diffs = diffs[diffs.abs().sum(dim=1) > 0]
            if diffs.shape[0] == 0:
                continue
            old = self._memory.get(label)
            if old is not None:
                diffs = torch.cat([old.to(diffs), diffs])
            self._memory[label] = diffs[-self.memory_per_class :].clone()

    # -- production -------------------------------------------------------------------------------------

    def _row_channels(self, labels: Tensor) -> Tensor:
        """(B, topk_channels) discriminative channels of each row's class (CPU)."""
        per_class = {y: self.discriminative_channels(y) for y in labels.unique().tolist()}
        if not per_class:
            return torch.empty(0, self.topk_channels, dtype=torch.long)
        return torch.stack([per_class[y] for y in labels.tolist()])

    def _scale_factors(self, channels: Tensor, like: Tensor) -> Tensor:
        """(B, dim) multipliers: random in `scale_range` on each row's class channels, 1 elsewhere."""
        factors = torch.ones(channels.shape[0], self.dim)
        if self.topk_channels:
            low, high = self.scale_range
            draws = low + (high - low) * torch.rand(channels.shape, generator=self._generator)
            factors.scatter_(1, channels, draws)
        return factors.to(like)

    def _shifts(self, labels: Tensor, like: Tensor) -> Tensor:
        """(B, dim): per row one random difference from its class memory (zero while the memory is empty)."""
        shifts = torch.zeros(labels.shape[0], self.dim, dtype=like.dtype, device=like.device)
        for label in labels.unique().tolist():
            mem = self._memory.get(label)
            if mem is None:
                continue
            rows = (labels == label).nonzero(as_tuple=True)[0]
            pick = torch.randint(mem.shape[0], (rows.shape[0],), generator=self._generator)
            shifts[rows] = mem[pick.to(mem.device)].to(like)
        return shifts

    def forward(self, embeddings: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """(batch + produced embeddings, their labels): the B real rows first, then `produced_per_anchor`
        blocks of B produced rows, row b of every block derived from anchor b."""
        if embeddings.ndim != 2 or embeddings.shape[1] != self.dim:
            raise ValueError(f"expected embeddings of shape (B, {self.dim}), got {tuple(embeddings.shape)}")
        if not self.training or self.produced_per_anchor == 0:
            return embeddings, labels
        x = F.normalize(embeddings, dim=1) if self.normalize else embeddings
        self._update_frequency(x.detach(), labels)
        self._update_memory(x.detach(), labels)
        source = x.detach() if self.detach else x
        channels = self._row_channels(labels)
        produced = []
        for _ in range(self.produced_per_anchor):
            e = source * self._scale_factors(channels, x) + self.shift_scale * self._shifts(labels, x)
            produced.append(F.normalize(e, dim=1) if self.normalize else e)
        return torch.cat([x, *produced]), labels.repeat(self.produced_per_anchor + 1)

    def extra_repr(self) -> str:
        return (
            f"dim={self.dim}, topk_channels={self.topk_channels}, memory_per_class={self.memory_per_class}, "
            f"produced_per_anchor={self.produced_per_anchor}, scale_range={self.scale_range}, "
            f"shift_scale={self.shift_scale}, normalize={self.normalize}, detach={self.detach}, "
            f"seed={self.seed}"
        )


class DASObjective(nn.Module):
    """A pair-based loss trained on DAS-densified batches: loss(DAS(embeddings, labels))."""

    def __init__(self, pair_loss: nn.Module, das: DenselyAnchoredSampling) -> None:
        super().__init__()
        self.pair_loss = pair_loss
        self.das = das

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        dense, dense_labels = self.das(embeddings, labels)
        loss: Tensor = self.pair_loss(dense, dense_labels)
        return loss
