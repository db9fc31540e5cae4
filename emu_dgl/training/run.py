"""The run directory: one process at a time, resume rules, and the data a run was trained on.

A run directory holds::

    config.yaml      the resolved config (what ``--resume`` starts from)
    data.json        the dataset's vocabularies and fingerprint (see :func:`data_record`)
    metrics.jsonl    one line per log or validation
    metrics.json     the final metrics (written last: its presence means "finished")
    checkpoints/     last.pt, previous.pt, best.pt (see :mod:`emu_dgl.training.checkpoint`)
    .lock            held (``flock``) by the process training into the folder

Three rules live here, in one place, so every trainer (one process or distributed)
follows them:

* :class:`RunLock`: an OS file lock held for the life of a run; a second writer gets a
  one-line error instead of interleaving its files with the first one's.
* :data:`RESUMABLE`: the config keys a resumed run may change. Every other key (model,
  widths, dataset, sampler, EMU, loss, optimizer, seed...) is fixed by the checkpoint,
  and :func:`check_resume` refuses a change with the list of offending keys.
* :func:`data_record` / :func:`match_data`: the entity and relation names (in id
  order) and a fingerprint of the splits are stored with the run; evaluation,
  prediction, export and resume map the current files onto those ids by name and
  refuse data whose content changed.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emu_dgl.errors import DataError, RunError

CONFIG_FILE = "config.yaml"
DATA_FILE = "data.json"
METRICS_LOG = "metrics.jsonl"
METRICS_FILE = "metrics.json"
LOCK_FILE = ".lock"
CHECKPOINTS = "checkpoints"

#: Config keys a resumed run may change; they are applied from the resumed step on.
#: Any key not listed (including keys added later) must equal the checkpoint's.
RESUMABLE: frozenset[str] = frozenset(
    {
        "train.max_steps",
        "train.lr",
        "train.valid_every",
        "train.checkpoint_every",
        "train.log_every",
        "train.progress",
        "train.early_stopping",
        "train.device",
        "train.threads",
        "eval.batch_size",
        "eval.per_relation",
        "tracking.*",  # a whole section
        # Where the data lives may change (a moved folder, another data root); what it
        # holds may not: the run's data fingerprint is checked when the data is loaded.
        "dataset.name",
        "dataset.data_dir",
        "output.dir",
    }
)

#: Keys that never change what a run computes: two configs differing only here describe
#: the same run (``compare`` reuses a finished run on this basis).
NO_EFFECT: frozenset[str] = frozenset(
    {
        "train.progress",
        "train.log_every",
        "train.checkpoint_every",
        "train.threads",
        "eval.batch_size",
        "output.dir",
        "dataset.data_dir",
        "tracking.*",
    }
)


def listed(key: str, keys: frozenset[str]) -> bool:
    """Whether ``section.key`` is in ``keys``, itself or through a ``section.*`` entry."""
    return key in keys or f"{key.split('.', 1)[0]}.*" in keys


# --------------------------------------------------------------------------- lock

_HELD: dict[Path, tuple[int, int]] = {}  # folder -> (fd, depth), locks this process holds


class RunLock:
    """Exclusive lock on a run directory for as long as the ``with`` block runs.

    ``fcntl.flock`` on ``<run>/.lock``: the OS drops it when the process dies, so a
    killed run never leaves a stale lock. Re-entrant within one process (the CLI takes
    it before building the trainer, the trainer takes it again to train).
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder).expanduser().resolve()
        self._created = False

    def __enter__(self) -> RunLock:
        key = self.folder
        if key in _HELD:
            fd, depth = _HELD[key]
            _HELD[key] = (fd, depth + 1)
            return self
        self._created = not self.folder.exists()
        make_folder(self.folder, "run directory")
        path = self.folder / LOCK_FILE
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise disk_error(exc, path, "run directory") from None
        if not _try_lock(fd):
            owner = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise RunError(
                f"run directory '{self.folder}' is in use by another emu-dgl process (pid {owner}); "
                "wait for it to finish or choose another --out"
            )
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        _HELD[key] = (fd, 1)
        return self

    def __exit__(self, *exc: object) -> None:
        fd, depth = _HELD[self.folder]
        if depth > 1:
            _HELD[self.folder] = (fd, depth - 1)
            return
        del _HELD[self.folder]
        if self._created and [p.name for p in self.folder.iterdir()] == [LOCK_FILE]:
            # The run stopped before writing anything: leave no empty folder behind.
            os.unlink(self.folder / LOCK_FILE)
            self.folder.rmdir()
        _unlock(fd)
        os.close(fd)


