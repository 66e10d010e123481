"""A run's checkpoint: what it holds, when it may be resumed, and the fall-back to the previous one.

Written atomically every few steps and at every epoch end (the last good one kept as PREVIOUS until the new one is
whole), in trainer.checkpoint_file's checked format, so nothing in it is ever unpickled. A run resumes at the
exact batch where it stopped (the sampler's order depends only on the seed and the epoch), and only a run with
the same settings on the same images and classes resumes it. Under torchrun rank 0 writes and reads; every
process parses the same bytes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from trainer.atomic import atomic_write
from trainer.card import ModelCard
from trainer.checkpoint_file import PREVIOUS, CheckpointError, parse_checked, write_checked
from trainer.config import FitConfig
from trainer.distributed import World
from trainer.epoch_judge import Best
from trainer.fold_choice import FoldChoice
from trainer.model import EmbeddingModel


class CheckpointedRun(Protocol):
    """What of trainer.fit's run a checkpoint saves and restores."""

    config: FitConfig
    model: EmbeddingModel
    objective: nn.Module
    optimizer: torch.optim.Optimizer
    card: ModelCard
    world: World
    run_dir: Path
    history: list[dict[str, float]]
    global_step: int
    skipped_steps: int
    fold_choice: FoldChoice | None
    best: Best | None
    start_scores: dict[str, float]
    cb: Any  # trainer.fit.FitCallbacks

    def data_key(self) -> str: ...


def checkpoint_path(run: CheckpointedRun) -> Path:
    return run.run_dir / "checkpoint.pt"


def save_checkpoint(run: CheckpointedRun, epoch: int, step_in_epoch: int) -> None:
    """The run's state at batch `step_in_epoch` of `epoch` (0-based), written by rank 0 alone."""
    if not run.world.is_main:
        return  # the processes hold the same weights: rank 0's checkpoint is everyone's
    state = {
        "config_key": run.config.key(),
        "data_key": run.data_key(),
        "epoch": epoch,
        "step_in_epoch": step_in_epoch,
        "global_step": run.global_step,
        "model": run.model.state_dict(),
        "objective": run.objective.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "history": json.dumps(run.history),
        "card": run.card.to_json(),
        "skipped_steps": run.skipped_steps,
    }
    if run.fold_choice is not None:
        state["fold_choice"] = json.dumps(run.fold_choice.to_json())
    if run.best is not None:
        state["best_model"] = run.best.state
        state["best_epoch"] = run.best.epoch
        state["best_score"] = run.best.score
    path = checkpoint_path(run)
    if path.exists():
        os.replace(path, path.with_name(PREVIOUS))  # the last good one stays until the new one is whole
    atomic_write(path, lambda p: write_checked(p, state))


def _readable_state(run: CheckpointedRun) -> dict[str, Any] | None:
    """The newest checkpoint that proves itself whole, the previous one when the newest does not; else None."""
    path = checkpoint_path(run)
    for stale in path.parent.glob(f".{path.name}.*.tmp") if run.world.is_main else ():  # of a killed write
        stale.unlink(missing_ok=True)
    damaged = False
    for candidate in (path, path.with_name(PREVIOUS)):
        # Rank 0 reads, every process parses the same bytes: all resume from rank 0's checkpoint.
        mine = candidate.read_bytes() if run.world.is_main and candidate.exists() else None
        data = run.world.bytes_from_main(mine)
        if data is None:
            continue
        try:
            return parse_checked(data)
        except CheckpointError as exc:
            damaged = True
            run.cb.message(f"{candidate} is damaged ({exc}); trying the previous checkpoint")
    if damaged:
        run.cb.message("no checkpoint of this run can be used; starting afresh")
    return None


def load_checkpoint(run: CheckpointedRun) -> tuple[int, int] | None:
    """Restore the run from its checkpoint: (epoch, batch in it) to resume at, or None to start afresh (no
    checkpoint, none whole, or one of a run with other settings or other images)."""
    state = _readable_state(run)
    if state is None:
        return None
    path = checkpoint_path(run)
    if state.get("config_key") != run.config.key():
        run.cb.message(f"{path} belongs to a run with other settings; starting afresh")
        return None
    if state.get("data_key") != run.data_key():
        run.cb.message(f"{path} belongs to a run on other images or classes; starting afresh")
        return None
    run.model.load_state_dict(state["model"])
    run.objective.load_state_dict(state["objective"])
    run.optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["torch_rng"])
    run.history = json.loads(state["history"])
    run.global_step = int(state["global_step"])
    run.skipped_steps = int(state["skipped_steps"])
    if "fold_choice" in state:
        run.fold_choice = FoldChoice.from_json(json.loads(state["fold_choice"]))
    if "best_model" in state:
        run.best = Best(int(state["best_epoch"]), float(state["best_score"]), state["best_model"])
    start = next((h for h in run.history if h.get("epoch") == 0), {})
    run.start_scores = {k: float(v) for k, v in start.items() if k.startswith("chosen on")}
    return int(state["epoch"]), int(state["step_in_epoch"])
