"""Indexed folders in Milvus: export them into one collection, and search it as the local indexes search a folder.

Collections past one machine: the same rows (explorer.engine.export_data) go to Milvus Lite (an embedded store in
a local `.db` folder, pure Python since milvus-lite 3) or to a Milvus server or cluster (`http://host:19530`).

What each field is, and why:
- `embedding`: the full float vector, cosine, HNSW (M 16 and efConstruction 200, the local index's; ef 256, see
  EF_SEARCH). Milvus Lite 3.2 builds HNSW with faiss (the C++ Lite before it had only FLAT and IVF_FLAT), so the
  Lite file is searched the way a server is.
- `code`: the binary code for exact Hamming ranking. A server gets a BINARY_VECTOR (BIN_FLAT, HAMMING). Milvus
  Lite 3.2 refuses binary vectors ("uses Milvus type BinaryVector which MilvusLite does not support"), so there
  the code is stored as its signs (+1 for a set bit, -1 otherwise) in a float vector searched by exact L2 (FLAT):
  |a - b|^2 = 4 x Hamming(a, b) for such vectors, so the ranking is exactly the Hamming ranking (at 32 times the
  storage of packed bits). Collection property `explorer.codes` says which one a collection holds.
- `folder`, `relpath`: catalog.stored_name of each (a name that is not UTF-8 is kept as NUL + the hex of its
  bytes), so every name goes through Milvus's UTF-8 strings and comes back byte for byte.
- `size`, `mtime_ns`: the file as it was when embedded.

Model check: collection properties record the model's fingerprint, name and dimension; a query with any other
model is refused, since its embeddings would be compared with another model's (a wrong answer, not an error).

Atomic replace: an export writes a new collection `<name>__v<time>` (property `explorer.state` = writing), reads
its row count back, marks it complete, and only then points the alias `<name>` at it (create_alias, or
alter_alias, which switches in one step) and drops the previous one. Queries go through the alias, so they see
the old export or the new one, never a half-written one; a failed or cancelled export drops its own collection,
and one left behind by a killed process is never complete, is never aliased, and is dropped by the next export.

Connections and `milvus://` addresses: explorer.engine.milvus_target.

Result order matches the local search: candidates come back from Milvus, then distances are computed here from
the returned vectors exactly as explorer.engine.search computes them, and ties are broken by the export's id.
"""

from __future__ import annotations

import json
import logging
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
    ModelMismatch,
    batches,
    check_sources,
)
from explorer.engine.milvus_target import SCHEME, Target, close, collection_name, connect, reason
from explorer.engine.search import Ranking, SearchResult
from trainer.binary import binarize, hamming_distances
from trainer.progress import CancelCheck, Cancelled, Progress, ProgressCallback, RateMeter, never_cancelled

NAME_MAX = 16_384  # stored names: a 4096-byte path becomes 8193 characters of hex
HNSW = {"M": 16, "efConstruction": 200}
EF_SEARCH = 256
"""HNSW's search breadth. bench/milvus_export.py: at 100,000 x 1280-d (100 images per cluster) ef 64 already gives
the exact top-10; at 5,000 (5 per cluster, neighbours nearly equidistant) ef 64 gave 0.87 and 256 gave 0.98, for
about 6 ms more per query at 100,000 (53 ms instead of 47 through Milvus Lite)."""
MAX_LIMIT = 16_384  # Milvus's largest top-k
_PROP = "explorer."


def _properties(client: Any, name: str) -> tuple[str, dict[str, str]]:
    """(the physical collection behind `name`, its properties)."""
    info = client.describe_collection(name)
    return str(info.get("collection_name", name)), {str(k): str(v) for k, v in dict(info.get("properties", {})).items()}


def _schema(client: Any, dim: int, lite: bool, description: str) -> Any:
    from pymilvus import DataType

    schema = client.create_schema(auto_id=False, enable_dynamic_field=False, description=description)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("folder", DataType.VARCHAR, max_length=NAME_MAX)
    schema.add_field("relpath", DataType.VARCHAR, max_length=NAME_MAX)
    schema.add_field("size", DataType.INT64)
    schema.add_field("mtime_ns", DataType.INT64)
    schema.add_field("embedding", DataType.FLOAT_VECTOR, dim=dim)
    schema.add_field("code", DataType.FLOAT_VECTOR if lite else DataType.BINARY_VECTOR, dim=dim)
    return schema


