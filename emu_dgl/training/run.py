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

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import IO, Any

from emu_dgl.errors import DataError, RunError
from emu_dgl.files import make_dir, open_lock_file, read_text, write_atomic

CONFIG_FILE = "config.yaml"
DATA_FILE = "data.json"
METRICS_LOG = "metrics.jsonl"
METRICS_FILE = "metrics.json"
#: A run trained on a graph given in Python keeps that graph here (``KnowledgeGraph.save``).
GRAPH_FILE = "graph.npz"
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


# --------------------------------------------------------------------------- lock

_HELD: dict[Path, tuple[int, int]] = {}  # folder -> (fd, depth), locks this process holds
_PID_WIDTH = 24  # the pid is written padded to this width: the lock file is never truncated


class RunLock:
    """Exclusive lock on a run directory for as long as the ``with`` block runs.

    ``fcntl.flock`` on ``<run>/.lock``: the OS drops it when the process dies, so a
    killed run never leaves a stale lock. Re-entrant within one process. The lock file
    is opened without following links and must be a regular file with one name, so a
    planted ``.lock`` link or hard link is refused, never written through.
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
        make_dir(self.folder, "run directory")
        fd = open_lock_file(self.folder / LOCK_FILE)
        if not _try_lock(fd):
            text = os.pread(fd, 64, 0).decode(errors="replace").split()
            os.close(fd)
            raise RunError(
                f"run directory '{self.folder}' is in use by another emu-dgl process "
                f"(pid {text[0] if text else 'unknown'}); wait for it to finish or choose another --out"
            )
        # Overwrite in place, never truncate: readers take the first word.
        os.pwrite(fd, f"{os.getpid()}\n".ljust(_PID_WIDTH).encode(), 0)
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


def write_text(path: Path, text: str, what: str, *, durable: bool = True) -> None:
    """Atomically replace ``path`` with UTF-8 ``text`` (see :mod:`emu_dgl.files`)."""
    write_atomic(path, text, what, durable=durable)


def read_json(path: Path, what: str) -> Any:
    """A JSON file of the run (links refused), or a RunError naming the file."""
    text = read_text(path, what)
    try:
        return json.loads(text)
    except ValueError:
        raise RunError(
            f"the {what} '{path}' is not valid JSON (cut short or edited); it is not the file emu-dgl wrote"
        ) from None


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
    return os.path.lexists(run_dir / CONFIG_FILE) or os.path.lexists(run_dir / CHECKPOINTS)


def check_new_run(run_dir: Path, *, allow_nonempty: bool = False) -> None:
    """Refuse to start a new run in a folder that holds one, or in a non-empty folder that is
    not a run (its files could carry the names a run writes) unless ``allow_nonempty``."""
    run_dir = Path(run_dir)
    if holds_run(run_dir):
        raise RunError(
            f"'{run_dir}' already holds a run; continue it with 'emu-dgl train --resume {run_dir}' "
            "or choose another --out"
        )
    check_empty_folder(run_dir, "run", allow_nonempty=allow_nonempty)


#: Files a run writes into its folder besides ``checkpoints/`` (compare's wall time,
#: the distributed record, the trackers' ids).
_RUN_FILE_NAMES = (
    CONFIG_FILE,
    DATA_FILE,
    METRICS_LOG,
    METRICS_FILE,
    GRAPH_FILE,
    "wall.json",
    "distributed.json",
    "tracking.json",
)


def check_run_files(run_dir: Path) -> None:
    """Refuse a run folder in which a file the run writes is not a regular file (a planted
    link, a FIFO), or ``checkpoints/`` is not a real folder, before anything is written."""
    from emu_dgl.files import describe_kind

    def refuse(path: Path, kind: str) -> RunError:
        return RunError(
            f"'{path}' is {kind}, where the run keeps a file of its own; emu-dgl neither follows "
            "nor replaces it: remove it (or put the real file back) and run again"
        )

    for name in _RUN_FILE_NAMES:
        kind = describe_kind(run_dir / name)
        if kind not in ("missing", "a regular file"):
            raise refuse(run_dir / name, kind)
    log = run_dir / METRICS_LOG  # appended to in place: a second name would be written too
    if describe_kind(log) == "a regular file" and os.lstat(log).st_nlink > 1:
        raise refuse(log, f"a file with {os.lstat(log).st_nlink} names (hard links)")
    for folder in ("ranks", CHECKPOINTS):  # the folders a run writes into
        kind = describe_kind(run_dir / folder)
        if kind not in ("missing", "a folder"):
            raise refuse(run_dir / folder, kind)
    checkpoints = run_dir / CHECKPOINTS
    kind = describe_kind(checkpoints)
    if kind == "a folder":
        for path in checkpoints.glob("*.pt"):
            kind = describe_kind(path)
            if kind != "a regular file":
                raise refuse(path, kind)


#: What a run writes into its folder (and what a folder may hold for emu-dgl to call it empty).
RUN_FILES = (CONFIG_FILE, DATA_FILE, METRICS_FILE, METRICS_LOG, CHECKPOINTS + "/")


def check_empty_folder(
    folder: Path, what: str, *, allow_nonempty: bool, own: frozenset[str] = frozenset()
) -> None:
    """Refuse a non-empty ``folder`` (its ``.lock`` and the names in ``own`` aside) unless
    ``allow_nonempty``: the user's files there could be overwritten by the ``what``'s."""
    if allow_nonempty or not folder.is_dir():
        return
    others = sorted(p.name for p in folder.iterdir() if p.name != LOCK_FILE and p.name not in own)
    if not others:
        return
    listed_ = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
    raise RunError(
        f"'{folder}' is not empty ({listed_}) and holds no emu-dgl {what}: choose a new or empty "
        "folder, or pass --allow-nonempty to write into it anyway (files of the same names are replaced)"
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
    if state is not None and isinstance(state.get("config"), dict):
        saved = state["config"]
    else:
        saved = read_run_config(run_dir)
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

    def write_record(self, kg: Any, config_yaml: str) -> None:
        """``data.json`` and ``config.yaml``: what evaluation and ``--resume`` read back."""
        write_atomic(self.run_dir / DATA_FILE, partial(dump_data_record, kg), "data record")
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
    key = path.resolve()
    if key in _ADMITTED:
        admitted = _ADMITTED[key]
        if bool(resume) != admitted.resumed:
            raise RunError(
                f"'{path}' is already open as a {'resumed' if admitted.resumed else 'new'} run in this process"
            )
        yield admitted
        return
    requested = config if isinstance(config, dict) else config.to_dict()
    with RunLock(path):
        check_run_files(path)
        if state_dir:
            check_run_files(Path(state_dir))
        if resume:
            plan = (
                resume
                if isinstance(resume, ResumePlan)
                else check_resume(Path(state_dir) if state_dir else path, requested)
            )
        else:
            check_new_run(path, allow_nonempty=allow_nonempty)
            plan = None
        admitted = Admission(path, plan)
        _ADMITTED[key] = admitted
        try:
            yield admitted
        finally:
            del _ADMITTED[key]


# --------------------------------------------------------------------------- data


def data_record(kg: Any, *, names: bool = True) -> dict[str, Any]:
    """What a run stores about its data: names in id order, split sizes and hashes,
    fingerprint (without the names when ``names`` is False: see :func:`dump_data_record`)."""
    return {
        "dataset": kg.name,
        "fingerprint": kg.fingerprint,
        "entities": list(kg.entity_names) if names else None,
        "relations": list(kg.relation_names) if names else None,
        # (a graph's split_sha256 is this hash, kept by a dataset cache: no sort of the triples)
        "splits": {
            split: {"triples": len(t), "sha256": kg.split_sha256(split)}
            for split, t in kg.splits.items()
        },
    }


def dump_data_record(kg: Any, handle: IO[bytes]) -> None:
    """``json.dumps(data_record(kg)) + "\\n"``, written name chunk by name chunk: the names
    of a graph of millions of entities are never all Python strings at once."""
    record = data_record(kg, names=False)

    def member(key: str) -> bytes:
        return f"{json.dumps(key)}: {json.dumps(record[key])}".encode()

    def names(values: Any) -> None:
        handle.write(b"[")
        for start in range(0, len(values), _NAME_CHUNK):
            chunk = values[start : start + _NAME_CHUNK]
            handle.write(
                (", " if start else "").encode() + ", ".join(map(json.dumps, chunk)).encode()
            )
        handle.write(b"]")

    handle.write(b"{" + member("dataset") + b", " + member("fingerprint") + b', "entities": ')
    names(kg.entity_names)
    handle.write(b', "relations": ')
    names(kg.relation_names)
    handle.write(b", " + member("splits") + b"}\n")


_NAME_CHUNK = 1 << 16


def read_run_config(run_dir: Path) -> dict[str, Any]:
    """The run's saved ``config.yaml`` as a dict (links refused), or a one-line RunError."""
    import yaml

    path = Path(run_dir) / CONFIG_FILE
    text = read_text(path, "run config", limit=1 << 20)
    try:
        saved = yaml.safe_load(text)
    except yaml.YAMLError:
        saved = None
    if not isinstance(saved, dict):
        raise RunError(
            f"'{path}' is not an emu-dgl run config (not a YAML mapping); restore the file emu-dgl wrote"
        )
    return saved


def read_data_record(run_dir: Path) -> dict[str, Any] | None:
    """The run's ``data.json`` (None for runs saved before it existed), its types checked."""
    path = Path(run_dir) / DATA_FILE
    if not os.path.lexists(path):
        return None
    record = read_json(path, "data record")
    names_ok = isinstance(record, dict) and all(
        isinstance(record.get(key), list) and all(isinstance(n, str) for n in record[key])
        for key in ("entities", "relations")
    )
    splits = record.get("splits", {}) if isinstance(record, dict) else None
    if (
        not names_ok
        or not isinstance(record.get("fingerprint"), str)
        or not isinstance(splits, dict)
        or not all(
            isinstance(info, dict)
            and isinstance(info.get("triples"), int)
            and isinstance(info.get("sha256"), str)
            for info in splits.values()
        )
    ):
        raise RunError(
            f"'{path}' is not an emu-dgl data record (a field is missing or of the wrong type); "
            "restore the file emu-dgl wrote, the run's vocabulary is in it"
        )
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
        if split in remapped.splits and remapped.split_sha256(split) != info["sha256"]
    ]
    raise DataError(
        f"{what}: the triples of {', '.join(changed) or 'a split'} changed; use the files it was trained on"
    )
