"""The catalog's embeddings as one contiguous file beside its SQLite metadata, memory-mapped when a folder opens.

Reading 100,000 embeddings out of SQLite (one blob a row) took 1-2 s and held them twice; mapped from one array
they cost nothing until a search touches them, and the page cache shares them between processes. SQLite stays the
truth: the file is a copy, written whole to a temporary file and renamed (a crash leaves the old copy or the new,
never half of one), and it is used only when it is the copy of exactly what the catalog holds now: the same
catalog (its identity), the same change count (`generation`, which every commit raises), the same ids in the same
order, and vectors whose CRC-32 matches the one recorded (0.13 s for 0.5 GB). Anything else, and the catalog is
read from SQLite as before and the copy written again.

Layout: MAGIC, the header's length (8 bytes, little-endian), the header (JSON), zeros to a multiple of 64 bytes,
the ids (int64), the vectors (float32, count x dim, row-major).
"""

from __future__ import annotations

import contextlib
import json
import time
import zlib
from pathlib import Path

import numpy as np
import numpy.typing as npt

from trainer.atomic import atomic_write

MAGIC = b"RXVECTORS1\n"
ALIGN = 64
STALE_TEMP_SECONDS = 600
"""A temporary copy this old was left by a killed writer (a live one writes 0.5 GB in seconds): it is removed."""


def store_path(catalog_path: Path) -> Path:
    return Path(catalog_path).with_name("vectors.f32")


def _crc(array: npt.NDArray[np.generic]) -> int:
    return zlib.crc32(np.ascontiguousarray(array).reshape(-1).view(np.uint8).data)


def write_store(
    path: Path, ids: npt.NDArray[np.int64], vectors: npt.NDArray[np.float32], identity: str, generation: int
) -> None:
    """Write the copy atomically (temporary file, fsync, rename). Raises OSError when it cannot be written."""
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    fields = {"count": len(ids), "dim": int(vectors.shape[1]), "identity": identity, "generation": generation}
    header = json.dumps({**fields, "ids_crc32": _crc(ids), "vectors_crc32": _crc(vectors)}).encode()
    start = len(MAGIC) + 8 + len(header)
    padding = -start % ALIGN

    for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left by a writer that was killed midway
        with contextlib.suppress(OSError):
            if time.time() - stale.stat().st_mtime > STALE_TEMP_SECONDS:
                stale.unlink()

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            f.write(MAGIC + len(header).to_bytes(8, "little") + header + b"\0" * padding)
            ids.tofile(f)
            vectors.tofile(f)

    atomic_write(path, write)


def read_store(
    path: Path, ids: npt.NDArray[np.int64], dim: int, identity: str, generation: int
) -> npt.NDArray[np.float32] | None:
    """The vectors of exactly these ids, memory-mapped read-only, when the file is a whole copy of this catalog at
    this generation; None otherwise (missing, stale, of another catalog, damaged): the caller reads SQLite."""
    try:
        with open(path, "rb") as f:
            if f.read(len(MAGIC)) != MAGIC:
                return None
            length = int.from_bytes(f.read(8), "little")
            if not 0 < length < 1 << 16:
                return None
            header = json.loads(f.read(length))
        start = len(MAGIC) + 8 + length
        start += -start % ALIGN
        count = int(header["count"])
        if (header["identity"], int(header["generation"]), int(header["dim"]), count) != (
            identity, generation, dim, len(ids),
        ):  # fmt: skip
            return None
        if path.stat().st_size != start + count * 8 + count * dim * 4:
            return None
        stored_ids = np.memmap(path, dtype=np.int64, mode="r", offset=start, shape=(count,)) if count else ids[:0]
        if _crc(stored_ids) != header["ids_crc32"] or not np.array_equal(stored_ids, ids):
            return None
        if count == 0:
            return np.empty((0, dim), np.float32)
        vectors = np.memmap(path, dtype=np.float32, mode="r", offset=start + count * 8, shape=(count, dim))
        if _crc(vectors) != header["vectors_crc32"]:
            return None
        return vectors
    except (OSError, ValueError, KeyError, TypeError):
        return None