def _rows(batch: Batch, lite: bool) -> list[dict[str, Any]]:
    folder = stored_name(str(batch.folder))
    if lite:
        signs = np.where(batch.embeddings > 0, np.float32(1), np.float32(-1))
        codes: list[Any] = list(signs)
    else:
        codes = [bytes(c) for c in batch.codes]
    return [
        {
            "id": int(batch.ids[i]),
            "folder": folder,
            "relpath": stored_name(batch.relpaths[i]),
            "size": int(batch.sizes[i]),
            "mtime_ns": int(batch.mtimes_ns[i]),
            "embedding": batch.embeddings[i],
            "code": codes[i],
        }
        for i in range(len(batch.ids))
    ]


@dataclass(frozen=True)
class ExportSummary:
    uri: str
    collection: str  # the alias queries use
    physical: str  # the collection behind it
    rows: int
    seconds: float


def export_to_milvus(
    sources: list[ExportSource],
    model: ModelIdentity,
    target: Target,
    batch_size: int = 1000,
    progress: ProgressCallback | None = None,
    cancel: CancelCheck = never_cancelled,
) -> ExportSummary:
    """Write every source into a new collection and switch the alias to it (see the module docstring)."""
    started = time.perf_counter()
    total = check_sources(sources, model)
    name = target.collection or collection_name([s.folder for s in sources], model.fingerprint)
    client = connect(target, create=True)
    physical = f"{name}__v{time.time_ns()}"
    try:
        aliases = set(client.list_aliases().get("aliases", []))
        if name not in aliases and client.has_collection(name):
            raise ExportError(f"{target.uri} already has a collection named {name}: choose another name (#name)")
        _drop_unfinished(client, name, aliases)
        props = {
            "model": model.fingerprint,
            "model_name": model.name,
            "dim": str(model.dim),
            "codes": "sign_float" if target.lite else "binary_vector",
            "rows": str(total),
            "folders": json.dumps([stored_name(str(s.folder)) for s in sources]),
            "state": "writing",
        }
        description = f"Retrieval Explorer export, model {model.name} ({model.fingerprint}), {model.dim}-d"
        client.create_collection(
            physical,
            schema=_schema(client, model.dim, target.lite, description),
            properties={_PROP + k: v for k, v in props.items()},
        )
        previous = _properties(client, name)[0] if name in aliases else None
        try:
            _fill(client, physical, target.lite, sources, batch_size, total, progress, cancel)
            client.alter_collection_properties(physical, properties={_PROP + "state": "complete"})
            if previous is not None:
                client.alter_alias(physical, name)  # one step: queries see the old export or the new one
            else:
                client.create_alias(physical, name)
        except BaseException:
            try:
                client.drop_collection(physical)
            except Exception as exc:  # the server is gone: the collection is left unfinished and unaliased
                logging.getLogger(__name__).warning("could not drop the unfinished %s: %s", physical, exc)
            raise
        if previous is not None:  # the new export is live from here on: a failure now must not drop it
            try:
                client.drop_collection(previous)
            except Exception as exc:  # no alias points at it any more: the next export drops it
                logging.getLogger(__name__).warning("could not drop the replaced %s: %s", previous, exc)
    except (ExportError, Cancelled, KeyboardInterrupt):
        raise
    except Exception as exc:
        raise ExportError(f"Milvus refused the export ({reason(exc)}); nothing was replaced") from exc
    finally:
        close(client, target)
    return ExportSummary(target.uri, name, physical, total, time.perf_counter() - started)


def _drop_unfinished(client: Any, name: str, aliases: set[str]) -> None:
    """Drop this name's collections that no alias points at: exports that failed or were killed."""
    current = _properties(client, name)[0] if name in aliases else None
    for other in client.list_collections():
        if other.startswith(f"{name}__v") and other != current:
            client.drop_collection(other)


