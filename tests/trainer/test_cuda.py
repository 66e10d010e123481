"""The CUDA path, on a real GPU: bf16 autocast + channels_last training, checkpoints, the embedder, the wizard's job.

Every test here is marked `gpu` and skips where no CUDA device is present (CI, laptops): `pytest -m gpu` runs
them on a GPU machine, and `bench/gpu_run.py` does that as its first step. The data are generated 64 px
pictures, so each test takes seconds; what they check is the device path, not what a long run learns.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from imagegen import make_image, make_labelled_folder
from safetensors.torch import load_file

import trainer.fit as fit_module
from trainer.card import model_paths
from trainer.data import LabelledFolder, scan_labelled_folder
from trainer.fit import FitCallbacks, FitConfig, fit
from trainer.inference import BatchEmbedder, embed_all
from trainer.model import load_model
from trainer.progress import Cancelled

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (run with pytest -m gpu there)"),
]

PROJECT_ROOT = Path(__file__).resolve().parents[2]
BUNDLED_MODEL = PROJECT_ROOT / "resources" / "models" / "default"


@pytest.fixture(scope="module")
def train_folder(tmp_path_factory: pytest.TempPathFactory) -> LabelledFolder:
    return scan_labelled_folder(make_labelled_folder(tmp_path_factory.mktemp("cuda") / "train", 4, 8))


@pytest.fixture(scope="module")
def test_folder(tmp_path_factory: pytest.TempPathFactory) -> LabelledFolder:
    return scan_labelled_folder(make_labelled_folder(tmp_path_factory.mktemp("cuda") / "test", 4, 4, offset=4))


def gpu_config(**overrides: Any) -> FitConfig:
    """The whole backbone trains (the GPU default), at 64 px, through the data loader's worker processes."""
    base: dict[str, Any] = dict(
        dim=64, epochs=3, warmup_epochs=0, classes_per_batch=4, per_class=4, batches_per_epoch=6, lr=0.01,
        trainable_stages=None, cache_trunk=False, crop_size=64, num_workers=2, device="cuda",
    )  # fmt: skip
    base.update(overrides)
    return FitConfig(**base)


def flat(path: Path) -> torch.Tensor:
    """Every floating-point weight of an exported model, as one float64 vector."""
    state = load_file(str(model_paths(path)[0]))
    return torch.cat([state[k].double().flatten() for k in sorted(state) if state[k].is_floating_point()])


def cancel_after(folder: LabelledFolder, out: Path, config: FitConfig, steps: int) -> None:
    """Start a run and cancel it after `steps` steps: its checkpoint is on disk."""
    done: list[int] = []
    with pytest.raises(Cancelled):
        fit(
            folder, out, config, callbacks=FitCallbacks(on_batch=lambda s, e, loss, lr: done.append(s)),
            cancel=lambda: len(done) >= steps,
        )  # fmt: skip


