"""Training on several processes (GPUs or machines): the process group, what ranks share, and the local launch.

`trainer fit` runs under `torchrun --nproc-per-node N -m trainer.cli fit ...`, or `trainer fit --nproc N ...`, which
starts the same thing through `torch.distributed.run` on this machine (one code path for both). Each process
trains on its own classes of the global C x S batch (trainer.samplers.DistributedClassBalancedSampler) and the
run is meant to be the run on one process with that global batch, to rounding:

* the loss is the global batch's: each process gathers every process's embeddings and labels and computes the
  loss of the whole batch (`World.gather_batch`). A mean over each process's share averaged over processes
  would equal it only for per-image losses with equal shares; pair-based losses (triplet, multi-similarity),
  DAS and the intra-batch network look across the whole batch, and gathering gives them the pairs that cross
  processes. The loss is computed N times, which costs nothing next to the backbone.
* gradients are averaged over processes after the backward pass (`World.average_gradients`), before clipping,
  so every process clips the same global gradient and takes the same step. This is the arithmetic of
  DistributedDataParallel without its wrapper: the trainer runs the backbone stage by stage (a frozen trunk,
  a warm-up that runs the backbone without a graph), which DDP's reducer only follows with
  find_unused_parameters and a forward through the wrapper; an explicit all-reduce of one flat buffer does
  the same sums and cannot go out of step. What it gives up is overlapping communication with the backward
  pass, which for EfficientNet-Lite's 4-5 M parameters is a few milliseconds a step.
* batch-norm statistics stay frozen (the default, `freeze_batchnorm`): in eval mode batch norm does not look at
  the batch, so a share gives the same outputs as the global batch. Re-estimating them would use each
  process's share alone, and SyncBatchNorm, which would share them, refuses CPU tensors in this torch; so
  `--update-batchnorm` is refused with several processes (it also measured worse: trainer.fit says why).
* rank 0 alone evaluates, chooses the epoch, writes checkpoints and exports the model; it reads the checkpoint
  it resumes from and sends it to the others, so every process resumes from the same one (other machines need
  no shared disk to resume). Stopping is agreed on at every step, so all processes stop at the same batch.

Backbone features cached once (`cache_trunk`: the recipe of small folders, trainer.recipe.head_only_below, which
changes only the embedding layer) are refused with several processes: such a run is seconds to a few
minutes on one process, and N processes would each compute and hold the same cache.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from trainer.config import FitConfig

WAIT = timedelta(hours=2)
"""How long a process waits for the others at a collective: rank 0 evaluates and exports alone meanwhile."""


class _GatherWithOwnGradient(torch.autograd.Function):
    """All processes' rows in rank order; backward keeps this process's rows' gradient (times N).

    Every process computes the same loss on the same gathered rows, so the gradient of its own rows is already
    the global one here: nothing to send back. It is scaled by N because `average_gradients` divides by N, which
    leaves the loss's own parameters (proxies, computed identically everywhere) at their value and sums the
    model's gradients over the shares.
    """

    @staticmethod
    def forward(ctx: Any, rows: torch.Tensor, rank: int, size: int) -> torch.Tensor:
        ctx.rank, ctx.size, ctx.rows = rank, size, rows.shape[0]
        parts = [torch.empty_like(rows) for _ in range(size)]
        dist.all_gather(parts, rows.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx: Any, *grads: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        start = ctx.rank * ctx.rows
        return grads[0][start : start + ctx.rows] * ctx.size, None, None


@dataclass(frozen=True)
class World:
    """This process's place among the training processes; one process (the default) makes every call a no-op."""

    rank: int = 0
    size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    """Where collectives' tensors live: NCCL moves only CUDA tensors."""

    @property
    def is_main(self) -> bool:
        """Rank 0: it evaluates, prints, writes checkpoints and exports."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def any(self, flag: bool) -> bool:
        """True on every process if it is true on one (a stop asked for anywhere stops all at the same step)."""
        if not self.distributed:
            return flag
        t = torch.tensor([int(flag)], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def agree(self, text: str) -> bool:
        """Whether every process holds rank 0's `text` (the same answer on all of them)."""
        if not self.distributed:
            return True
        mine = text.encode()
        return not self.any(self.bytes_from_main(mine) != mine)

    def gather_batch(self, embeddings: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The global batch's embeddings (gradient flowing to this process's rows) and labels, in rank order."""
        if not self.distributed:
            return embeddings, labels
        gathered: torch.Tensor = _GatherWithOwnGradient.apply(embeddings, self.rank, self.size)
        parts = [torch.empty_like(labels) for _ in range(self.size)]
        dist.all_gather(parts, labels.contiguous())
        return gathered, torch.cat(parts)

    def average_gradients(self, params: Sequence[nn.Parameter]) -> None:
        """Every gradient becomes its mean over the processes: one all-reduce of one flat buffer per dtype."""
        if not self.distributed:
            return
        by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
        for p in params:
            if p.grad is not None:
                by_dtype.setdefault(p.grad.dtype, []).append(p.grad)
        for grads in by_dtype.values():
            flat = torch.cat([g.reshape(-1) for g in grads])
            dist.all_reduce(flat)
            flat /= self.size
            offset = 0
            for g in grads:
                g.copy_(flat[offset : offset + g.numel()].view_as(g))
                offset += g.numel()

    def broadcast_state(self, module: nn.Module) -> None:
        """Rank 0's parameters and buffers everywhere (the same start whatever rounding each machine did)."""
        if not self.distributed:
            return
        with torch.no_grad():
            for t in [*module.parameters(), *module.buffers()]:
                dist.broadcast(t.data, src=0)

    def bytes_from_main(self, data: bytes | None) -> bytes | None:
        """Rank 0's `data` (None: it has none) on every process; the others pass anything."""
        if not self.distributed:
            return data
        size = torch.tensor([-1 if data is None or not self.is_main else len(data)], device=self.device)
        dist.broadcast(size, src=0)
        n = int(size.item())
        if n < 0:
            return None
        buffer = (
            torch.frombuffer(bytearray(data), dtype=torch.uint8).to(self.device)
            if self.is_main and data
            else torch.empty(n, dtype=torch.uint8, device=self.device)
        )
        if n:
            dist.broadcast(buffer, src=0)
        return bytes(buffer.cpu().numpy().tobytes())


