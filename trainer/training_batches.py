"""The batches a run trains on: decoded images through one DataLoader, or views of the cached frozen trunk.

Both depend only on the run's seed, the epoch and the place in it, never on which worker process decoded an image
or on how many batches a resumed run skipped: a resumed run sees exactly what the uninterrupted one would.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
from torch import nn
from torch.utils.data import DataLoader

from trainer.data import ImageDataset, LabelledFolder, collate_uint8, train_transform
from trainer.devices import default_loader_workers
from trainer.samplers import DistributedClassBalancedSampler

Batch = tuple[torch.Tensor, torch.Tensor]


def augmentation_seed(seed: int, epoch: int, batch: int, position: int) -> int:
    """The seed of one image's random crop and flip: a function of where it is in the run, nothing else.

    >>> augmentation_seed(0, 1, 2, 3) == augmentation_seed(0, 1, 2, 3) != augmentation_seed(0, 1, 2, 4)
    True
    """
    digest = hashlib.blake2b(f"{seed}/{epoch}/{batch}/{position}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def state_digest(modules: Sequence[nn.Module]) -> str:
    """A cheap fingerprint of frozen weights, so a cache is never reused for another trunk."""
    h = hashlib.sha256()
    for m in modules:
        for name, t in m.state_dict().items():
            h.update(name.encode())
            h.update(t.detach().float().flatten()[:64].cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def trunk_cache_key(
    samples: Sequence[tuple[Path, int]], frozen: Sequence[nn.Module], views: int, crop: int, backbone: str, seed: int
) -> str:
    """What a trunk cache holds: these images, through these frozen stages, at this crop, these many views."""
    what = [[str(p) for p, _ in samples], len(frozen), views, crop, backbone, seed, state_digest(frozen)]
    return hashlib.sha256(json.dumps(what).encode()).hexdigest()[:16]


def cached_batches(
    cache: torch.Tensor,
    sampler: DistributedClassBalancedSampler,
    labels: npt.NDArray[np.int64],
    seed: int,
    epoch: int,
    skip: int,
) -> Iterator[Batch]:
    """The epoch's batches as cached trunk outputs, one random view of each image, from batch `skip` on (the views
    of the skipped batches are drawn all the same, so the rest are the ones an uninterrupted run draws)."""
    gen = torch.Generator().manual_seed(seed * 1000 + epoch)
    all_labels = torch.from_numpy(labels)
    for i, idx in enumerate(sampler):
        views = torch.randint(0, cache.shape[1], (len(idx),), generator=gen)
        if i < skip:
            continue
        index = torch.tensor(idx)
        yield cache[index, views], all_labels[index]


def loader_batches(
    train: LabelledFolder,
    sampler: DistributedClassBalancedSampler,
    crop: int,
    resize: int,
    seed: int,
    epochs: range,
    skip: int,
    workers: int | None,
    device: torch.device,
) -> Iterator[Batch]:
    """Every batch of these epochs, from batch `skip` of the first on, through one DataLoader for the whole run.

    One loader (not one per epoch) starts its worker processes once and keeps decoding across epoch boundaries,
    so a GPU does not wait for workers to start at every epoch. The sampler's index lists are sliced, so a
    resumed run does not decode the images of the batches it already trained on.

    Every image carries its own augmentation seed (from the run's seed, the epoch and its place in the global
    batch), so its random crop and flip do not depend on which worker process decodes it.
    """
    dataset = ImageDataset(train.samples, train_transform(crop), min_side=resize)
    batches = []
    first = sampler.first_position  # seeds come from places in the global batch
    for epoch in epochs:
        sampler.set_epoch(epoch)
        seeded = [
            [(index, augmentation_seed(seed, epoch, b, first + j)) for j, index in enumerate(batch)]
            for b, batch in enumerate(sampler)
        ]
        batches.extend(seeded[skip:] if epoch == epochs.start else seeded)
    loader = DataLoader(
        dataset, batch_sampler=batches, collate_fn=collate_uint8,
        num_workers=default_loader_workers(device) if workers is None else workers,
        pin_memory=device.type == "cuda", persistent_workers=False,
    )  # fmt: skip
    return iter(loader)