def _fill(
    client: Any,
    physical: str,
    lite: bool,
    sources: list[ExportSource],
    batch_size: int,
    total: int,
    progress: ProgressCallback | None,
    cancel: CancelCheck,
) -> None:
    index = client.prepare_index_params()
    index.add_index("embedding", index_type="HNSW", metric_type="COSINE", params=HNSW)
    if lite:
        index.add_index("code", index_type="FLAT", metric_type="L2")
    else:
        index.add_index("code", index_type="BIN_FLAT", metric_type="HAMMING")
    client.create_index(physical, index)
    meter = RateMeter(total, "exporting to Milvus")
    for batch in batches(sources, batch_size):
        if cancel():
            raise Cancelled("export cancelled")
        client.insert(physical, _rows(batch, lite))
        if progress is not None:
            progress(meter.advance(len(batch.ids)))
    if progress is not None:
        progress(Progress(total, total, meter.advance(0).rate, "building Milvus's search index"))
    client.flush(physical)  # Milvus Lite builds the indexes here
    client.load_collection(physical)
    counted = client.query(physical, filter="", output_fields=["count(*)"])
    written = int(counted[0]["count(*)"]) if counted else 0
    if written != total:
        raise ExportError(f"Milvus holds {written} of the {total} rows written; nothing was replaced, export again")