@contextlib.contextmanager
def full_precision() -> Iterator[None]:
    """float32 on the GPU: no autocast, no TF32 in convolutions and matrix products."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def test_bf16_channels_last_training_lowers_the_loss_like_a_float32_run(
    train_folder: LabelledFolder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, Any] = {}
    real_embed = fit_module._Trainer._embed_batch

    def spy_embed(self: Any, batch: torch.Tensor, from_cache: bool, warm: bool) -> torch.Tensor:
        first_conv = next(m for m in self.model.backbone.modules() if isinstance(m, torch.nn.Conv2d))
        seen["channels_last"] = first_conv.weight.is_contiguous(memory_format=torch.channels_last)
        seen["autocast"] = torch.is_autocast_enabled("cuda") and torch.get_autocast_dtype("cuda")
        return real_embed(self, batch, from_cache, warm)

    monkeypatch.setattr(fit_module._Trainer, "_embed_batch", spy_embed)
    losses: dict[str, list[float]] = {"mixed": [], "float32": []}
    start = flat(fit(train_folder, tmp_path / "start", gpu_config(epochs=0)).model_path)
    one_step = gpu_config(epochs=1, batches_per_epoch=1)
    mixed_step = flat(fit(train_folder, tmp_path / "mixed-1", one_step).model_path)
    mixed = fit(
        train_folder, tmp_path / "mixed", gpu_config(),
        callbacks=FitCallbacks(on_batch=lambda s, e, loss, lr: losses["mixed"].append(loss)),
    )  # fmt: skip
    assert seen == {"channels_last": True, "autocast": torch.bfloat16}
    monkeypatch.setattr(fit_module, "autocast_for", lambda device: contextlib.nullcontext())
    with full_precision():
        float_step = flat(fit(train_folder, tmp_path / "float32-1", one_step).model_path)
        reference = fit(
            train_folder, tmp_path / "float32", gpu_config(),
            callbacks=FitCallbacks(on_batch=lambda s, e, loss, lr: losses["float32"].append(loss)),
        )  # fmt: skip
    for curve in losses.values():
        assert len(curve) == 18 and all(np.isfinite(curve))
        assert np.mean(curve[-6:]) < 0.8 * np.mean(curve[:6]), curve
    # One step's update is the (clipped) gradient: bf16 must point where float32 points. Over 18 steps the two
    # trajectories drift apart as any two runs that differ in rounding do (measured on an H100: cosine 0.73).
    first = cosine(mixed_step - start, float_step - start)
    whole = cosine(flat(mixed.model_path) - start, flat(reference.model_path) - start)
    print(f"cosine between the bf16 and float32 weight updates: first step {first:.4f}, 18 steps {whole:.4f}")
    assert first > 0.95
    assert whole > 0.5


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(a @ b / (a.norm() * b.norm()))


def test_a_checkpoint_written_on_the_gpu_resumes_to_the_same_weights(
    train_folder: LabelledFolder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    cfg = gpu_config(epochs=2, batches_per_epoch=4)
    start = flat(fit(train_folder, tmp_path / "start", gpu_config(epochs=0)).model_path)
    reference = flat(fit(train_folder, tmp_path / "reference", cfg).model_path)
    out = tmp_path / "model"
    cancel_after(train_folder, out, cfg, 3)
    result = fit(train_folder, out, cfg)
    assert result.resumed_from_step == 3 and result.card.recipe["device"].startswith("cuda")
    resumed = flat(result.model_path)
    gap = float((resumed - reference).norm() / (reference - start).norm())
    print(f"resumed vs uninterrupted, relative to what training moved: {gap:.2e}")
    assert gap < 1e-2


def test_a_checkpoint_written_on_the_gpu_resumes_on_the_cpu(train_folder: LabelledFolder, tmp_path: Path) -> None:
    cfg = gpu_config(epochs=1, batches_per_epoch=4)
    out = tmp_path / "model"
    cancel_after(train_folder, out, cfg, 2)
    result = fit(train_folder, out, dataclasses.replace(cfg, device="cpu"))
    assert result.resumed_from_step == 2
    assert result.card.recipe["device"] == "cpu" and result.card.recipe["steps"] == 4
    assert all(torch.isfinite(t).all() for t in load_file(str(model_paths(result.model_path)[0])).values())


def test_the_embedder_on_cuda_agrees_with_the_cpu(tmp_path: Path) -> None:
    paths = [make_image(tmp_path / f"{i:03d}.jpg", seed=i, size=(320, 240)) for i in range(96)]
    on_cpu = BatchEmbedder(load_model(BUNDLED_MODEL), "cpu")
    on_gpu = BatchEmbedder(load_model(BUNDLED_MODEL), "cuda")
    assert on_gpu.batch_size >= 128  # the GPU gets batches large enough to keep it busy
    kept_cpu, cpu, _ = embed_all(on_cpu, paths)
    kept_gpu, gpu, _ = embed_all(on_gpu, paths)
    assert kept_cpu == kept_gpu == paths
    cosine = (cpu * gpu).sum(1) / (np.linalg.norm(cpu, axis=1) * np.linalg.norm(gpu, axis=1))
    signs = float(((cpu > 0) == (gpu > 0)).mean())
    print(f"CUDA vs CPU embeddings: cosine min {cosine.min():.5f}, sign bits agreeing {100 * signs:.2f} %")
    assert cosine.min() > 0.999
    assert signs > 0.995


def test_the_wizard_training_job_runs_on_cuda_in_a_thread_is_cancelled_and_resumes(
    train_folder: LabelledFolder, test_folder: LabelledFolder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RETRIEVAL_EXPLORER_DATA", str(tmp_path / "data"))
    from explorer.app import fine_tune
    from explorer.paths import runs_dir

    plan = fine_tune.TrainingPlan(
        train_folder, test_folder, gpu_config(epochs=2, batches_per_epoch=3), None, "efficientnet_lite0",
        runs_dir(),
    )  # fmt: skip
    outcome: dict[str, Any] = {}
    stop = threading.Event()
    steps: list[int] = []

    def on_batch(step: int, _epoch: int, _loss: float, _lr: float) -> None:
        steps.append(step)
        if step == 2:
            stop.set()

    def job() -> None:
        try:
            outcome["result"] = fine_tune.train(plan, FitCallbacks(on_batch=on_batch), stop.is_set)
        except Exception as exc:  # the one error path a worker reports through
            outcome["error"] = exc
        outcome["thread"] = threading.current_thread().name

    for _ in range(2):
        outcome.clear()
        worker = threading.Thread(target=job, name="training-job")
        worker.start()
        worker.join(timeout=300)
        assert not worker.is_alive() and outcome["thread"] == "training-job"
        if "error" in outcome:
            assert isinstance(outcome["error"], Cancelled) and plan.checkpoint.exists()
            stop.clear()
    result = outcome["result"]
    assert steps == [1, 2, 3, 4, 5, 6] and result.resumed_from_step == 2
    assert result.card.recipe["device"].startswith("cuda")
    assert [h["epoch"] for h in result.history] == [0, 1, 2] and all("R@1" in h for h in result.history)
    assert load_model(result.model_path).card.dim == 64
