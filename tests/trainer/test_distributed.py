"""Training on two processes (gloo, CPU): the same weights as one process with the same global batch, each
process its own classes, rank 0 alone writing, and an interrupted run resuming at the exact batch.

The processes are forked from the test (so a test's own functions run in them, and `cancel` can be a closure),
each joins a gloo process group on a free local port, as torchrun's processes would (trainer.distributed). The
data and settings are test_fit's: 64 px crops, the last backbone stage training, no trunk cache (refused with
several processes).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from imagegen import make_labelled_folder
from safetensors.torch import load_file

import trainer.checkpoint_file as checkpoint_file
from trainer.card import load_card, model_paths
from trainer.cli import EXIT_USAGE, main
from trainer.config import FitConfig
from trainer.data import LabelledFolder, scan_labelled_folder
from trainer.distributed import distributed_problem, process_group, shared_classes_per_batch
from trainer.fit import FitCallbacks, FitError, fit
from trainer.progress import Cancelled
from trainer.samplers import ClassBalancedSampler, DistributedClassBalancedSampler

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CLASSES, PER_CLASS = 4, 8
ATOL = 2e-5
"""Two processes add each weight's gradient from two halves of the batch and a one-process run from the whole
batch, and oneDNN may pick other convolution kernels for 4 images than for 8: float32 rounding (~1e-7 relative)
that two epochs of momentum SGD carry along. Measured on this machine: 3e-8 (NormSoftmax), 1.5e-8 (multi-similarity)
on weights that training moves by 0.1; a sampler giving both processes the same classes moved them by 0.1, a
multi-similarity loss over each process's share alone by 2.5e-3. 2e-5 leaves room for other CPUs' kernels."""


@pytest.fixture(scope="module")
def train_folder(tmp_path_factory: pytest.TempPathFactory) -> LabelledFolder:
    return scan_labelled_folder(make_labelled_folder(tmp_path_factory.mktemp("ddp") / "train", CLASSES, PER_CLASS))


def config(**overrides: Any) -> FitConfig:
    base: dict[str, Any] = dict(
        dim=64, epochs=2, warmup_epochs=1, classes_per_batch=4, per_class=2, batches_per_epoch=3, lr=0.05,
        trainable_stages=1, cache_trunk=False, crop_size=64, num_workers=0, device="cpu",
    )  # fmt: skip
    base.update(overrides)
    return FitConfig(**base)


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(model_paths(path)[0]))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _rank_main(work: Callable[[int], None], rank: int, size: int, port: int) -> None:
    os.environ.update(
        RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(size), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    torch.set_num_threads(1)
    with process_group("cpu"):
        work(rank)


def on_ranks(size: int, work: Callable[[int], None], timeout: float = 180) -> list[int]:
    """Run `work(rank)` on `size` forked processes of one gloo group; their exit codes (0: returned)."""
    context = multiprocessing.get_context("fork")
    port = free_port()
    processes = [context.Process(target=_rank_main, args=(work, r, size, port)) for r in range(size)]
    for p in processes:
        p.start()
    for p in processes:
        p.join(timeout)
    for p in processes:
        if p.is_alive():  # a process stuck at a collective the other never reached
            p.kill()
            p.join()
    return [p.exitcode if p.exitcode is not None else -9 for p in processes]


def distributed_fit(
    folder: LabelledFolder, out: Path, cfg: FitConfig, size: int = 2, stop_after: int | None = None
) -> list[dict[str, Any]]:
    """`fit` on `size` processes; what each rank saw (steps, whether it was cancelled, its result's path)."""

    def work(rank: int) -> None:
        steps: list[int] = []
        record: dict[str, Any] = {"rank": rank, "cancelled": False}
        callbacks = FitCallbacks(on_batch=lambda step, *_: steps.append(step))
        # Only rank 0 asks to stop: the others must stop at the same step anyway, or they would wait forever.
        cancel = (lambda: rank == 0 and len(steps) >= stop_after) if stop_after else (lambda: False)
        try:
            result = fit(folder, out, cfg, callbacks=callbacks, cancel=cancel)
            record.update(path=str(result.model_path), resumed_from=result.resumed_from_step)
        except Cancelled:
            record["cancelled"] = True
        record["steps"] = steps
        out.parent.joinpath(f"{out.name}.rank{rank}.json").write_text(json.dumps(record))

    codes = on_ranks(size, work)
    assert codes == [0] * size, f"rank exit codes {codes}"
    return [json.loads(out.parent.joinpath(f"{out.name}.rank{r}.json").read_text()) for r in range(size)]


def largest_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a if a[k].is_floating_point())


