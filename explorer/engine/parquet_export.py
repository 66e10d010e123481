"""Indexed folders as one parquet file, for other tools (pandas, polars, DuckDB, Spark, a vector store's importer).

Columns, one row per image in export order (explorer.engine.export_data): `id` (int64), `folder` and `relpath`
(strings, as catalog.stored_name writes them: a name that is not UTF-8 is NUL + the hex of its bytes, so every
name survives a format whose strings must be UTF-8), `embedding` (fixed-size list of float32, the full width),
`code` (fixed-size binary, the packed sign bits of trainer.binary), `size` and `mtime_ns` (int64, the file when it
was embedded). The schema's metadata holds the model's fingerprint, name and dimension, so a reader can tell
whose embeddings these are before comparing them with anything.

The file is written beside its destination under a temporary name and renamed over it when complete: a failed
or cancelled export leaves the previous file (or none), never a truncated one.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from explorer.engine.catalog import loaded_name, stored_name
from explorer.engine.export_data import (
    Batch,
    ExportError,
    ExportSource,
    ModelIdentity,
    batches,
    check_sources,
    require,
)
from trainer.progress import CancelCheck, Cancelled, ProgressCallback, RateMeter, never_cancelled

_META = "explorer."


def _schema(pa: Any, model: ModelIdentity, rows: int) -> Any:
    meta = {"model": model.fingerprint, "model_name": model.name, "dim": str(model.dim), "rows": str(rows),
            "names": "catalog stored_name: NUL + hex of the bytes for a name that is not UTF-8"}  # fmt: skip
    return pa.schema(
        [
            ("id", pa.int64()),
            ("folder", pa.string()),
            ("relpath", pa.string()),
            ("embedding", pa.list_(pa.float32(), model.dim)),
            ("code", pa.binary(model.dim // 8)),
            ("size", pa.int64()),
            ("mtime_ns", pa.int64()),
        ],
        metadata={f"{_META}{k}": v for k, v in meta.items()},
    )


def _table(pa: Any, schema: Any, batch: Batch) -> Any:
    n, dim = batch.embeddings.shape
    flat = pa.array(batch.embeddings.reshape(-1), type=pa.float32())
    codes = batch.codes
    return pa.Table.from_arrays(
        [
            pa.array(batch.ids, pa.int64()),
            pa.array([stored_name(str(batch.folder))] * n, pa.string()),
            pa.array([stored_name(r) for r in batch.relpaths], pa.string()),
            pa.FixedSizeListArray.from_arrays(flat, dim),
            pa.FixedSizeBinaryArray.from_buffers(pa.binary(codes.shape[1]), n, [None, pa.py_buffer(codes.tobytes())]),
            pa.array(batch.sizes, pa.int64()),
            pa.array(batch.mtimes_ns, pa.int64()),
        ],
        schema=schema,
    )


@dataclass(frozen=True)
class ParquetSummary:
    path: Path
    rows: int
    seconds: float


def export_to_parquet(
    sources: list[ExportSource],
    model: ModelIdentity,
    path: Path,
    batch_size: int = 10_000,
    progress: ProgressCallback | None = None,
    cancel: CancelCheck = never_cancelled,
) -> ParquetSummary:
    """Write every source into `path` (replaced only once the new file is complete)."""
    pa = require("pyarrow", "A parquet export")
    pq = require("pyarrow.parquet", "A parquet export")
    started = time.perf_counter()
    total = check_sources(sources, model)
    path = Path(path)
    if path.is_dir():
        raise ExportError(f"{path} is a folder: give the parquet file's name, e.g. {path / 'embeddings.parquet'}")
    if not path.parent.is_dir():
        raise ExportError(f"the folder {path.parent} does not exist: create it or choose another place")
    temp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    schema = _schema(pa, model, total)
    meter = RateMeter(total, "exporting to parquet")
    try:
        with pq.ParquetWriter(temp, schema, compression="zstd") as writer:
            for batch in batches(sources, batch_size):
                if cancel():
                    raise Cancelled("export cancelled")
                writer.write_table(_table(pa, schema, batch))
                if progress is not None:
                    progress(meter.advance(len(batch.ids)))
            if total == 0:
                writer.write_table(schema.empty_table())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise
    return ParquetSummary(path, total, time.perf_counter() - started)


@dataclass(frozen=True)
class ParquetExport:
    """A parquet export read back: names as the catalog holds them, vectors as numpy arrays."""

    model: ModelIdentity
    ids: npt.NDArray[np.int64]
    folders: list[str]
    relpaths: list[str]
    embeddings: npt.NDArray[np.float32]
    codes: npt.NDArray[np.uint8]
    sizes: npt.NDArray[np.int64]
    mtimes_ns: npt.NDArray[np.int64]


def read_parquet(path: Path) -> ParquetExport:
    """Read a file written by `export_to_parquet` (for tests and scripts; other tools read it directly)."""
    pq = require("pyarrow.parquet", "Reading a parquet export")
    table = pq.read_table(path)
    meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
    if f"{_META}model" not in meta:
        raise ExportError(f"{path} was not written by Retrieval Explorer (no model in its metadata)")
    dim = int(meta[f"{_META}dim"])
    model = ModelIdentity(meta[f"{_META}model"], meta[f"{_META}model_name"], dim)
    n = table.num_rows
    emb = table.column("embedding").combine_chunks().flatten().to_numpy(zero_copy_only=False)
    codes = b"".join(table.column("code").to_pylist())
    return ParquetExport(
        model,
        table.column("id").to_numpy().astype(np.int64),
        [loaded_name(s) for s in table.column("folder").to_pylist()],
        [loaded_name(s) for s in table.column("relpath").to_pylist()],
        np.asarray(emb, np.float32).reshape(n, dim),
        np.frombuffer(codes, np.uint8).reshape(n, dim // 8),
        table.column("size").to_numpy().astype(np.int64),
        table.column("mtime_ns").to_numpy().astype(np.int64),
    )
