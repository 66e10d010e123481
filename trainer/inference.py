"""The torch runner of the embedding pipeline (trainer.embedding_pipeline): the model under
`torch.inference_mode`, with autocast and channels_last on a GPU."""

from __future__ import annotations

import os

import numpy as np
import numpy.typing as npt
import torch

from trainer.devices import default_inference_batch, inference_autocast_for, pick_device, uses_channels_last
from trainer.embedding_pipeline import EmbeddedBatch, Embedder, embed_all
from trainer.model import EmbeddingModel

__all__ = ["BatchEmbedder", "EmbeddedBatch", "embed_all"]


class BatchEmbedder(Embedder):
    """Turns images into embeddings with one model on one device."""

    def __init__(
        self,
        model: EmbeddingModel,
        device: torch.device | str | None = None,
        batch_size: int | None = None,
        decode_workers: int | None = None,
        prefetch_batches: int = 2,
        pooled_features: bool = False,
    ) -> None:
        """`pooled_features=True` returns the LayerNorm'd pooled backbone features instead of embeddings;
        `batch_size=None` picks one for the device (trainer.devices.default_inference_batch)."""
        self.device = (
            pick_device(device if isinstance(device, str) else "auto")
            if not isinstance(device, torch.device)
            else device
        )
        self.model = model.eval().to(self.device)
        if uses_channels_last(self.device):
            self.model = self.model.to(memory_format=torch.channels_last)
        self.batch_size = batch_size or default_inference_batch(self.device)
        self.decode_workers = decode_workers or max(2, min(32, os.cpu_count() or 2))
        self.prefetch_batches = prefetch_batches
        self.card = model.card
        self.pooled_features = pooled_features
        self.out_dim = model.card.feature_dim if pooled_features else model.card.dim

    def embed_arrays(self, arrays: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        """Embed already-decoded uint8 NHWC images (input_size square)."""
        batch = torch.from_numpy(np.ascontiguousarray(arrays))
        if self.device.type == "cuda":
            batch = batch.pin_memory()
        with torch.inference_mode(), inference_autocast_for(self.device):
            x = self.model.normalize_uint8(batch.to(self.device, non_blocking=True))
            if uses_channels_last(self.device):
                x = x.contiguous(memory_format=torch.channels_last)
            out = self.model.pooled_features(x) if self.pooled_features else self.model(x)
        return out.float().cpu().numpy()
