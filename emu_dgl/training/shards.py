r"""The run folder of a run on several processes: its sharded checkpoints on disk (each
rank's rows in a file of its own, one manifest committing the ranks' files together),
read back on any number of processes or stitched into one table.

Writing is collective, in :mod:`emu_dgl.distributed.checkpoints`; this module holds the
format and the reading, which one process can do alone (``evaluate``, ``export``).

Layout, in the run's ``checkpoints/`` folder::

    sharded.json                 the manifest: the committed checkpoints (see below)
    step-00000040.3/rank-<r>.pt  rank r's training state at step 40 (the run's 3rd commit):
                                 its block of entity rows, their optimizer state, and the
                                 replicated rest (relations, random generators, schedule, ...)
    best-00000020.2/rank-<r>.pt  rank r's weights at the best validation so far

``sharded.json`` names ``last`` (where ``--resume`` continues), ``previous`` (the last
before it) and ``best``, each with its step, folder, process count and row bounds
(``bounds[r] .. bounds[r + 1]`` are rank ``r``'s rows), plus the config of ``last``.

**Commit.** Every rank calls
:meth:`~emu_dgl.distributed.checkpoints.ShardedCheckpoints.save_last` at the same step:

1. each rank writes its file atomically (temporary file, fsync, rename) into the new folder;
2. barrier: every rank's file of the step is complete;
3. rank 0 replaces ``sharded.json`` atomically: the new folder becomes ``last``;
4. barrier: nothing is removed before the manifest names the new folder;
5. rank 0 removes the folders the manifest no longer names.

A process killed at any moment leaves a manifest that names complete folders only; the
files of an uncommitted step are removed on resume. So the ranks never resume from
different steps: every rank reads the step the manifest names, and the ranks check
that they all hold it (an all-gather of what each rank read) before the first step, or
all stop with the same one-line error.

**Resharding.** A checkpoint written by ``N`` processes loads on ``M``: each rank reads
the rows it now owns from the files whose blocks overlap them (mapped, not read whole),
with the optimizer state of those rows; the replicated parts come from the first such
file. ``emu-dgl evaluate|predict|export`` stitch every block into one table the same way.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch

from emu_dgl.errors import FileError, RunError
from emu_dgl.files import describe_kind, lexists, listdir, remove_tree
from emu_dgl.training.checkpoint import load_checkpoint, remove_temporaries
from emu_dgl.training.run import (
    CHECKPOINTS,
    ResumePlan,
    check_changes,
    read_json,
    read_run_config,
)

__all__ = [
    "INFO_FILE",
    "MANIFEST",
    "enclosing_run",
    "read_manifest",
    "read_rows",
    "remove_uncommitted",
    "resume_plan",
    "run_weights",
    "shard_file",
    "trained_world_size",
]

#: The run's record of the number of processes it was last trained on.
INFO_FILE = "distributed.json"
MANIFEST = "sharded.json"
FORMAT = "emu-dgl-sharded/1"
ENTITY = "entity.weight"
KINDS = ("last", "previous", "best")
_FOLDER = re.compile(r"(step|best)-\d{8,}\.\d+")


def shard_file(rank: int) -> str:
    """The name of rank ``rank``'s file in a checkpoint folder."""
    return f"rank-{rank}.pt"


# --------------------------------------------------------------------------- the run folder


def trained_world_size(run_dir: str | Path) -> int | None:
    """The number of processes the run in ``run_dir`` was last trained on (its
    ``distributed.json``), or ``None`` for a one-process run."""
    info = Path(run_dir).expanduser() / INFO_FILE
    if not lexists(info):
        return None
    record = read_json(info, "distributed record")
    trained = record.get("world_size") if isinstance(record, dict) else None
    if not isinstance(trained, int) or isinstance(trained, bool) or trained < 1:
        raise RunError(f"'{info}' holds no world size; it is not the file emu-dgl wrote")
    return trained


def enclosing_run(path: str | Path) -> Path | None:
    """The run on several processes that ``path`` is a part of (a rank's or a checkpoint's
    folder inside it), or ``None``: what to point a user to who passed the part."""
    path = Path(path).expanduser()
    if lexists(path / INFO_FILE):
        return None
    for parent in list(path.absolute().parents)[:3]:
        if lexists(parent / INFO_FILE):
            return parent if path.is_absolute() else Path(os.path.relpath(parent))
    return None


# --------------------------------------------------------------------------- manifest


def _valid_entry(entry: Any) -> bool:
    if entry is None:
        return True
    if not isinstance(entry, dict):
        return False
    world, bounds = entry.get("world_size"), entry.get("bounds")
    return (
        isinstance(entry.get("step"), int)
        and isinstance(entry.get("folder"), str)
        and _FOLDER.fullmatch(entry["folder"]) is not None
        and isinstance(world, int)
        and world >= 1
        and isinstance(bounds, list)
        and len(bounds) == world + 1
        and all(isinstance(b, int) for b in bounds)
        and bounds[0] == 0
        and all(a <= b for a, b in zip(bounds, bounds[1:], strict=False))
    )


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """The manifest of a run's ``checkpoints/`` folder, checked; ``None`` when there is none
    (no checkpoint committed yet)."""
    path = Path(folder) / MANIFEST
    if not lexists(path):
        return None
    record = read_json(path, "checkpoint manifest")
    if (
        not isinstance(record, dict)
        or record.get("format") != FORMAT
        or not isinstance(record.get("commits"), int)
        or not all(_valid_entry(record.get(kind)) for kind in KINDS)
        or record.get("last") is None
        or not isinstance(record.get("config"), dict)
    ):
        raise RunError(
            f"'{path}' is not the checkpoint manifest emu-dgl writes ({FORMAT}); restore it, "
            "it names the checkpoint every process continues from"
        )
    return record


