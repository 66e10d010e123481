"""Judging a model the way the metric-learning literature does: embed a labelled set, compute the metrics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch

from trainer.card import metrics_table
from trainer.data import LabelledFolder, split_by_class
from trainer.inference import BatchEmbedder, embed_all
from trainer.metrics import evaluate
from trainer.model import EmbeddingModel
from trainer.progress import CancelCheck, ProgressCallback, never_cancelled

Metrics = dict[str, dict[int, dict[str, float]]]
__all__ = ["embed_folder", "embedding_metrics", "evaluate_model", "metrics_table", "select_split"]


def embed_folder(
    model: EmbeddingModel,
    folder: LabelledFolder,
    device: torch.device | str = "auto",
    max_images: int | None = None,
    seed: int = 0,
    pooled_features: bool = False,
    progress: ProgressCallback | None = None,
    cancel: CancelCheck = never_cancelled,
) -> tuple[list[Path], npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """Embeddings of a labelled folder (a seeded sample of at most `max_images`), with their labels."""
    samples = folder.samples
    if max_images is not None and len(samples) > max_images:
        pick = np.sort(np.random.default_rng(seed).choice(len(samples), size=max_images, replace=False))
        samples = [samples[i] for i in pick]
    label_of = {p: y for p, y in samples}
    embedder = BatchEmbedder(model, device, pooled_features=pooled_features)
    paths, emb, _skipped = embed_all(embedder, [p for p, _ in samples], progress, cancel)
    return paths, np.array([label_of[p] for p in paths], dtype=np.int64), emb


def select_split(folder: LabelledFolder, split: str) -> LabelledFolder:
    """'test': the held-out half of the classes (the datasets README convention); 'all': every class."""
    if split == "all":
        return folder
    if split == "test":
        return split_by_class(folder)[1]
    if split == "train":
        return split_by_class(folder)[0]
    raise ValueError(f"unknown split {split!r}; use test, train or all")


def evaluate_model(
    model: EmbeddingModel,
    folder: LabelledFolder,
    dims: list[int] | None = None,
    device: str = "auto",
    with_clustering: bool = True,
    max_images: int | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelCheck = never_cancelled,
) -> Metrics:
    """Float and binary metrics at each nested dimension (R@1/2/4/8, MAP@R, NMI, F1)."""
    _, labels, emb = embed_folder(model, folder, device, max_images, progress=progress, cancel=cancel)
    return embedding_metrics(emb, labels, dims or model.card.nested_dims, with_clustering)


def embedding_metrics(
    emb: npt.NDArray[np.float32], labels: npt.NDArray[np.int64], dims: list[int], with_clustering: bool = True
) -> Metrics:
    """`evaluate` at the usable `dims` (multiples of 8 within the width) and the Recall@K a set this size supports:
    what `evaluate_model` reports, for embeddings computed elsewhere (on another machine, say)."""
    usable = [d for d in dims if d % 8 == 0 and d <= emb.shape[1]]
    n = len(labels)
    ks = [k for k in (1, 2, 4, 8, 10, 100, 1000) if k <= 8 or (n > 10 * k and k < n)]
    return evaluate(emb, labels, usable, ks=ks, with_clustering=with_clustering)
