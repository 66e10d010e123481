"""Intra-batch message passing (Seidenschwarz, Elezi & Leal-Taixé, "Learning Intra-Batch Connections for Deep
Metric Learning", ICML 2021).

The batch is a fully connected graph whose nodes are the embeddings. A message-passing network (MPN) of
transformer-style layers lets every embedding attend to every other one (multi-head dot-product attention,
residual + LayerNorm, then a feed-forward block with residual + LayerNorm), so each node is refined by the
global structure of the batch: which items look alike, which classes crowd each other. A classifier on the
refined nodes gives the main cross-entropy; a second classifier directly on the backbone embeddings keeps the
backbone itself discriminative, which matters because at test time only the backbone embeds — a query has no
batch to pass messages to.

The MPN and both classifiers therefore live only inside `IntraBatchObjective`: the exported embedding model
never contains them, by construction. Nothing encodes a node's position, so the network is permutation-
equivariant over the batch, as a function of a *set* of samples must be.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class MessagePassingLayer(nn.Module):
    """One round of attention-weighted messages over the complete batch graph (self-loops included)."""

    def __init__(self, dim: int, num_heads: int = 2, ff_mult: int = 2, dropout: float = 0.0) -> None:
        super().__init__()
        self.attention = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.norm1 = nn.LayerNorm(dim)
        self.feed_forward = nn.Sequential(
            nn.Linear(dim, ff_mult * dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ff_mult * dim, dim)
        )
        self.norm2 = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, nodes: Tensor) -> Tensor:
        graph = nodes[None]  # the whole batch is one "sequence" of nodes
        messages = self.attention(graph, graph, graph, need_weights=False)[0][0]
        nodes = self.norm1(nodes + self.dropout(messages))
        return self.norm2(nodes + self.dropout(self.feed_forward(nodes)))


class MessagePassingNetwork(nn.Module):
    """`num_layers` message-passing rounds; input and output (B, dim), row i stays item i."""

    def __init__(
        self, dim: int, num_heads: int = 2, num_layers: int = 1, ff_mult: int = 2, dropout: float = 0.0
    ) -> None:
        super().__init__()
        if dim < 1 or num_heads < 1 or dim % num_heads:
            raise ValueError(f"dim ({dim}) must be a positive multiple of num_heads ({num_heads})")
        if num_layers < 1 or ff_mult < 1:
            raise ValueError(f"num_layers and ff_mult must be at least 1, got {num_layers}, {ff_mult}")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout}")
        self.layers = nn.ModuleList(MessagePassingLayer(dim, num_heads, ff_mult, dropout) for _ in range(num_layers))

    def forward(self, nodes: Tensor) -> Tensor:
        if nodes.ndim != 2:
            raise ValueError(f"expected node features of shape (B, dim), got {tuple(nodes.shape)}")
        for layer in self.layers:
            nodes = layer(nodes)
        return nodes


class IntraBatchObjective(nn.Module):
    """CE(classifier(MPN(embeddings))) + CE(backbone_classifier(embeddings)), as in the paper."""

    def __init__(
        self,
        dim: int,
        num_classes: int,
        num_heads: int = 2,
        num_layers: int = 1,
        ff_mult: int = 2,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {num_classes}")
        self.mpn = MessagePassingNetwork(dim, num_heads, num_layers, ff_mult, dropout)
        self.classifier = nn.Linear(dim, num_classes)
        self.backbone_classifier = nn.Linear(dim, num_classes)

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        refined = self.mpn(embeddings)
        return F.cross_entropy(self.classifier(refined), labels) + F.cross_entropy(
            self.backbone_classifier(embeddings), labels
        )
