"""Which runtime embeds for the explorer: ONNX Runtime where it can, torch otherwise. Qt-free.

ONNX Runtime runs the bundled model about 2.5x faster than torch on a CPU (bench/runtime_speed.py) and needs no
torch import, which is most of a one-shot `explorer query`. It runs a model from a file exported and checked by
trainer.onnx_export: shipped beside the model (the bundle's, a fine-tuned model's), or made once in the cache, in
a process of its own, the first time a model without one is used (so this process never imports torch).

torch runs when the person asks for it (`RETRIEVAL_EXPLORER_RUNTIME=torch`), for an explicit torch device
("cuda", "mps"), on an NVIDIA machine whose ONNX Runtime has no GPU provider (torch's CUDA is faster there), and
whenever no checked runtime file fits the model (a retrained model, a damaged file): then the reason goes into
the session's notes.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from explorer import paths

if TYPE_CHECKING:
    from trainer.card import ModelCard
    from trainer.embedding_pipeline import Embedder
    from trainer.onnx_runtime import OnnxEmbedder

log = logging.getLogger(__name__)
RUNTIME_VARIABLE = "RETRIEVAL_EXPLORER_RUNTIME"


def runtime_cache() -> Path:
    return paths.cache_root() / "runtimes"


def wants_onnx(device: str) -> bool:
    """Whether ONNX Runtime should run the model for this device setting ("auto", "cpu", "cuda", ...)."""
    choice = os.environ.get(RUNTIME_VARIABLE, "auto").strip().lower()
    if choice == "torch" or device not in ("auto", "cpu"):
        return False
    if choice == "onnx" or device == "cpu":
        return True
    if not Path("/proc/driver/nvidia/version").exists():
        return True
    try:
        import onnxruntime
    except ImportError:
        return False
    return "CUDAExecutionProvider" in onnxruntime.get_available_providers()


def load_embedder(
    model_path: Path, card: ModelCard, fingerprint: str, device: str, batch_size: int | None
) -> tuple[Embedder, str, str]:
    """(embedder, what runs it, a note for the person or ""). A model that has no runtime file yet gets one in the
    cache first (a few seconds, once per model), exported in a process of its own."""
    note = ""
    if wants_onnx(device):
        from trainer.onnx_runtime import NOT_EXPORTED, load_onnx_embedder, onnx_paths_cached, onnxruntime_version

        fast, why = load_onnx_embedder(model_path, card, fingerprint, runtime_cache(), batch_size)
        if fast is not None:
            return fast, fast.description, ""
        tried = onnx_paths_cached(runtime_cache(), fingerprint)[1].exists()  # a rejected export is not retried
        if why == NOT_EXPORTED and not tried:
            made = _export_and_load(model_path, card, fingerprint, batch_size)
            if made is not None:
                return made, made.description, ""
        elif onnxruntime_version() is not None:
            note = f"the fast runtime is not used ({why}); torch runs the model"
    from trainer.inference import BatchEmbedder
    from trainer.model import load_model

    embedder = BatchEmbedder(load_model(model_path), device, batch_size=batch_size)
    return embedder, f"torch ({embedder.device})", note


def _export_and_load(
    model_path: Path, card: ModelCard, fingerprint: str, batch_size: int | None
) -> OnnxEmbedder | None:
    """Export the model's runtime file into the cache (a few seconds, once per model) and load it."""
    from trainer.onnx_runtime import load_onnx_embedder, onnx_paths_cached

    graph, record = onnx_paths_cached(runtime_cache(), fingerprint)
    try:
        if getattr(sys, "frozen", False):  # a bundle has no `python -m`: export here
            from trainer.onnx_export import export_runtime  # imports torch

            export_runtime(model_path, graph, record)
        else:  # in a process of its own: this one never loads torch, and the exporter's memory goes with it
            cmd = [sys.executable, "-m", "trainer.onnx_export", str(model_path), str(graph), str(record)]
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
            if done.returncode not in (0, 1):  # 1: exported but rejected (its record says why)
                raise RuntimeError((done.stderr.strip().splitlines() or ["failed"])[-1])
    except Exception as exc:  # a read-only cache, a missing exporter: torch goes on
        log.info("no ONNX runtime file for %s: %s", model_path, exc)
        return None
    fast, why = load_onnx_embedder(model_path, card, fingerprint, runtime_cache(), batch_size)
    if fast is None:
        log.info("ONNX runtime file for %s not used: %s", model_path, why)
    return fast
