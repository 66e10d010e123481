"""The ONNX Runtime file: exported from the one model definition, checked against torch, used only for its weights."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file, save_file

from trainer.card import model_fingerprint, model_paths
from trainer.inference import BatchEmbedder
from trainer.model import load_model, save_model
from trainer.onnx_export import export_beside, probe_batch
from trainer.onnx_runtime import NOT_EXPORTED, RuntimeRecord, load_onnx_embedder, onnx_paths_beside
from trainer.paths import BUNDLED_MODEL


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled weights at a 64 px input contract, with its runtime file exported beside it."""
    model = load_model(BUNDLED_MODEL)
    card = dataclasses.replace(model.card, name="onnx-test", input_size=64, resize_size=72)
    weights, _ = save_model(model, tmp_path_factory.mktemp("onnx") / "small", card)
    path = weights.with_suffix("")
    assert "written beside the model" in export_beside(path)
    return path


def test_the_runtime_embeds_as_torch_does_float_and_binary(small: Path) -> None:
    card = load_model(small).card
    fast, why = load_onnx_embedder(small, card, model_fingerprint(small), cache=None)
    assert fast is not None, why
    images = probe_batch(64, n=6, seed=7)  # not the probe the export was checked on
    got = fast.embed_arrays(images)
    expected = BatchEmbedder(load_model(small), "cpu").embed_arrays(images)
    assert got.shape == expected.shape == (6, card.dim)
    assert np.abs(got - expected).max() < 1e-3
    assert (np.sign(got) == np.sign(expected)).mean() > 0.999
    record = RuntimeRecord.read(onnx_paths_beside(small)[1])
    assert record.accepted and record.fingerprint == model_fingerprint(small)


def test_a_runtime_file_from_other_weights_is_refused_with_the_reason(small: Path, tmp_path: Path) -> None:
    """A model retrained (or its weights replaced) after its export must not be searched with the old graph."""
    weights, card_path = model_paths(small)
    tensors = load_file(str(weights))
    name = next(k for k in tensors if k.startswith("embedding"))
    tensors[name] = tensors[name] * 0.5
    other = tmp_path / "other"
    save_file(tensors, str(other.with_suffix(".safetensors")))
    other.with_suffix(".json").write_text(card_path.read_text())
    for src, dst in zip(onnx_paths_beside(small), onnx_paths_beside(other), strict=True):
        dst.write_bytes(src.read_bytes())
    fast, why = load_onnx_embedder(other, load_model(other).card, model_fingerprint(other), cache=None)
    assert fast is None and "other weights" in why


def test_no_file_and_a_damaged_file_say_so(small: Path, tmp_path: Path) -> None:
    weights, card_path = model_paths(small)
    bare = tmp_path / "bare"
    bare.with_suffix(".safetensors").write_bytes(weights.read_bytes())
    bare.with_suffix(".json").write_text(card_path.read_text())
    card = load_model(bare).card
    assert load_onnx_embedder(bare, card, model_fingerprint(bare), cache=None) == (None, NOT_EXPORTED)
    graph, record = onnx_paths_beside(bare)
    graph.write_bytes(b"not an onnx graph")
    record.write_text(onnx_paths_beside(small)[1].read_text())
    fast, why = load_onnx_embedder(bare, card, model_fingerprint(bare), cache=None)
    assert fast is None and "cannot be loaded by ONNX Runtime" in why


def test_the_int8_variant_keeps_the_stem_and_the_embedding_layer_in_float_and_runs(small: Path, tmp_path: Path) -> None:
    """bench/int8_recall.py measures whether it may be used; here: it is made as documented, and it runs."""
    import onnx

    from trainer.onnx_quantize import kept_in_float, quantize_int8

    card = load_model(small).card
    graph = onnx_paths_beside(small)[0]
    assert kept_in_float(graph) == ["/backbone/conv_stem/Conv", "/embedding/MatMul"]
    out = tmp_path / "int8.onnx"
    quantize_int8(graph, out, probe_batch(64, n=16, seed=3), card)
    nodes = onnx.load(str(out)).graph.node
    assert sum(n.op_type == "QuantizeLinear" for n in nodes) > 10  # the backbone is quantized...
    fed_by = {o: n for n in nodes for o in n.output}
    matmul = next(n for n in nodes if n.name == "/embedding/MatMul")
    weight = matmul.input[1]
    assert weight not in fed_by or fed_by[weight].op_type != "DequantizeLinear"  # ...the embedding weights are not
    from trainer.onnx_runtime import OnnxEmbedder

    got = OnnxEmbedder(out, card, threads=1).embed_arrays(probe_batch(64, n=4, seed=9))
    assert got.shape == (4, card.dim) and np.isfinite(got).all()
