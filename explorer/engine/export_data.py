"""What an export writes, whatever it writes to: the indexed images of one or more folders, under one model.

Milvus (explorer.engine.milvus_store) and parquet (explorer.engine.parquet_export) read the same rows in the
same order: folders in the order given, each folder's images in catalog-id order. That order is the export's id
(0, 1, 2, ...), and equal distances are ranked by it, so a one-folder export ties exactly as the local search does
(it breaks ties by catalog id). The unit is a list of folders because a library (several folders) passes its own.

Both targets need packages the app does not: they are imported only when an export or a Milvus query runs, and
`require` turns their absence into one sentence saying what to install.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from trainer.binary import binarize

if TYPE_CHECKING:
    from explorer.engine.search import Collection

INSTALL_HINT = "pip install 'retrieval-explorer[export]'"


class MissingPackage(RuntimeError):
    """A package an export needs is not installed; the message says what to install."""


class ExportError(RuntimeError):
    """An export or a query of an export cannot go on; the message is one sentence saying what to do."""


class ModelMismatch(ExportError):
    """The export holds another model's embeddings: comparing them with this model's would rank at random."""


def require(module: str, purpose: str) -> ModuleType:
    """Import `module`, or raise MissingPackage with the install command (the app itself never needs it)."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        package = module.split(".")[0].replace("_", "-")
        raise MissingPackage(f"{purpose} needs the {package} package, which is not installed: {INSTALL_HINT}") from exc


@dataclass(frozen=True)
class ModelIdentity:
    """Which model produced the embeddings: an export records it, and a query with another model is refused."""

    fingerprint: str
    name: str
    dim: int


@dataclass(frozen=True)
class ExportSource:
    """One folder's indexed images: relative paths as the catalog holds them (surrogate escapes for names that
    are not UTF-8), float embeddings in catalog-id order, and each file's size and mtime when it was embedded."""

    folder: Path
    relpaths: list[str]
    embeddings: npt.NDArray[np.float32]
    sizes: npt.NDArray[np.int64]
    mtimes_ns: npt.NDArray[np.int64]

    def __post_init__(self) -> None:
        n = len(self.relpaths)
        if self.embeddings.ndim != 2 or self.embeddings.shape[0] != n or len(self.sizes) != n:
            raise ValueError(f"{self.folder}: {n} paths, embeddings {self.embeddings.shape}, {len(self.sizes)} sizes")

    def __len__(self) -> int:
        return len(self.relpaths)

    @classmethod
    def from_collection(cls, collection: Collection) -> ExportSource:
        snapshot = collection.snapshot
        stamps = collection.catalog.stamps()
        sizes = np.fromiter((stamps[r].size if r in stamps else 0 for r in snapshot.relpaths), np.int64)
        mtimes = np.fromiter((stamps[r].mtime_ns if r in stamps else 0 for r in snapshot.relpaths), np.int64)
        return cls(collection.folder, list(snapshot.relpaths), snapshot.embeddings, sizes, mtimes)


@dataclass(frozen=True)
class Batch:
    """Consecutive rows of an export: ids are the export's row numbers."""

    ids: npt.NDArray[np.int64]
    folder: Path
    relpaths: list[str]
    embeddings: npt.NDArray[np.float32]
    sizes: npt.NDArray[np.int64]
    mtimes_ns: npt.NDArray[np.int64]

    @property
    def codes(self) -> npt.NDArray[np.uint8]:
        """Packed sign bits, as trainer.binary makes them (bit set where the coordinate is > 0)."""
        return binarize(self.embeddings)


def batches(sources: list[ExportSource], size: int) -> Iterator[Batch]:
    """The rows of every source in export order, at most `size` at a time (a batch never spans two folders)."""
    if size < 1:
        raise ValueError("the batch size must be at least 1")
    start = 0
    for source in sources:
        for i in range(0, len(source), size):
            j = min(i + size, len(source))
            yield Batch(
                np.arange(start + i, start + j, dtype=np.int64),
                source.folder,
                source.relpaths[i:j],
                np.ascontiguousarray(source.embeddings[i:j], dtype=np.float32),
                source.sizes[i:j],
                source.mtimes_ns[i:j],
            )
        start += len(source)


def check_sources(sources: list[ExportSource], model: ModelIdentity) -> int:
    """The number of rows, after checking that every source holds the model's full-width embeddings."""
    if not sources:
        raise ExportError("nothing to export: name at least one indexed folder")
    for s in sources:
        if len(s) and s.embeddings.shape[1] != model.dim:
            raise ExportError(f"{s.folder} holds {s.embeddings.shape[1]}-d embeddings, the model gives {model.dim}")
    if model.dim % 8:
        raise ExportError(f"binary codes need a dimension divisible by 8, the model gives {model.dim}")
    return sum(len(s) for s in sources)
