"""The run directory: one process at a time, resume rules, and the data a run was trained on.

A run directory holds::

    config.yaml      the resolved config (what ``--resume`` starts from)
    data.json        the dataset's vocabularies and fingerprint (see :func:`data_record`)
    metrics.jsonl    one line per log or validation
    metrics.json     the final metrics (written last: its presence means "finished")
    checkpoints/     last.pt, previous.pt, best.pt (see :mod:`emu_dgl.training.checkpoint`)
    .lock            held (``flock``) by the process training into the folder

Every command that writes a run (``train``, ``compare``, ``tune``, the distributed
launcher, ``Trainer.fit``) is admitted by one :func:`open_run`, which applies the rules
that live here, in one place:

* the folder: a new or empty folder for a new run (never a non-empty folder that is
  not a run, unless the user says so), a run folder to resume, never ``/``; every file
  of the run is written through :mod:`emu_dgl.files` (no links followed, temporary
  files from ``mkstemp``, atomic replacement);
* :class:`~emu_dgl.training.lock.RunLock`: an OS file lock held for the life of a run; a
  second writer gets a one-line error instead of interleaving its files with the first one's.
* :data:`RESUMABLE`: the config keys a resumed run may change. Every other key (model,
  widths, dataset, sampler, EMU, loss, optimizer, seed...) is fixed by the checkpoint,
  and :func:`check_resume` refuses a change with the list of offending keys.
* :func:`~emu_dgl.training.records.data_record` / :func:`~emu_dgl.training.records.match_data`:
  the entity and relation names (in id order) and a fingerprint of the splits are stored
  with the run; evaluation, prediction, export and resume map the current files onto those
  ids by name and refuse data whose content changed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from emu_dgl.errors import RunError
from emu_dgl.files import (
    describe_kind,
    lexists,
    link_count,
    listdir,
    read_text,
    remove,
    resolve_path,
    write_atomic,
)
from emu_dgl.training.lock import LOCK_FILE, RunLock
from emu_dgl.training.records import (
    DATA_FILE,
    data_record,
    dump_data_record,
    match_data,
    read_data_record,
    read_json,
    write_text,
)

__all__ = [  # the lock and the records live in their own modules; here for the callers
    "CHECKPOINTS",
    "COMPONENTS_FILE",
    "CONFIG_FILE",
    "DATA_FILE",
    "GRAPH_FILE",
    "LOCK_FILE",
    "METRICS_FILE",
    "METRICS_LOG",
    "RESUMABLE",
    "Admission",
    "ResumePlan",
    "RunLock",
    "check_resume",
    "data_record",
    "dump_data_record",
    "match_data",
    "open_run",
    "read_data_record",
    "read_json",
    "read_run_config",
    "run_path",
    "write_text",
]

CONFIG_FILE = "config.yaml"
#: The components the run used and where each came from (:mod:`emu_dgl.training.components`).
COMPONENTS_FILE = "components.json"
METRICS_LOG = "metrics.jsonl"
METRICS_FILE = "metrics.json"
#: A run trained on a graph given in Python keeps that graph here (``KnowledgeGraph.save``).
GRAPH_FILE = "graph.npz"
CHECKPOINTS = "checkpoints"

#: Config keys a resumed run may change; they are applied from the resumed step on.
#: Any key not listed (including keys added later) must equal the checkpoint's.
RESUMABLE: frozenset[str] = frozenset(
    {
        "train.max_steps",
        "train.max_epochs",  # sets max_steps: the same rules
        "train.lr",
        "train.valid_every",
        "train.checkpoint_every",
        "train.log_every",
        "train.progress",
        "train.early_stopping",
        "train.device",
        "train.threads",
        "train.cuda_graph",  # how the same step runs, not what it computes
        "train.compile",
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
        "train.cuda_graph",  # the same kernels, replayed
        "train.compile",  # the same arithmetic, fused (rounding as with another thread count)
        "eval.batch_size",
        "output.dir",
        "dataset.data_dir",
        "tracking.*",
    }
)


def listed(key: str, keys: frozenset[str]) -> bool:
    """Whether ``section.key`` is in ``keys``, itself or through a ``section.*`` entry."""
    return key in keys or f"{key.split('.', 1)[0]}.*" in keys


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


def run_path(run_dir: str | Path) -> Path:
    """``run_dir`` with ``~`` expanded, refused when empty or the root of the file system."""
    text = os.fspath(run_dir)
    if not text.strip():
        raise RunError(
            "the run directory is empty; give --out (or output.dir) a folder name, e.g. runs/{dataset}-{model}-{time}"
        )
    path = Path(text).expanduser()
    resolved = path.resolve()
    if resolved == Path(resolved.anchor):
        raise RunError(
            f"'{path}' is the root of the file system; give the run a folder of its own, e.g. --out runs/mine"
        )
    return path


def holds_run(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds a run (finished, interrupted or just begun)."""
    return lexists(run_dir / CONFIG_FILE) or lexists(run_dir / CHECKPOINTS)


