"""Sharded checkpoints written and read by every rank together: the commit protocol and
the ranks' agreement on the step they continue from (the format and the reading of one
process are in :mod:`emu_dgl.training.shards`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch.distributed as dist

from emu_dgl.errors import EmuDglError, RunError
from emu_dgl.files import fsync_dir
from emu_dgl.training.checkpoint import save_checkpoint
from emu_dgl.training.run import CHECKPOINTS, write_text
from emu_dgl.training.shards import (
    FORMAT,
    KINDS,
    MANIFEST,
    read_rows,
    remove_uncommitted,
    shard_file,
)

__all__ = ["ShardedCheckpoints"]


class ShardedCheckpoints:
    """One rank's side of a run's sharded checkpoints. Collective: every rank calls the
    same methods at the same steps (the data-parallel trainer does)."""

    def __init__(
        self,
        run_dir: Path,
        rank: int,
        world_size: int,
        bounds: list[int],
        manifest: dict[str, Any] | None = None,
    ) -> None:
        self.folder = Path(run_dir) / CHECKPOINTS
        self.rank, self.world_size, self.bounds = rank, world_size, list(bounds)
        self.manifest: dict[str, Any] = manifest or {
            "format": FORMAT,
            "commits": 0,
            **dict.fromkeys(KINDS),
        }
        self._best: dict[str, Any] | None = None  # written, committed with the next last

    @property
    def last_step(self) -> int | None:
        last = self.manifest.get("last")
        return None if last is None else int(last["step"])

    def _entry(self, kind: str, step: int, **extra: Any) -> dict[str, Any]:
        return {
            "step": step,
            "folder": f"{kind}-{step:08d}.{self.manifest['commits'] + 1}",
            "world_size": self.world_size,
            "bounds": self.bounds,
            **extra,
        }

    def _write(self, entry: dict[str, Any], state: dict[str, Any]) -> None:
        save_checkpoint(state, self.folder / entry["folder"] / shard_file(self.rank))

    def save_best(self, step: int, state: dict[str, Any]) -> None:
        """This rank's weights of ``step``; committed as ``best`` with the next
        :meth:`save_last` (which follows at the same step)."""
        self._best = self._entry("best", step)
        self._write(self._best, state)

    def save_last(self, step: int, state: dict[str, Any], *, config: dict[str, Any]) -> None:
        """This rank's training state of ``step``, committed on every rank (see the module doc)."""
        entry = self._entry("step", step, final=bool(state.get("final")))
        self._write(entry, state)
        old = self.manifest
        manifest = {
            "format": FORMAT,
            "commits": old["commits"] + 1,
            "last": entry,
            "previous": old["last"],
            "best": self._best or old["best"],
            "config": config,
        }
        dist.barrier()  # every rank's file of this step is complete
        if self.rank == 0:
            fsync_dir(self.folder)  # the new folder's name is durable before the manifest names it
            write_text(self.folder / MANIFEST, json.dumps(manifest) + "\n", "checkpoint manifest")
        self.manifest, self._best = manifest, None
        dist.barrier()  # committed before anything goes
        if self.rank == 0:
            remove_uncommitted(self.folder, manifest)

    def load(self, which: str, *, map_location: Any = "cpu") -> dict[str, Any]:
        """This rank's state from the committed checkpoint ``which`` (``last`` or ``best``),
        resharded when another number of processes wrote it. Every rank reports what it
        read, and all of them stop with the same one-line error unless every rank holds
        the step the manifest names."""
        entry = self.manifest.get(which)
        if entry is None:
            raise RunError(
                f"the run in '{self.folder.parent}' has no committed '{which}' checkpoint"
            )
        lo, hi = self.bounds[self.rank], self.bounds[self.rank + 1]
        state: dict[str, Any] | None = None
        try:
            state = read_rows(self.folder, entry, lo, hi, map_location=map_location)
            verdict: int | str = int(state["step"])
        except EmuDglError as exc:
            verdict = str(exc)
        except Exception as exc:  # a file of another layout: no rank may go on alone
            verdict = f"its file is not what emu-dgl wrote ({type(exc).__name__}: {exc})"
        verdicts: list[Any] = [None] * self.world_size
        dist.all_gather_object(verdicts, verdict)
        wrong = [(r, v) for r, v in enumerate(verdicts) if v != entry["step"]]
        if wrong:
            rank, what = wrong[0]
            said = what if isinstance(what, str) else f"it read step {what}"
            previous = self.manifest.get("previous")
            kept = (
                f"; the checkpoint before it (step {previous['step']}) is kept in "
                f"'{self.folder / previous['folder']}'"
                if which == "last" and previous
                else ""
            )
            raise RunError(
                f"the processes do not all hold step {entry['step']} of '{self.folder / MANIFEST}' "
                f"(rank {rank}: {said}); none of them continues: restore that file{kept}"
            )
        assert state is not None
        return state