def remove_uncommitted(folder: Path, manifest: dict[str, Any] | None) -> list[Path]:
    """Remove checkpoint folders the manifest does not name (an interrupted save's, or
    superseded ones) and leftover temporary files; returns what was removed. Call it
    holding the run's lock, or as rank 0 after a commit."""
    folder = Path(folder)
    if describe_kind(folder) != "a folder":
        return []
    named = {manifest[k]["folder"] for k in KINDS if manifest and manifest.get(k)}
    removed = []
    for name in listdir(folder):
        if _FOLDER.fullmatch(name) and name not in named:
            try:  # a folder (or a planted link, itself) through the run folder's descriptor
                remove_tree(folder / name, "checkpoint folder")
            except FileError:
                continue  # left behind: never named again, removed by a later commit
            removed.append(folder / name)
    return removed + remove_temporaries(folder)


def resume_plan(run_dir: Path, requested: dict[str, Any]) -> ResumePlan:
    """What ``--resume`` of a run on several processes does, from its manifest alone (no
    rank's file is read here): the committed step, and the config changes, checked as for
    a one-process run. Uncommitted folders are removed (call it holding the run's lock)."""
    folder = Path(run_dir) / CHECKPOINTS
    manifest = read_manifest(folder)
    if manifest is None:
        changes = check_changes(run_dir, read_run_config(run_dir), requested, None)
        plan = ResumePlan(state=None, source="no checkpoint was committed", changes=changes)
    else:
        last = manifest["last"]
        changes = check_changes(run_dir, manifest["config"], requested, last["step"])
        state = {"step": last["step"], "final": bool(last.get("final")), "manifest": manifest}
        source = f"{last['folder']} (written by {last['world_size']} processes)"
        plan = ResumePlan(state=state, source=source, changes=changes)
    plan.removed = remove_uncommitted(folder, manifest)
    return plan


# --------------------------------------------------------------------------- reading


def _load(folder: Path, entry: dict[str, Any], rank: int, map_location: Any) -> dict[str, Any]:
    path = folder / entry["folder"] / shard_file(rank)
    state = load_checkpoint(path, map_location=map_location, mmap=True)
    shard = state.get("shard")
    if (
        state.get("step") != entry["step"]
        or not isinstance(shard, dict)
        or shard.get("bounds") != entry["bounds"]
        or shard.get("rank") != rank
    ):
        raise RunError(
            f"'{path}' does not hold rank {rank}'s rows of step {entry['step']} that "
            f"'{folder / MANIFEST}' names; restore the run's checkpoints folder as emu-dgl wrote it"
        )
    return state


def read_rows(
    folder: Path, entry: dict[str, Any], lo: int, hi: int, *, map_location: Any = "cpu"
) -> dict[str, Any]:
    """A rank's state for entity rows ``lo .. hi - 1`` from the committed checkpoint
    ``entry``, whatever number of processes wrote it: the rows and their optimizer state
    cut from every file whose block overlaps them, the rest from the first such file.
    ``lo, hi = 0, E`` gives the whole table (what one process evaluates)."""
    bounds = entry["bounds"]
    if hi > bounds[-1]:
        raise RunError(
            f"the checkpoint '{folder / entry['folder']}' holds {bounds[-1]} entity rows, the data "
            f"has {hi}; resume with the data the run was trained on"
        )
    spans = [
        (r, max(lo, bounds[r]), min(hi, bounds[r + 1]))
        for r in range(entry["world_size"])
        if max(lo, bounds[r]) < min(hi, bounds[r + 1])
    ]
    first = spans[0][0] if spans else 0
    base = _load(folder, entry, first, map_location)
    if [(a, b) for _, a, b in spans] == [(bounds[first], bounds[first + 1])]:
        return base  # exactly the block of one file: the same split as when it was written
    states = {first: base}
    for rank, _, _ in spans[1:]:
        states[rank] = _load(folder, entry, rank, map_location)

    def rows(get: Any) -> torch.Tensor:
        parts = [get(states[r])[a - bounds[r] : b - bounds[r]] for r, a, b in spans]
        return torch.cat(parts) if parts else get(base)[:0].clone()

    base["model"][ENTITY] = rows(lambda s: s["model"][ENTITY])
    index = base["shard"].get("entity_param")
    optimizer = base.get("optimizer")
    if optimizer is not None and index in optimizer["state"]:
        for key, value in optimizer["state"][index].items():
            if isinstance(value, torch.Tensor) and value.dim() >= 1:  # one entry per row
                optimizer["state"][index][key] = rows(
                    lambda s, key=key: s["optimizer"]["state"][index][key]
                )
    base["shard"] = {**base["shard"], "rows": [lo, hi]}
    return base


def run_weights(run_dir: Path, which: str) -> tuple[dict[str, Any], Path]:
    """The ``best`` or ``last`` checkpoint of a run (one process or several) and where it
    is; a run on several processes has its blocks of entity rows stitched into one table."""
    folder = Path(run_dir) / CHECKPOINTS
    if not lexists(folder / MANIFEST):
        path = folder / f"{which}.pt"
        return load_checkpoint(path), path
    manifest = read_manifest(folder)
    entry = manifest.get(which) if manifest is not None else None
    if entry is None:
        raise RunError(
            f"the run in '{run_dir}' has no {which} checkpoint yet; pass --checkpoint last, or "
            f"train it further with 'emu-dgl train --resume {run_dir}'"
        )
    return read_rows(folder, entry, 0, entry["bounds"][-1]), folder / entry["folder"]
