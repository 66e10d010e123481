"""The checkpoint file of a training run: a magic line, the SHA-256 of the payload, then torch's payload.

A checkpoint proves itself whole before it is used: one truncated by a crash or altered on disk is refused with
`CheckpointError` (trainer.fit then falls back to the previous one, kept as PREVIOUS), and its payload is loaded
with `weights_only=True`, so nothing in it is ever unpickled.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

import torch

PREVIOUS = "checkpoint.prev.pt"
_MAGIC = b"RXCKPT1\n"


class CheckpointError(RuntimeError):
    """A checkpoint that is truncated, altered or unreadable; the run falls back to the previous one."""


def write_checked(path: Path, state: dict[str, Any]) -> None:
    """A checkpoint that proves itself whole: a magic line, the SHA-256 of the payload, then torch's payload."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = buffer.getvalue()
    with open(path, "wb") as f:
        f.write(_MAGIC + hashlib.sha256(payload).digest() + payload)


def read_checked(path: Path) -> dict[str, Any]:
    """The checkpoint's state, only if its checksum matches (never unpickled: weights_only)."""
    return parse_checked(Path(path).read_bytes())


def parse_checked(data: bytes) -> dict[str, Any]:
    """`read_checked` of a checkpoint's bytes (rank 0 reads the file and sends them to the other processes)."""
    if not data.startswith(_MAGIC):
        raise CheckpointError("not a checkpoint of this program, or its start is damaged")
    digest, payload = data[len(_MAGIC) : len(_MAGIC) + 32], data[len(_MAGIC) + 32 :]
    if hashlib.sha256(payload).digest() != digest:
        raise CheckpointError("its checksum does not match: it was truncated or altered")
    try:
        state = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"cannot be read: {type(exc).__name__}") from None
    if not isinstance(state, dict):
        raise CheckpointError("holds no training state")
    return state
