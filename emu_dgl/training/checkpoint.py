"""Atomic, safe-to-load checkpoints.

A checkpoint is a plain dict of tensors and primitives saved with ``torch.save`` to a
temporary file in the same folder, flushed to disk, then renamed over the target:
a crash mid-write leaves the previous checkpoint intact. Before a new ``last.pt``
replaces the old one, the old one becomes ``previous.pt``, so one good checkpoint
survives even a checkpoint that turns out unreadable later. Loading uses
``torch.load(..., weights_only=True)``: no pickled code ever runs.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from emu_dgl.errors import CheckpointError

FORMAT = "emu-dgl-checkpoint/1"


def save_checkpoint(state: dict[str, Any], path: Path, *, keep_previous: bool = False) -> None:
    """Write ``state`` to ``path`` atomically (temp file, fsync, rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"format": FORMAT, **state}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(state, handle)
            handle.flush()
            os.fsync(handle.fileno())
        if keep_previous and path.exists():
            os.replace(path, path.with_name("previous.pt"))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: Path, *, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint`, or raise a one-line error."""
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at '{path}'; train first or pass the right run directory")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # truncated zip, foreign pickle, random bytes ...
        previous = path.with_name("previous.pt")
        hint = (
            f"; the previous good checkpoint is kept at '{previous}': copy it over '{path.name}' to resume from it"
            if previous.is_file() and previous != path
            else "; it cannot be used, start the run again"
        )
        reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise CheckpointError(f"checkpoint '{path}' is truncated or not an emu-dgl checkpoint ({reason}){hint}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"'{path}' is not an emu-dgl checkpoint (format {FORMAT} expected)")
    return state
