"""The model run by ONNX Runtime: about 2.5x torch on a CPU for the bundled model, and no torch to import.

A model's runtime file is exported from the one model definition by trainer.onnx_export, which checks it against
the torch model on a probe batch before keeping it, and writes beside it a record of what it was made from (the
model's fingerprint: weights and input contract) and how far it was from torch. `load_onnx_embedder` uses a file
only when that record matches the model it is asked for: a model retrained after its export, or a record that
cannot be read, gives None and the reason, and the caller uses torch. torch-free and Qt-free.

    <model>.onnx        the graph and weights (ONNX), beside the model or in the cache by fingerprint
    <model>.onnx.json   {"fingerprint", "max_abs_diff", "sign_agreement", "probe_images", "onnxruntime"}
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from trainer.card import model_paths
from trainer.embedding_pipeline import Embedder

if TYPE_CHECKING:
    from trainer.card import ModelCard

MAX_ABS_DIFF = 1e-3
"""Largest difference to torch on the probe batch that is accepted (measured: 7e-6 for the bundled model)."""
NOT_EXPORTED = "no runtime file exported yet"
MIN_SIGN_AGREEMENT = 0.999
"""Share of binary-code bits that must agree with torch's on the probe batch (measured: all of them)."""


def onnx_paths_beside(model_path: Path) -> tuple[Path, Path]:
    """(graph, record) beside a model: `x.onnx` and `x.onnx.json` for `x.safetensors`."""
    weights, _card = model_paths(model_path)
    stem = weights.with_suffix("")
    return stem.with_name(stem.name + ".onnx"), stem.with_name(stem.name + ".onnx.json")


def onnx_paths_cached(cache: Path, fingerprint: str) -> tuple[Path, Path]:
    return cache / f"{fingerprint}.onnx", cache / f"{fingerprint}.onnx.json"


@dataclass(frozen=True)
class RuntimeRecord:
    fingerprint: str
    max_abs_diff: float
    sign_agreement: float
    probe_images: int

    @property
    def accepted(self) -> bool:
        return self.max_abs_diff <= MAX_ABS_DIFF and self.sign_agreement >= MIN_SIGN_AGREEMENT

    def to_json(self) -> str:
        return json.dumps({**self.__dict__, "onnxruntime": onnxruntime_version()}, indent=1)

    @classmethod
    def read(cls, path: Path) -> RuntimeRecord:
        data = json.loads(path.read_text(encoding="utf-8"))
        return cls(str(data["fingerprint"]), float(data["max_abs_diff"]), float(data["sign_agreement"]),
                   int(data["probe_images"]))  # fmt: skip


def onnxruntime_version() -> str | None:
    try:
        import onnxruntime
    except ImportError:
        return None
    return str(onnxruntime.__version__)


def normalised(arrays: npt.NDArray[np.uint8], card: ModelCard) -> npt.NDArray[np.float32]:
    """uint8 NHWC (as decoded) -> the float NCHW the graph takes, exactly as trainer.model.EmbeddingModel's
    normalize_uint8 does it for torch."""
    mean = np.asarray(card.mean, np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(card.std, np.float32).reshape(1, 3, 1, 1)
    x = np.ascontiguousarray(arrays).transpose(0, 3, 1, 2).astype(np.float32) / np.float32(255.0)
    return np.ascontiguousarray((x - mean) / std)


class OnnxEmbedder(Embedder):
    """The embedding pipeline with ONNX Runtime running the model (its CPU provider, or a GPU one it offers)."""

    def __init__(self, onnx_path: Path, card: ModelCard, batch_size: int = 32, threads: int | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or max(1, os.cpu_count() or 1)
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        available = ort.get_available_providers()
        wanted = [p for p in ("CUDAExecutionProvider", "CoreMLExecutionProvider", "DmlExecutionProvider")
                  if p in available] + ["CPUExecutionProvider"]  # fmt: skip
        self.session = ort.InferenceSession(str(onnx_path), options, providers=wanted)
        self.provider = self.session.get_providers()[0]
        self.input_name = self.session.get_inputs()[0].name
        self.card = card
        self.batch_size = batch_size
        self.out_dim = card.dim

    def embed_arrays(self, arrays: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        """uint8 NHWC -> embeddings."""
        out: Any = self.session.run(None, {self.input_name: normalised(arrays, self.card)})[0]
        return np.asarray(out, dtype=np.float32)

    @property
    def description(self) -> str:
        return f"ONNX Runtime ({self.provider.removesuffix('ExecutionProvider')})"


def load_onnx_embedder(
    model_path: Path, card: ModelCard, fingerprint: str, cache: Path | None, batch_size: int | None = None
) -> tuple[OnnxEmbedder | None, str]:
    """An ONNX Runtime embedder for this model, or None and why not (then torch runs the model).

    The runtime file beside the model wins (a bundle or a trainer's export); else the one in `cache`.
    """
    if onnxruntime_version() is None:
        return None, "onnxruntime is not installed"
    reasons = []
    places = [onnx_paths_beside(model_path)] + ([onnx_paths_cached(cache, fingerprint)] if cache else [])
    for graph, record_path in places:
        if not graph.exists():
            continue
        try:
            record = RuntimeRecord.read(record_path)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            reasons.append(f"{record_path.name} cannot be read ({exc})")
            continue
        if record.fingerprint != fingerprint:
            reasons.append(f"{graph.name} was exported from other weights than the model's")
            continue
        if not record.accepted:
            reasons.append(f"{graph.name} differed from torch by {record.max_abs_diff:.2g}")
            continue
        try:
            return OnnxEmbedder(graph, card, batch_size or 32), ""
        except Exception as exc:  # a damaged file or an unsupported operator: torch still works
            reasons.append(f"{graph.name} cannot be loaded by ONNX Runtime ({' '.join(str(exc).split())[:160]})")
    return None, "; ".join(reasons) or NOT_EXPORTED