# -- the sampler -----------------------------------------------------------------------------------------

LABELS = [c for c, n in enumerate([5, 3, 8, 1, 4, 6, 2, 7]) for _ in range(n)]


def shares(size: int, epoch: int, classes: int = 4, per_class: int = 3, seed: int = 7) -> list[list[list[int]]]:
    """Each rank's batches of `epoch`, by rank."""
    out = []
    for rank in range(size):
        sampler = DistributedClassBalancedSampler(LABELS, classes, per_class, 5, seed=seed, rank=rank, world_size=size)
        sampler.set_epoch(epoch)
        out.append(list(sampler))
    return out


def test_one_process_draws_the_batches_of_the_class_balanced_sampler() -> None:
    for epoch in range(3):
        single = ClassBalancedSampler(LABELS, 4, 3, 5, seed=7)
        single.set_epoch(epoch)
        assert shares(1, epoch) == [list(single)]


@pytest.mark.parametrize("size", [2, 4])
def test_each_rank_gets_its_own_classes_and_together_they_are_the_global_batch(size: int) -> None:
    labels = np.array(LABELS)
    for epoch in range(3):
        single = ClassBalancedSampler(LABELS, 4, 3, 5, seed=7)
        single.set_epoch(epoch)
        by_rank = shares(size, epoch)
        for b, whole in enumerate(single):
            parts = [by_rank[r][b] for r in range(size)]
            assert [i for part in parts for i in part] == whole  # the global batch, in its order
            assert all(len(part) == 4 // size * 3 for part in parts)
            classes = [set(labels[part].tolist()) for part in parts]
            assert all(len(c) == 4 // size for c in classes)
            assert all(not classes[r] & classes[s] for r in range(size) for s in range(r + 1, size))


def test_shares_are_deterministic_and_change_with_the_epoch_and_seed() -> None:
    assert shares(2, 1) == shares(2, 1)
    assert shares(2, 1) != shares(2, 2)
    assert shares(2, 1) != shares(2, 1, seed=8)


def test_a_resumed_sampler_continues_at_the_exact_batch() -> None:
    """No state but (seed, epoch): a new sampler (a resumed run) gives the same batches from any point on."""
    first = DistributedClassBalancedSampler(LABELS, 4, 3, 5, seed=7, rank=1, world_size=2)
    first.set_epoch(2)
    again = DistributedClassBalancedSampler(LABELS, 4, 3, 5, seed=7, rank=1, world_size=2)
    again.set_epoch(2)
    assert list(first)[3:] == list(again)[3:]
    assert first.first_position == 6 and len(first) == 5


def test_classes_that_cannot_be_shared_equally_are_refused() -> None:
    with pytest.raises(ValueError, match="multiple of 2"):
        DistributedClassBalancedSampler(LABELS, 3, 2, world_size=2)
    with pytest.raises(ValueError, match="rank"):
        DistributedClassBalancedSampler(LABELS, 4, 2, rank=2, world_size=2)


# -- what can run on several processes ------------------------------------------------------------------


def test_problems_are_one_sentence_each_saying_what_to_do() -> None:
    assert distributed_problem(config(), 1) is None and distributed_problem(config(), 2) is None
    assert "without --nproc" in str(distributed_problem(config(cache_trunk=True), 2))
    assert "--update-batchnorm" in str(distributed_problem(config(freeze_batchnorm=False), 2))
    assert "--nproc 4 or fewer" in str(distributed_problem(config(classes_per_batch=4), 8))
    assert "--classes-per-batch 4" in str(distributed_problem(config(classes_per_batch=5), 2))
    assert shared_classes_per_batch(25, 2) == 24


def refused_everywhere(make_config: Callable[[int], FitConfig], folder: LabelledFolder, out: Path, says: str) -> None:
    """`fit` with rank r's config `make_config(r)` raises FitError saying `says` on both ranks (none waits forever)."""

    def work(rank: int) -> None:
        try:
            fit(folder, out, make_config(rank))
        except FitError as exc:
            sys.exit(3 if says in str(exc) else 4)

    assert on_ranks(2, work) == [3, 3]


def test_fit_refuses_a_run_that_cannot_be_shared(train_folder: LabelledFolder, tmp_path: Path) -> None:
    refused_everywhere(lambda _rank: config(cache_trunk=True), train_folder, tmp_path / "m", "without --nproc")


def test_processes_with_other_settings_refuse_together(train_folder: LabelledFolder, tmp_path: Path) -> None:
    """Machines given other folders or commands would train apart (or wait for each other forever)."""
    refused_everywhere(lambda rank: config(seed=rank), train_folder, tmp_path / "m", "the same folder and command")


# -- training -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def single_run(train_folder: LabelledFolder, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fit(train_folder, tmp_path_factory.mktemp("single") / "m", config()).model_path


@pytest.fixture(scope="module")
def two_process_run(
    train_folder: LabelledFolder, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, list[dict[str, Any]]]:
    out = tmp_path_factory.mktemp("two") / "m"
    return out, distributed_fit(train_folder, out, config())


def test_two_processes_train_the_weights_of_one_with_the_same_global_batch(
    train_folder: LabelledFolder, tmp_path: Path, single_run: Path, two_process_run: tuple[Path, list[dict[str, Any]]]
) -> None:
    out, records = two_process_run
    start = fit(train_folder, tmp_path / "start", config(epochs=0)).model_path
    one, two = weights(single_run), weights(out)
    moved = largest_difference(one, weights(start))
    difference = largest_difference(one, two)
    print(f"largest weight difference, 1 vs 2 processes: {difference:.3g} (training moved them by {moved:.3g})")
    assert moved > 0.05  # training did change the weights (the warm-up epoch and the last stage's)
    assert difference < ATOL
    assert [r["steps"] for r in records] == [[1, 2, 3, 4, 5, 6]] * 2
    assert all(r["path"] == str(model_paths(out)[0]) for r in records)


def test_only_rank_0_writes(two_process_run: tuple[Path, list[dict[str, Any]]]) -> None:
    out, _ = two_process_run
    run = out.with_name(out.name + ".run")
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint.prev.pt", "checkpoint.pt"]
    assert model_paths(out)[0].exists() and model_paths(out)[1].exists()
    state = checkpoint_file.read_checked(run / "checkpoint.pt")
    assert (state["global_step"], state["epoch"]) == (6, 2)
    # Rank 0's history: the loss of the global batch every epoch (the other ranks keep no record of their own).
    assert [h["epoch"] for h in json.loads(state["history"])] == [1, 2]
    assert load_card(out).recipe["processes"] == 2


def test_a_pair_based_loss_sees_the_pairs_across_processes(train_folder: LabelledFolder, tmp_path: Path) -> None:
    """Multi-similarity mines pairs across the whole batch: a loss over each share alone would miss the pairs
    between the processes' classes and train other weights."""
    cfg = config(method="multisimilarity", epochs=1, warmup_epochs=0)
    one = weights(fit(train_folder, tmp_path / "one", cfg).model_path)
    distributed_fit(train_folder, tmp_path / "two", cfg)
    difference = largest_difference(one, weights(tmp_path / "two"))
    print(f"largest weight difference, 1 vs 2 processes, multi-similarity: {difference:.3g}")
    assert difference < ATOL


def test_an_interrupted_run_resumes_at_the_exact_batch_with_the_same_weights(
    train_folder: LabelledFolder, tmp_path: Path, two_process_run: tuple[Path, list[dict[str, Any]]]
) -> None:
    out = tmp_path / "m"
    stopped = distributed_fit(train_folder, out, config(), stop_after=4)
    assert [(r["cancelled"], r["steps"]) for r in stopped] == [(True, [1, 2, 3, 4])] * 2  # rank 1 stopped too
    state = checkpoint_file.read_checked(out.with_name(out.name + ".run") / "checkpoint.pt")
    assert (state["global_step"], state["epoch"], state["step_in_epoch"]) == (4, 1, 1)
    assert not model_paths(out)[0].exists()

    resumed = distributed_fit(train_folder, out, config())
    assert [(r["resumed_from"], r["steps"]) for r in resumed] == [(4, [5, 6])] * 2
    expected, got = weights(two_process_run[0]), weights(out)
    assert largest_difference(expected, got) == 0.0  # the same processes doing the same sums: to the bit


def test_a_one_process_checkpoint_resumes_on_two_processes(
    train_folder: LabelledFolder, tmp_path: Path, single_run: Path
) -> None:
    """The global batch does not depend on the number of processes, so neither does a checkpoint: a run stopped on
    one process and finished on two ends where the one-process run ends."""
    out = tmp_path / "m"
    steps: list[int] = []
    callbacks = FitCallbacks(on_batch=lambda step, *_: steps.append(step))
    with pytest.raises(Cancelled):
        fit(train_folder, out, config(), callbacks=callbacks, cancel=lambda: len(steps) >= 4)
    resumed = distributed_fit(train_folder, out, config())
    assert [(r["resumed_from"], r["steps"]) for r in resumed] == [(4, [5, 6])] * 2
    difference = largest_difference(weights(single_run), weights(out))
    print(f"largest weight difference, 1 process vs 1 resumed on 2: {difference:.3g}")
    assert difference < ATOL


# -- the command line -----------------------------------------------------------------------------------


def test_fit_help_shows_nproc_and_its_default(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["fit", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--nproc NPROC" in text and "each with its own classes of every batch" in text
    assert "counts instead) (default: 1)" in text


CLI_FIT = [
    "--trainable-stages", "1", "--crop-size", "64", "--epochs", "1", "--warmup-epochs", "0",
    "--batches-per-epoch", "2", "--per-class", "2", "--split", "none", "--keep-last", "--dim", "64",
    "--device", "cpu", "--workers", "0",
]  # fmt: skip


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        (["--nproc", "5"], "need at least 5 classes per batch, one each, and this run has 4; use --nproc 4"),
        (["--nproc", "2", "--classes-per-batch", "3"], "pass --classes-per-batch 2 (a multiple of 2)"),
        (["--nproc", "2", "--cache-trunk"], "run it without --nproc or torchrun"),
        (["--nproc", "0"], "must be at least 1"),
    ],
)
def test_a_run_that_cannot_be_shared_gets_one_sentence(
    train_folder: LabelledFolder, tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], says: str
) -> None:
    code = main(["fit", str(train_folder.root), "--out", str(tmp_path / "m"), *CLI_FIT, *extra])
    err = capsys.readouterr().err
    assert code == EXIT_USAGE
    assert f"trainer: cannot train on {extra[1]} processes:" in err and says in err
    assert not (tmp_path / "m.run").exists()  # refused before anything started


def test_fit_nproc_launches_the_processes_through_torchrun(train_folder: LabelledFolder, tmp_path: Path) -> None:
    out = tmp_path / "m"
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "OMP_NUM_THREADS": "1"}
    argv = [sys.executable, "-m", "trainer.cli", "fit", str(train_folder.root), "--out", str(out), *CLI_FIT]
    done = subprocess.run([*argv, "--nproc", "2"], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("wrote ") == 1  # rank 0 alone reports
    assert done.stderr.count("trainer: recipe:") == 1
    assert model_paths(out)[0].exists()
    state = checkpoint_file.read_checked(out.with_name(out.name + ".run") / "checkpoint.pt")
    assert state["global_step"] == 2