def current_world(device: torch.device) -> World:
    """The process group this process belongs to, if one was started (`process_group`), else one process."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return World(dist.get_rank(), dist.get_world_size(), device)
    return World(device=device)


def launched_size() -> int:
    """The number of processes torchrun (or `trainer fit --nproc`) started this one among; 1 when run alone."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def launched_rank() -> int:
    return int(os.environ.get("RANK", "0"))


@contextlib.contextmanager
def process_group(device_type: str) -> Iterator[None]:
    """Join the processes torchrun started (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT, LOCAL_RANK from the
    environment): NCCL on CUDA, each process on the GPU of its LOCAL_RANK; gloo on the CPU. One process: nothing."""
    if launched_size() <= 1:
        yield
        return
    cuda = device_type == "cuda"
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))  # "cuda" now means this process's GPU
    dist.init_process_group("nccl" if cuda else "gloo", timeout=WAIT)
    try:
        yield
    finally:
        dist.destroy_process_group()


def distributed_problem(config: FitConfig, world_size: int) -> str | None:
    """Why this run cannot be shared by `world_size` processes, with what to do; None if it can.

    `config.classes_per_batch` must already be what the run uses (at most the number of classes).
    """
    if world_size < 1:
        return f"the number of processes must be at least 1, not {world_size}"
    if world_size == 1:
        return None
    if config.cache_trunk:
        return (
            "this run trains on backbone features cached once (the recipe of small folders, or --cache-trunk), which "
            "takes one process seconds to minutes; run it without --nproc or torchrun"
        )
    if not config.freeze_batchnorm:
        return (
            "with several processes each would re-estimate batch-norm statistics on its own share of the batch; "
            "leave out --update-batchnorm or train on one process"
        )
    c = config.classes_per_batch
    if c < world_size:
        return (
            f"{world_size} processes need at least {world_size} classes per batch, one each, and this run has {c}; "
            f"use --nproc {max(1, c)} or fewer, or a folder with more classes"
        )
    if c % world_size:
        return (
            f"{c} classes per batch cannot be shared equally by {world_size} processes; pass --classes-per-batch "
            f"{c - c % world_size} (a multiple of {world_size}) or another --nproc"
        )
    return None


def shared_classes_per_batch(classes_per_batch: int, world_size: int) -> int:
    """The recipe's classes per batch rounded down to a multiple of the process count (at least one class each).

    >>> shared_classes_per_batch(25, 2), shared_classes_per_batch(25, 4), shared_classes_per_batch(3, 4)
    (24, 24, 3)
    """
    shared = classes_per_batch - classes_per_batch % world_size
    return shared if shared >= world_size else classes_per_batch


def launch_local(nproc: int, argv: Sequence[str]) -> int:
    """Run `python -m trainer.cli <argv>` on `nproc` processes of this machine through torch.distributed.run, as
    `torchrun --standalone --nproc-per-node nproc -m trainer.cli <argv>` would; the first failing exit code."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    args = get_args_parser().parse_args(
        ["--standalone", "--nproc-per-node", str(nproc), "--max-restarts", "0", "-m", "trainer.cli"]
    )
    args.training_script_args = list(argv)  # not parsed by torchrun's parser, which takes --nproc for its own
    try:
        run(args)
    except ChildFailedError as exc:
        codes = [f.exitcode for f in exc.failures.values() if f.exitcode]
        return codes[0] if codes and codes[0] > 0 else 1
    except SignalException:  # Ctrl-C or a scheduler's SIGTERM: the agent stopped the processes
        raise KeyboardInterrupt from None
    finally:
        sys.stdout.flush()
    return 0