def check_new_run(run_dir: Path, *, allow_nonempty: bool = False, found_lock: bool = False) -> None:
    """Refuse to start a new run in a folder that holds one, or in a non-empty folder that is
    not a run (its files could carry the names a run writes) unless ``allow_nonempty``.
    ``found_lock``: the folder had emu-dgl's ``.lock`` before this admission (a run stopped
    before its ``config.yaml`` may have left the records written before it)."""
    run_dir = Path(run_dir)
    if holds_run(run_dir):
        raise RunError(
            f"'{run_dir}' already holds a run; continue it with 'emu-dgl train --resume {run_dir}' "
            "or choose another --out"
        )
    # The same command starts such a run again over the records it left.
    begun = (
        frozenset({DATA_FILE, COMPONENTS_FILE, GRAPH_FILE, "tracking.json"})
        if found_lock
        else frozenset()
    )
    check_empty_folder(run_dir, "run", allow_nonempty=allow_nonempty, own=begun)


#: Files a run writes into its folder besides ``checkpoints/`` (compare's wall time,
#: the distributed record, the trackers' ids).
_RUN_FILE_NAMES = (
    CONFIG_FILE,
    DATA_FILE,
    COMPONENTS_FILE,
    METRICS_LOG,
    METRICS_FILE,
    GRAPH_FILE,
    "wall.json",
    "distributed.json",
    "tracking.json",
)


def check_run_files(run_dir: Path) -> None:
    """Refuse a run folder in which a file the run writes is not a regular file of its own
    (a planted link, a FIFO, a hard link: read, it would be someone else's file), or
    ``checkpoints/`` is not a real folder, before anything is read or written."""

    def refuse(path: Path, kind: str) -> RunError:
        return RunError(
            f"'{path}' is {kind}, where the run keeps a file of its own; emu-dgl neither follows "
            "nor replaces it: remove it (or put the real file back) and run again"
        )

    for name in _RUN_FILE_NAMES:
        kind = describe_kind(run_dir / name)
        if kind not in ("missing", "a regular file"):
            raise refuse(run_dir / name, kind)
        links = link_count(run_dir / name)
        if links > 1:
            raise refuse(run_dir / name, f"a file with {links} names (hard links)")
    for folder in ("ranks", CHECKPOINTS):  # the folders a run writes into
        kind = describe_kind(run_dir / folder)
        if kind not in ("missing", "a folder"):
            raise refuse(run_dir / folder, kind)
    checkpoints = run_dir / CHECKPOINTS
    if describe_kind(checkpoints) == "a folder":
        for name in listdir(checkpoints):
            kind = describe_kind(checkpoints / name)
            if name.endswith(".pt") and kind != "a regular file":
                raise refuse(checkpoints / name, kind)


#: What a run writes into its folder (and what a folder may hold for emu-dgl to call it empty).
RUN_FILES = (CONFIG_FILE, DATA_FILE, METRICS_FILE, METRICS_LOG, CHECKPOINTS + "/")


def check_empty_folder(
    folder: Path, what: str, *, allow_nonempty: bool, own: frozenset[str] = frozenset()
) -> None:
    """Refuse a non-empty ``folder`` (its ``.lock`` and the names in ``own`` aside) unless
    ``allow_nonempty``: the user's files there could be overwritten by the ``what``'s."""
    if allow_nonempty or describe_kind(folder) not in ("a folder", "a symbolic link"):
        return
    others = [name for name in listdir(folder) if name != LOCK_FILE and name not in own]
    if not others:
        return
    listed_ = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
    raise RunError(
        f"'{folder}' is not empty ({listed_}) and holds no emu-dgl {what}: choose a new or empty "
        "folder, or pass --allow-nonempty to write into it anyway (files of the same names are replaced)"
    )