class MilvusExport:
    """A finished export, opened for queries by one model (refused if the export holds another model's)."""

    def __init__(self, target: Target, model: ModelIdentity, ef: int = EF_SEARCH) -> None:
        self.target = target
        self.model = model
        self.ef = ef  # HNSW's search breadth: recall against time (bench/milvus_export.py)
        self.client = connect(target)
        try:
            self.name, self.physical, props = self._pick(target.collection)
            self.binary_vectors = props.get(_PROP + "codes") == "binary_vector"
            self.rows = int(props.get(_PROP + "rows", "0"))
            self.folders = [Path(loaded_name(f)) for f in json.loads(props.get(_PROP + "folders", "[]"))]
            self.client.load_collection(self.physical)
        except ExportError:
            close(self.client, target)
            raise
        except Exception as exc:
            close(self.client, target)
            raise ExportError(
                f"Milvus at {target.uri} cannot open the export ({reason(exc)}): export it again"
            ) from exc

    def _pick(self, wanted: str | None) -> tuple[str, str, dict[str, str]]:
        """(alias, physical collection, properties) of the export to query: the one named, else this model's."""
        where = self.target.uri
        names = [wanted] if wanted else list(self.client.list_aliases().get("aliases", []))
        exports = []
        for alias in names:
            if wanted and not self.client.has_collection(alias):
                raise ExportError(f"{where} has no collection named {alias}: export first, or check the name")
            physical, props = _properties(self.client, alias)
            if _PROP + "model" in props:
                exports.append((alias, physical, props))
            elif wanted:
                raise ExportError(f"{alias} in {where} is not an export of Retrieval Explorer: name another")
        mine = [e for e in exports if e[2][_PROP + "model"] == self.model.fingerprint]
        if not mine:
            if not exports:
                raise ExportError(f"{where} holds no export: run explorer export FOLDER --to milvus first")
            alias, _, props = exports[0]
            raise ModelMismatch(
                f"{alias} in {where} holds embeddings of model {props.get(_PROP + 'model_name')} "
                f"({props[_PROP + 'model'][:12]}), not of {self.model.name} ({self.model.fingerprint[:12]}): "
                "query with that model (--model), or export again with this one"
            )
        if len(mine) > 1:
            listed = ", ".join(f"{SCHEME}{where}#{e[0]}" for e in mine)
            raise ExportError(f"{where} holds several exports made with this model: name one ({listed})")
        alias, physical, props = mine[0]
        if props.get(_PROP + "state") != "complete":
            raise ExportError(f"the export {alias} in {where} did not finish: export again")
        if props.get(_PROP + "dim") != str(self.model.dim):
            raise ModelMismatch(
                f"{alias} holds {props.get(_PROP + 'dim')}-d embeddings, the model gives {self.model.dim}"
            )
        return alias, physical, props

    def close(self) -> None:
        close(self.client, self.target)

    def __enter__(self) -> MilvusExport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def search(
        self, query: npt.NDArray[np.float32], k: int = 20, binary: bool = False, exclude: Path | None = None
    ) -> Ranking:
        """The k nearest exported images to a query embedding, ranked as the local search ranks them; `exclude`
        (the query's own file, when it was exported) is never among them."""
        q = np.asarray(query, np.float32).reshape(-1)
        if q.shape[0] != self.model.dim:
            raise ValueError(f"query has {q.shape[0]} dimensions, the export {self.model.dim}")
        if not np.isfinite(q).all():
            raise ValueError("the query's embedding is not a number: the model or the image is damaged")
        k = max(0, int(k))
        want = min(k + (exclude is not None), self.rows, MAX_LIMIT)
        if want == 0:
            return Ranking(self.model.dim, binary, [])
        code = binarize(q)
        hits = self._hamming_candidates(q, code, want) if binary else self._cosine_candidates(q, want)
        skip = Path(exclude).resolve() if exclude is not None else None
        ids = np.array([h["id"] for h in hits], np.int64)
        where = [Path(loaded_name(h["entity"]["folder"])) for h in hits]
        rel = [loaded_name(h["entity"]["relpath"]) for h in hits]
        vectors = np.array([h["entity"]["embedding"] for h in hits], np.float32).reshape(len(hits), -1)
        q_unit = q / max(float(np.linalg.norm(q)), 1e-12)
        cos = np.maximum(1.0 - (vectors @ q_unit) / np.maximum(np.linalg.norm(vectors, axis=1), 1e-12), 0.0)
        ham = hamming_distances(code, binarize(vectors))
        # the selection as the local search makes it (Hamming then id for binary, cosine then id for float) ...
        chosen = [
            j for j in (np.lexsort((ids, ham)) if binary else np.lexsort((ids, cos))) if where[j] / rel[j] != skip
        ]
        chosen = chosen[:k]
        # ... and the order it shows them in
        order = sorted(
            chosen, key=lambda j: (int(ham[j]), float(cos[j]), int(ids[j])) if binary else (float(cos[j]), int(ids[j]))
        )
        results = [
            SearchResult(i + 1, where[j] / rel[j], rel[j], float(cos[j]), int(ham[j]), int(ids[j]))
            for i, j in enumerate(order)
        ]
        return Ranking(self.model.dim, binary, results)

    _FIELDS = ("folder", "relpath", "embedding")

    def _cosine_candidates(self, q: npt.NDArray[np.float32], want: int) -> list[dict[str, Any]]:
        params = {"metric_type": "COSINE", "params": {"ef": max(self.ef, want)}}
        return self._search(q.tolist(), "embedding", want, params)

    def _hamming_candidates(
        self, q: npt.NDArray[np.float32], code: npt.NDArray[np.uint8], want: int
    ) -> list[dict[str, Any]]:
        """Every image at least as near as the `want`-th (all of its ties too), so that ties are broken by id here
        and not by Milvus's own order: the limit grows until the last candidate is strictly farther."""
        data: Any = bytes(code) if self.binary_vectors else np.where(q > 0, 1.0, -1.0).tolist()
        params = {"metric_type": "HAMMING" if self.binary_vectors else "L2"}
        limit = min(want + 32, self.rows, MAX_LIMIT)
        while True:
            hits = self._search(data, "code", limit, params)
            if len(hits) < limit or limit >= min(self.rows, MAX_LIMIT):
                return hits
            if hits[-1]["distance"] > hits[want - 1]["distance"]:
                return hits
            limit = min(limit * 4, self.rows, MAX_LIMIT)

    def _search(self, data: Any, field: str, limit: int, params: dict[str, Any]) -> list[dict[str, Any]]:
        try:
            found = self.client.search(
                self.name, data=[data], anns_field=field, limit=limit, output_fields=list(self._FIELDS),
                search_params=params,
            )  # fmt: skip
        except Exception as exc:
            raise ExportError(f"Milvus could not search {self.name} ({reason(exc)})") from exc
        return [dict(h) for h in found[0]]
