"""An int8 variant of a model's ONNX Runtime file: static quantization, calibrated on real pictures. torch-free.

Weights per channel and activations per tensor in int8 (QDQ, symmetric: on 200 car pictures the embeddings kept a
mean cosine of 0.92 to fp32 against 0.74 with unsigned activations, 0.73 with reduced range, 0.83 with percentile
and 0.74 with entropy calibration), calibrated on decoded pictures of the kind the model
will see (the training images of a fine-tuned model; for the bundled model, the training halves of the shared data
sets). The stem convolution and the embedding layer stay in float: the first sees raw pixels, the last writes the
embedding whose signs are the binary code. Whether the variant may be used is measured, not assumed
(bench/int8_recall.py).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from trainer.onnx_runtime import normalised

if TYPE_CHECKING:
    from trainer.card import ModelCard


def kept_in_float(graph: Path) -> list[str]:
    """Names of the first convolution and of the last matrix product (the embedding layer)."""
    import onnx

    nodes = onnx.load(str(graph), load_external_data=False).graph.node
    first_conv = next((n.name for n in nodes if n.op_type == "Conv"), None)
    last_product = next((n.name for n in reversed(nodes) if n.op_type in ("Gemm", "MatMul")), None)
    return [name for name in (first_conv, last_product) if name]


def quantize_int8(graph: Path, out: Path, calibration: npt.NDArray[np.uint8], card: ModelCard, batch: int = 16) -> None:
    """Write the int8 variant of `graph` to `out`, calibrated on `calibration` (uint8 NHWC pictures)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches: Iterator[dict[str, Any]] = (
                {"images": normalised(calibration[i : i + batch], card)} for i in range(0, len(calibration), batch)
            )

        def get_next(self) -> dict[str, Any] | None:
            return next(self.batches, None)

    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(graph), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
            nodes_to_exclude=kept_in_float(prepared), extra_options={"ActivationSymmetric": True},
        )  # fmt: skip