def _try_lock(fd: int) -> bool:
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _unlock(fd: int) -> None:
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        return
    fcntl.flock(fd, fcntl.LOCK_UN)


# --------------------------------------------------------------------------- disk


def disk_error(exc: OSError, path: Path, what: str) -> RunError:
    """A one-line error for an OSError while writing ``path`` (read-only, full disk, ...)."""
    reason = exc.strerror or str(exc)
    if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        advice = "free some space or choose another location"
    elif exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        advice = "choose a writable location"
    elif exc.errno in (errno.ENOTDIR, errno.EEXIST):
        advice = "a file is in the way; choose another location"
    else:
        advice = "check the path"
    return RunError(f"cannot write the {what} '{path}' ({reason}); {advice}")


def make_folder(folder: Path, what: str) -> None:
    """``mkdir -p`` with a one-line error instead of an OSError traceback."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise disk_error(exc, folder, what) from None
    if not folder.is_dir():
        raise RunError(f"the {what} '{folder}' is a file; choose another location")


def write_text(path: Path, text: str, what: str) -> None:
    """Atomically replace ``path`` with ``text`` (temp file + rename), one-line errors."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise disk_error(exc, path, what) from None


# --------------------------------------------------------------------------- configs


def flatten(config: dict[str, Any]) -> dict[str, Any]:
    """``{"train": {"lr": 0.1}}`` -> ``{"train.lr": 0.1}``."""
    return {
        f"{section}.{key}": value for section, part in config.items() for key, value in part.items()
    }


