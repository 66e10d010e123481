"""Export a model to ONNX for the explorer's runtime (trainer.onnx_runtime), checked against torch first.

The graph is exported from the one model definition (trainer.model.EmbeddingModel, its `forward` on normalised
float images, any batch size), then run by ONNX Runtime and by torch on the same probe batch; it is kept only
when the two agree (trainer.onnx_runtime.MAX_ABS_DIFF, MIN_SIGN_AGREEMENT), with a record of what it was made
from. Both files are written atomically: a crash leaves the previous pair or none.
"""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch

from trainer.atomic import atomic_write
from trainer.card import load_card, model_fingerprint
from trainer.model import load_model
from trainer.onnx_runtime import OnnxEmbedder, RuntimeRecord

PROBE_IMAGES = 8
OPSET = 17


def probe_batch(size: int, n: int = PROBE_IMAGES, seed: int = 0) -> npt.NDArray[np.uint8]:
    """Seeded pictures with smooth colour fields, edges and noise (uint8 NHWC): what a photo has, and no file."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    out = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        a, b, c = rng.uniform(0, 6, 3)
        field = np.stack([np.sin(a * xx + b * yy + k + c) for k in range(3)], -1)
        field += (xx[..., None] > rng.uniform(0.2, 0.8)) * 0.8 + rng.normal(0, 0.15, (size, size, 3))
        out[i] = np.clip(127.5 + 70 * field, 0, 255).astype(np.uint8)
    return out


def export_runtime(model_path: Path, graph_path: Path, record_path: Path) -> RuntimeRecord:
    """Export `model_path`'s model to `graph_path` and check it; the record says how close it came to torch.

    The graph is written only when the check accepts it; the record is written either way (a rejected export is
    not tried again for the same weights until the record is removed).
    """
    card = load_card(model_path)
    fingerprint = model_fingerprint(model_path)
    model = load_model(model_path).eval().to("cpu")
    probe = probe_batch(card.input_size)
    with torch.inference_mode():
        expected = model(model.normalize_uint8(torch.from_numpy(probe))).float().numpy()
    example = torch.zeros(2, 3, card.input_size, card.input_size)
    record = RuntimeRecord(fingerprint, float("inf"), 0.0, len(probe))

    def write_graph(path: Path) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
            torch.onnx.export(
                model, (example,), str(path), input_names=["images"], output_names=["embeddings"],
                dynamic_axes={"images": {0: "batch"}, "embeddings": {0: "batch"}}, opset_version=OPSET,
                dynamo=False,
            )  # fmt: skip
        got = OnnxEmbedder(path, card, threads=2).embed_arrays(probe)
        diff = float(np.abs(got - expected).max())
        agree = float((np.sign(got) == np.sign(expected)).mean())
        nonlocal record
        record = RuntimeRecord(fingerprint, diff, agree, len(probe))
        if not record.accepted:
            raise _Rejected

    with contextlib.suppress(_Rejected):
        atomic_write(graph_path, write_graph)
    atomic_write(record_path, lambda path: path.write_text(record.to_json(), encoding="utf-8"))
    return record


class _Rejected(Exception):
    """The exported graph disagreed with torch: it is not kept."""


def export_beside(model_path: Path) -> str:
    """Export a just-saved model's runtime file beside it (what the explorer then runs, without torch); one line
    saying what came of it. Never raises: a model without its runtime file still works, through torch."""
    from trainer.onnx_runtime import onnx_paths_beside

    try:
        record = export_runtime(model_path, *onnx_paths_beside(model_path))
    except Exception as exc:
        return f"no ONNX runtime file ({' '.join(str(exc).split())[:160]}); the explorer will use torch for it"
    if not record.accepted:
        return f"the ONNX export differed from torch by {record.max_abs_diff:.2g}: not kept, torch runs this model"
    return f"ONNX runtime file written beside the model (max difference to torch {record.max_abs_diff:.1g})"


def main(argv: list[str] | None = None) -> int:
    """`python -m trainer.onnx_export MODEL GRAPH RECORD`: the export in a process of its own (the explorer's
    process then never loads torch, and the exporter's memory is returned when it ends)."""
    import sys

    model, graph, record = (Path(a) for a in (argv if argv is not None else sys.argv[1:]))
    return 0 if export_runtime(model, graph, record).accepted else 1


if __name__ == "__main__":
    raise SystemExit(main())