def with_defaults(saved: dict[str, Any]) -> dict[str, Any]:
    """A saved config as this version resolves it: keys added since it was written set to
    their defaults (which keep the old behaviour), options of components it does not use
    left out (an older config.yaml held every decoder's options), so a newer version
    resumes, or ``compare`` reuses, an older run."""
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


def check_changes(
    run_dir: Path, saved: dict[str, Any], requested: dict[str, Any], reached: int | None
) -> list[tuple[str, Any, Any]]:
    """The config changes from ``saved`` (the checkpoint's) to ``requested``; a RunError
    listing every changed key outside :data:`RESUMABLE`, or for a ``train.max_steps``
    below the step ``reached`` (``None``: no checkpoint)."""
    changes = config_differences(with_defaults(saved), requested)
    fixed = [(k, a, b) for k, a, b in changes if not listed(k, RESUMABLE)]
    if fixed:
        shown = ", ".join(f"{k} ({a!r} -> {b!r})" for k, a, b in fixed)
        raise RunError(
            f"cannot resume '{run_dir}' with changed {shown}: the checkpoint was trained with the old value; "
            f"start a new run with --out instead (on resume only {', '.join(sorted(RESUMABLE))} may change)"
        )
    steps = int(requested["train"]["max_steps"])
    if reached is not None and steps < reached:
        raise RunError(
            f"cannot resume '{run_dir}' with train.max_steps={steps}: the run has already reached step "
            f"{reached}; give at least that"
        )
    return changes


def check_run_begun(run_dir: Path, *, found_lock: bool | None = None) -> None:
    """Refuse ``--resume`` of a folder without ``config.yaml`` in one line: a folder that a
    run was admitted into but stopped before its first record (nothing was trained; the
    same command with ``--out`` starts it), or a folder that holds no run at all.
    ``found_lock``: whether emu-dgl's ``.lock`` was there before (default: is it now)."""
    if lexists(run_dir / CONFIG_FILE):
        return
    if found_lock is None:
        found_lock = lexists(run_dir / LOCK_FILE)
    if found_lock and not lexists(run_dir / CHECKPOINTS):
        raise RunError(
            f"'{run_dir}' holds a run that stopped before it wrote {CONFIG_FILE}, so it trained no "
            f"step and there is nothing to resume: start it again with the same command and "
            f"'--out {run_dir}' instead of '--resume'"
        )
    raise RunError(
        f"'{run_dir}' is not an emu-dgl run directory (no {CONFIG_FILE}); pass the folder 'emu-dgl train' wrote"
    )


def check_resume(
    run_dir: Path, requested: dict[str, Any], *, map_location: Any = "cpu"
) -> ResumePlan:
    """Load the newest complete state of ``run_dir`` and check ``requested`` against its config.

    Raises :class:`RunError` listing every changed key outside :data:`RESUMABLE`, or a
    ``train.max_steps`` below the step already reached, and a ``CheckpointError`` for a
    checkpoint that exists but cannot be read (never a silent start from an older state).
    Once the checks pass, and only then, torn checkpoints are set aside as
    ``*.unreadable`` and leftover temporary files removed (call it holding the run's lock).
    """
    from emu_dgl.training.checkpoint import (
        recover_checkpoint,
        remove_temporaries,
        set_aside_torn,
    )

    run_dir = Path(run_dir)
    check_run_begun(run_dir, found_lock=False)
    ckpt_dir = run_dir / CHECKPOINTS
    state, source = recover_checkpoint(ckpt_dir, map_location=map_location)
    if state is not None and isinstance(state.get("config"), dict):
        saved = state["config"]
    else:
        saved = read_run_config(run_dir)
    changes = check_changes(
        run_dir, saved, requested, int(state["step"]) if state is not None else None
    )
    plan = ResumePlan(state=state, source=source, changes=changes)
    set_aside_torn(ckpt_dir)  # before last.pt is written again below: never rotated over
    if state is not None and source != "last.pt":
        # Make the recovered state last.pt again before the temporary files go.
        from emu_dgl.training.checkpoint import LAST, save_checkpoint

        save_checkpoint({k: v for k, v in state.items() if k != "format"}, ckpt_dir / LAST)
    plan.removed = remove_temporaries(ckpt_dir)
    return plan


#: The final records of a run: present only while they describe its last step.
FINAL_RECORDS = (METRICS_FILE, "wall.json")