def config_differences(old: dict[str, Any], new: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """``(key, old value, new value)`` for every dotted key whose value differs."""
    a, b = flatten(old), flatten(new)
    return [
        (key, a.get(key), b.get(key)) for key in sorted(set(a) | set(b)) if a.get(key) != b.get(key)
    ]


def differing_keys(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Keys (outside :data:`NO_EFFECT`) in which two resolved configs differ; empty: same run."""
    return [key for key, _, _ in config_differences(old, new) if not listed(key, NO_EFFECT)]


def check_new_run(run_dir: Path) -> None:
    """Refuse to start a new run in a folder that holds one (finished, interrupted or just begun)."""
    run_dir = Path(run_dir)
    if (run_dir / CONFIG_FILE).exists() or (run_dir / CHECKPOINTS).is_dir():
        raise RunError(
            f"'{run_dir}' already holds a run; continue it with 'emu-dgl train --resume {run_dir}' "
            "or choose another --out"
        )


def _with_defaults(saved: dict[str, Any]) -> dict[str, Any]:
    """A saved config with keys added since it was written set to their defaults (which keep
    the old behaviour), so a newer version resumes an older run."""
    from emu_dgl.config import config_from_dict
    from emu_dgl.errors import ConfigError

    try:
        return config_from_dict(saved, validate=False).to_dict()
    except ConfigError:  # a key this version no longer knows: compare as saved
        return saved


@dataclass
class ResumePlan:
    """What ``--resume`` will do: the state to continue from and the config changes applied."""

    state: dict[str, Any] | None  # None: no complete checkpoint, start again from step 0
    source: str  # which file the state came from, or why there is none
    changes: list[tuple[str, Any, Any]] = field(default_factory=list)
    removed: list[Path] = field(default_factory=list)  # leftover temporary files deleted

    @property
    def step(self) -> int:
        return int(self.state["step"]) if self.state is not None else 0

    def describe(self) -> str:
        where = (
            f"step {self.step} from {self.source}"
            if self.state is not None
            else f"step 0: {self.source}"
        )
        applied = ", ".join(f"{k} {a!r} -> {b!r}" for k, a, b in self.changes)
        return f"resuming at {where}" + (f"; applying {applied}" if applied else "")


def check_resume(
    run_dir: Path, requested: dict[str, Any], *, map_location: Any = "cpu"
) -> ResumePlan:
    """Load the newest complete state of ``run_dir`` and check ``requested`` against its config.

    Raises :class:`RunError` listing every changed key outside :data:`RESUMABLE`, or a
    ``train.max_steps`` below the step already reached. Nothing is written except the
    removal of leftover temporary checkpoint files (call it holding the run's lock).
    """
    from emu_dgl.training.checkpoint import recover_checkpoint, remove_temporaries

    run_dir = Path(run_dir)
    if not (run_dir / CONFIG_FILE).is_file():
        raise RunError(
            f"'{run_dir}' is not an emu-dgl run directory (no {CONFIG_FILE}); pass the folder 'emu-dgl train' wrote"
        )
    ckpt_dir = run_dir / CHECKPOINTS
    state, source = recover_checkpoint(ckpt_dir, map_location=map_location)
    if state is not None and "config" in state:
        saved = state["config"]
    else:
        import yaml

        saved = yaml.safe_load((run_dir / CONFIG_FILE).read_text())
    changes = config_differences(_with_defaults(saved), requested)
    fixed = [(k, a, b) for k, a, b in changes if not listed(k, RESUMABLE)]
    if fixed:
        shown = ", ".join(f"{k} ({a!r} -> {b!r})" for k, a, b in fixed)
        raise RunError(
            f"cannot resume '{run_dir}' with changed {shown}: the checkpoint was trained with the old value; "
            f"start a new run with --out instead (on resume only {', '.join(sorted(RESUMABLE))} may change)"
        )
    steps = int(requested["train"]["max_steps"])
    if state is not None and steps < int(state["step"]):
        raise RunError(
            f"cannot resume '{run_dir}' with train.max_steps={steps}: the run has already reached step "
            f"{state['step']}; give at least that"
        )
    plan = ResumePlan(state=state, source=source, changes=changes)
    if state is not None and source != "last.pt":
        # Make the recovered state last.pt again before the temporary files go.
        from emu_dgl.training.checkpoint import LAST, save_checkpoint

        save_checkpoint({k: v for k, v in state.items() if k != "format"}, ckpt_dir / LAST)
    plan.removed = remove_temporaries(ckpt_dir)
    return plan


# --------------------------------------------------------------------------- data


def _split_hash(triples: Any) -> str:
    import numpy as np

    array = triples.numpy()
    order = np.lexsort((array[:, 2], array[:, 1], array[:, 0]))
    return hashlib.sha256(np.ascontiguousarray(array[order]).tobytes()).hexdigest()


def data_record(kg: Any) -> dict[str, Any]:
    """What a run stores about its data: names in id order, split sizes and hashes, fingerprint."""
    return {
        "dataset": kg.name,
        "fingerprint": kg.fingerprint,
        "entities": list(kg.entity_names),
        "relations": list(kg.relation_names),
        "splits": {
            split: {"triples": len(t), "sha256": _split_hash(t)} for split, t in kg.splits.items()
        },
    }


def read_data_record(run_dir: Path) -> dict[str, Any] | None:
    path = Path(run_dir) / DATA_FILE
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise RunError(
            f"'{path}' is unreadable ({exc.__class__.__name__}); the run's vocabulary is lost"
        ) from None
    if not isinstance(record, dict) or not {"fingerprint", "entities", "relations"} <= set(record):
        raise RunError(f"'{path}' is not an emu-dgl data record")
    return record


def match_data(kg: Any, record: dict[str, Any] | None, run_dir: Path) -> Any:
    """``kg`` with the ids the run was trained with, or a DataError if its content changed.

    Ids come from the order of lines in the files, so a reordered but otherwise equal
    file gives other ids: the graph is then re-indexed by name onto the run's
    vocabulary. Different names or different triples are refused.
    """
    if record is None or kg.fingerprint == record["fingerprint"]:
        return kg
    what = f"dataset '{kg.name}' is not the data run '{run_dir}' was trained on"
    entities, relations = record["entities"], record["relations"]
    for kind, now, then in (
        ("entity", kg.entity_names, entities),
        ("relation", kg.relation_names, relations),
    ):
        if set(now) != set(then):
            extra = sorted(set(now) - set(then))[:2]
            missing = sorted(set(then) - set(now))[:2]
            detail = (
                f"new {kind} names such as {extra}"
                if extra
                else f"{kind} names such as {missing} are gone"
            )
            raise DataError(f"{what}: {detail}; evaluate with the files it was trained on")
    remapped = kg.reindexed(entities, relations)
    if remapped.fingerprint == record["fingerprint"]:
        return remapped
    changed = [
        f"{split} ({info['triples']} triples then, {len(remapped.splits[split])} now)"
        for split, info in record.get("splits", {}).items()
        if _split_hash(remapped.splits[split]) != info["sha256"]
    ]
    raise DataError(
        f"{what}: the triples of {', '.join(changed) or 'a split'} changed; use the files it was trained on"
    )