def remove_final_metrics(run_dir: Path) -> list[str]:
    """Delete the final metrics of a run that is about to train further (an extended run's
    old ``metrics.json`` and ``wall.json`` would describe a run that no longer exists, and
    ``compare`` would report them). Call it holding the run's lock; returns what went."""
    return [name for name in FINAL_RECORDS if remove(Path(run_dir) / name, "final metrics")]


# --------------------------------------------------------------------------- admission


@dataclass
class Admission:
    """A run admitted by :func:`open_run`: its folder, and what resuming it will do."""

    run_dir: Path
    plan: ResumePlan | None  # None: a new run

    @property
    def resumed(self) -> bool:
        return self.plan is not None

    def match(self, kg: Any) -> Any:
        """``kg`` with the ids the run was trained with (a resumed run), or ``kg`` (a new one)."""
        if self.plan is None:
            return kg
        return match_data(kg, read_data_record(self.run_dir), self.run_dir)

    def write_record(self, kg: Any, config_yaml: str, components: str | None = None) -> None:
        """``data.json``, ``components.json`` and ``config.yaml`` (last: its presence means the
        run has begun): what evaluation and ``--resume`` read back."""
        write_atomic(self.run_dir / DATA_FILE, partial(dump_data_record, kg), "data record")
        if components is not None:
            write_text(self.run_dir / COMPONENTS_FILE, components, "components record")
        write_text(self.run_dir / CONFIG_FILE, config_yaml, "run config")


_ADMITTED: dict[Path, Admission] = {}  # folders this process has admitted, by resolved path


@contextmanager
def open_run(
    run_dir: str | Path,
    config: Any,
    *,
    resume: bool | ResumePlan = False,
    allow_nonempty: bool = False,
    state_dir: str | Path | None = None,
) -> Iterator[Admission]:
    """Admit a run into ``run_dir`` for the ``with`` block: the one door every command that
    writes a run goes through (``train``, ``compare``, ``tune``, the distributed launcher,
    and :meth:`Trainer.fit <emu_dgl.training.trainer.Trainer.fit>` when its caller did not).

    * the folder: never the root or an empty path; ``~`` expanded;
    * the lock: held for the whole block (:class:`RunLock`);
    * a new run: the folder is new, empty, or ``allow_nonempty`` (never one holding a run);
    * a resumed run: the config is checked against the checkpoint in ``state_dir``
      (default ``run_dir``; a distributed run's rank 0) by :func:`check_resume`.

    Nothing is written before these checks pass. Re-entrant: a second ``open_run`` of the
    same folder in this process returns the first admission (and must agree on ``resume``).
    ``config`` is a :class:`~emu_dgl.config.Config` or its dict.
    """
    path = run_path(run_dir)
    key = resolve_path(
        path
    )  # the folder as admitted, if it is (a link re-pointed since: no matter)
    if key in _ADMITTED:
        admitted = _ADMITTED[key]
        if bool(resume) != admitted.resumed:
            raise RunError(
                f"'{path}' is already open as a {'resumed' if admitted.resumed else 'new'} run in this process"
            )
        yield admitted
        return
    requested = config if isinstance(config, dict) else config.to_dict()
    with RunLock(path) as lock:
        check_run_files(path)
        if state_dir:
            check_run_files(Path(state_dir))
        if resume:
            check_run_begun(path, found_lock=lock.found_lock)
            plan = (
                resume
                if isinstance(resume, ResumePlan)
                else check_resume(Path(state_dir) if state_dir else path, requested)
            )
        else:
            check_new_run(path, allow_nonempty=allow_nonempty, found_lock=lock.found_lock)
            plan = None
        admitted = Admission(path, plan)
        _ADMITTED[key] = admitted
        try:
            yield admitted
        finally:
            del _ADMITTED[key]


# --------------------------------------------------------------------------- data


def read_run_config(run_dir: Path) -> dict[str, Any]:
    """The run's saved ``config.yaml`` as a dict (links refused), or a one-line RunError."""
    import yaml

    path = Path(run_dir) / CONFIG_FILE
    text = read_text(path, "run config", limit=1 << 20, single_link=True)
    try:
        saved = yaml.safe_load(text)
    except yaml.YAMLError:
        saved = None
    if not isinstance(saved, dict):
        raise RunError(
            f"'{path}' is not an emu-dgl run config (not a YAML mapping); restore the file emu-dgl wrote"
        )
    return saved
