"""Starting a data-parallel run: ``emu-dgl train --nproc N`` (spawn) or ``torchrun``.

A run on ``N`` processes is one run folder, shared by the ranks: rank 0 writes the run's
own files (``config.yaml``, ``data.json``, ``metrics.jsonl``, ``metrics.json``), and every
rank writes its part of each checkpoint, committed together by a manifest (see
:mod:`~emu_dgl.training.shards`). ``RUN/distributed.json`` records the number of
processes, so ``emu-dgl train --resume RUN`` continues on as many (``--nproc M``:
on ``M``, the checkpoint resharded), and ``emu-dgl evaluate|predict|export RUN`` stitch
the blocks into one table on one process.

Backend: gloo when the run's device is the CPU, NCCL on CUDA (rank ``r`` on GPU
``LOCAL_RANK mod count``), picked from ``train.device``; ``backend=`` overrides it.

Admission: the launching process (torchrun: rank 0) admits ``RUN`` with
:func:`~emu_dgl.training.run.open_run` for the run's whole life (lock, folder checks, and
on resume the config checked against the manifest's); the ranks train under it.

Failures: a rank that raises an emu-dgl error stops the run with that error's one line;
a rank killed (by a signal, the kernel's OOM killer...) stops the others and is reported
in one line with the step the run can resume from. Ranks die with the launching process
(``PR_SET_PDEATHSIG`` on Linux), so none trains on unsupervised after it.
"""

from __future__ import annotations

import copy
import json
import logging
import multiprocessing
import os
import signal
import socket
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

import emu_dgl.errors as errors
from emu_dgl.config import Config, config_from_dict
from emu_dgl.errors import ConfigError, EmuDglError, RunError
from emu_dgl.training.shards import INFO_FILE, trained_world_size

__all__ = [
    "INFO_FILE",
    "RankFailure",
    "run_workers",
    "torchrun_train",
    "train_distributed",
]

#: Seconds the other ranks get to stop by themselves after one failed (their own error
#: may be the more telling one), then seconds between SIGTERM and SIGKILL.
_GRACE, _TERM_WAIT = 1.0, 5.0


class RankFailure(RunError):
    """A rank died or failed with an error that is not an emu-dgl error."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _backend_for(device: str) -> str:
    wants_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    return "nccl" if wants_cuda else "gloo"


# --------------------------------------------------------------------------- the ranks


def _die_with_parent() -> None:
    """Linux: this process gets SIGKILL when the process that started it dies."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the parent is already gone
        os._exit(1)


def _error_record(exc: BaseException) -> dict[str, Any]:
    return {
        "type": type(exc).__name__,
        "emu": isinstance(exc, EmuDglError),
        "message": str(exc),
        "traceback": "".join(traceback.format_exception(exc)),
    }


def _entry(
    rank: int,
    world_size: int,
    port: int,
    backend: str,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    reports: str,
) -> None:
    _die_with_parent()
    # tqdm's default lock is a multiprocessing semaphore; a rank leaves with os._exit, which
    # never releases it, and the resource tracker would warn about it at the end of the run.
    from tqdm.auto import tqdm

    tqdm.set_lock(threading.RLock())
    if "OMP_NUM_THREADS" not in os.environ:  # N processes share the cores
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world_size))
    code = 0
    try:
        dist.init_process_group(
            backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size
        )
        fn(rank, world_size, *args)
        dist.barrier()  # no rank leaves while a peer still talks to it
        dist.destroy_process_group()
    except BaseException as exc:  # reported by the launcher, in one line
        path = Path(reports) / f"rank-{rank}.json"
        path.write_text(json.dumps(_error_record(exc)))
        code = 1
    # Leave without the interpreter's teardown: there, objects the collectives' C++ threads
    # still hold can be freed after Python is gone, which aborts the process now and then
    # (SIGABRT, "terminate called without an active exception") and would fail a finished run.
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(code)


def _stop(processes: list[Any]) -> None:
    """SIGTERM to the ranks still running, SIGKILL to those still there after a while."""
    for proc in processes:
        if proc.is_alive():
            proc.terminate()
    deadline = time.monotonic() + _TERM_WAIT
    for proc in processes:
        proc.join(max(0.0, deadline - time.monotonic()))
        if proc.is_alive():
            proc.kill()
            proc.join()


def _emu_error(name: str, message: str) -> EmuDglError:
    """The emu-dgl error of class ``name`` (raised in another process) with ``message``."""
    cls = getattr(errors, name, EmuDglError)
    if not (isinstance(cls, type) and issubclass(cls, EmuDglError)):
        cls = EmuDglError
    return cls(message)


def _failure(processes: list[Any], reports: Path, first: int) -> EmuDglError:
    """The error that tells the most: an emu-dgl error of a rank, else the rank that was
    killed, else the first rank's exception (its traceback printed)."""
    records = {}
    for rank in range(len(processes)):
        path = reports / f"rank-{rank}.json"
        if path.is_file():
            records[rank] = json.loads(path.read_text())
    for _, record in sorted(records.items()):
        if record["emu"]:
            return _emu_error(record["type"], record["message"])
    killed = [
        (rank, proc)
        for rank, proc in enumerate(processes)
        if proc.exitcode is not None and proc.exitcode < 0 and rank not in records
    ]
    if killed:
        rank, proc = min(killed, key=lambda item: item[0] != first)
        name = signal.Signals(-proc.exitcode).name
        why = " (by someone, or by the system when memory ran out)" if name == "SIGKILL" else ""
        return RankFailure(
            f"rank {rank} (pid {proc.pid}) was killed by {name}{why}; the other ranks were stopped"
        )
    if first in records:
        record = records[first]
        print(record["traceback"], file=sys.stderr, end="")
        return RankFailure(
            f"rank {first} failed with {record['type']}: {errors.shown(record['message'], 200)} "
            "(its traceback is above)"
        )
    return RankFailure(f"rank {first} exited with status {processes[first].exitcode}")


def run_workers(nproc: int, fn: Callable[..., Any], *args: Any, backend: str = "gloo") -> None:
    """Start ``nproc`` processes on this machine; each joins the group and runs
    ``fn(rank, world_size, *args)`` (``fn`` must be importable, e.g. module level).

    When one fails, the others are stopped and one error says why (see :func:`_failure`);
    Ctrl-C stops them all."""
    if nproc < 1:
        raise ConfigError(f"--nproc must be at least 1, got {nproc}")
    context = multiprocessing.get_context("spawn")
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="emu-dgl-ranks-") as reports:
        processes = [
            context.Process(
                target=_entry,
                args=(rank, nproc, port, backend, fn, args, reports),
                name=f"emu-dgl-rank-{rank}",
            )
            for rank in range(nproc)
        ]
        try:
            for proc in processes:
                proc.start()
            first = _wait(processes)
        except BaseException:
            _stop(processes)
            raise
        if first is not None:
            _stop(processes)
            raise _failure(processes, Path(reports), first)


def _wait(processes: list[Any]) -> int | None:
    """Wait for every rank; the first that failed (the others get a short grace to stop
    by themselves), or ``None`` when all succeeded."""
    running = {proc.sentinel: rank for rank, proc in enumerate(processes)}
    while running:
        for sentinel in wait(list(running)):
            rank = running.pop(sentinel)
            processes[rank].join()
            if processes[rank].exitcode != 0:
                deadline = time.monotonic() + _GRACE
                for proc in processes:
                    proc.join(max(0.0, deadline - time.monotonic()))
                return rank
    return None


# --------------------------------------------------------------------------- the run


def _prepare(config: Config, run_dir: Path, world_size: int, resume: bool) -> None:
    from emu_dgl.distributed.trainer import check_distributed_config
    from emu_dgl.files import lexists

    check_distributed_config(config, world_size)
    if not resume:
        return
    if trained_world_size(run_dir) is None:
        raise ConfigError(
            f"'{run_dir}' was not trained on several processes ({INFO_FILE} missing); resume it without --nproc"
        )
    if lexists(run_dir / "ranks"):
        raise RunError(
            f"'{run_dir}' was trained by an older emu-dgl (one checkpoint folder per rank, in "
            "ranks/); this version cannot resume it: evaluate, predict and export still read it"
        )


def _new_run_config(config: Config, run_dir: Path, kg: Any) -> Config:
    """The config a new run keeps (as :class:`~emu_dgl.training.trainer.Trainer` keeps it):
    a dataset folder named absolutely, or the graph given in Python saved into the run."""
    from emu_dgl.data import canonical_dataset
    from emu_dgl.training.run import GRAPH_FILE
    from emu_dgl.training.rundata import record_data_root

    config = copy.deepcopy(config)
    if kg is None:
        config.dataset.name = canonical_dataset(config.dataset.name, config.dataset.data_dir)
        record_data_root(config)  # later commands find the data without $EMU_DGL_DATA
    else:
        kg.save(run_dir / GRAPH_FILE)
        config.dataset.name = str((run_dir / GRAPH_FILE).absolute())
    return config


@contextmanager
def _admit(
    config: Config,
    run_dir: Path,
    world_size: int,
    *,
    resume: bool,
    allow_nonempty: bool,
    kg: Any = None,
) -> Iterator[tuple[Any, Config]]:
    """The leader's admission of the whole run, for the ``with`` block; yields the resume
    plan (``None``: a new run) and the config the ranks train with.

    A new run's ``config.yaml`` is written here, before any rank starts, so that a run
    killed at any moment can be resumed. On resume, under the run's lock: the config is
    checked against the manifest's, uncommitted checkpoint folders go, and the old
    ``metrics.json`` is removed unless the run has nothing left to do (so a run extended
    and then killed never looks finished)."""
    from emu_dgl.training.run import (
        CONFIG_FILE,
        RunLock,
        check_run_files,
        open_run,
        remove_final_metrics,
        write_text,
    )
    from emu_dgl.training.shards import resume_plan

    with RunLock(run_dir):  # re-entrant: open_run below holds it too
        check_run_files(run_dir)
        plan = resume_plan(run_dir, config.to_dict()) if resume else None
        with open_run(run_dir, config, resume=plan or False, allow_nonempty=allow_nonempty):
            done = (
                plan is not None
                and plan.state is not None
                and plan.state["final"]
                and plan.step == config.train.max_steps
            )
            if not done:
                remove_final_metrics(run_dir)
            write_text(
                run_dir / INFO_FILE, json.dumps({"world_size": world_size}) + "\n", "run record"
            )
            if plan is None:
                config = _new_run_config(config, run_dir, kg)
                write_text(run_dir / CONFIG_FILE, config.to_yaml(), "run config")
            yield plan, config


def _train_worker(
    rank: int,
    world_size: int,
    config_dict: dict[str, Any],
    run_dir: str,
    plan: Any,
    stop_after: int | None,
    kg: Any,
) -> None:
    from emu_dgl.distributed.trainer import DistributedTrainer
    from emu_dgl.files import anchored

    config = config_from_dict(config_dict)
    device = config.train.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):  # one GPU per process of this machine
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', rank)) % torch.cuda.device_count()}"
        torch.cuda.set_device(device)
    config.train.device = device
    # Every write of this rank reaches the folder through one descriptor (as the launcher's
    # do): whatever happens to the path's links from here on, the writes stay in the run.
    with anchored(run_dir, "run directory"):
        trainer = DistributedTrainer(config, Path(run_dir), kg=kg)
        trainer.fit(resume=plan, stop_after=stop_after)


def _resume_advice(run_dir: Path) -> str:
    from emu_dgl.training.run import CHECKPOINTS
    from emu_dgl.training.shards import read_manifest

    try:
        manifest = read_manifest(run_dir / CHECKPOINTS)
    except EmuDglError:
        manifest = None
    where = f"step {manifest['last']['step']}" if manifest else "step 0 (no checkpoint yet)"
    return f"the run continues from {where} with 'emu-dgl train --resume {run_dir}'"


def train_distributed(
    config: Config,
    run_dir: str | Path,
    *,
    nproc: int,
    resume: bool = False,
    stop_after: int | None = None,
    kg: Any = None,
    backend: str | None = None,
    allow_nonempty: bool = False,
    announce: Callable[[str], object] | None = None,
) -> dict[str, Any]:
    """Train one run on ``nproc`` spawned processes; returns metrics.json's content
    (``{}`` when ``stop_after`` ended the run early, as for :meth:`Trainer.fit`).

    ``resume`` continues the run in ``run_dir`` on ``nproc`` processes, whatever number
    trained it before (the checkpoint is resharded). ``announce`` (default: stderr) is
    given ``run folder: <run_dir>`` once the run is admitted, then what a resume will do
    (the step and the config changes), as :func:`~emu_dgl.training.start.start_run` says them."""
    from emu_dgl.files import lexists, resolve_path
    from emu_dgl.training.run import read_json, run_path
    from emu_dgl.training.start import to_stderr
    from emu_dgl.training.trainer import METRICS_FILE

    say = announce if announce is not None else to_stderr
    run_dir = run_path(run_dir)
    _prepare(config, run_dir, nproc, resume)
    admission = _admit(config, run_dir, nproc, resume=resume, allow_nonempty=allow_nonempty, kg=kg)
    with admission as (plan, config):
        say(f"run folder: {run_dir}")  # once admitted, before any rank starts
        if plan is not None:
            say(plan.describe())
        try:
            run_workers(
                nproc,
                _train_worker,
                config.to_dict(),
                # the folder as admitted (and locked): a link re-pointed since cannot send
                # the ranks' writes elsewhere
                str(resolve_path(run_dir)),
                plan,
                stop_after,
                kg,
                backend=backend or _backend_for(config.train.device),
            )
        except RankFailure as exc:
            raise RankFailure(f"{exc}; {_resume_advice(run_dir)}") from None
        path = run_dir / METRICS_FILE
        return read_json(path, "metrics file") if lexists(path) else {}


def torchrun_train(
    config: Config,
    run_dir: str | Path,
    *,
    resume: bool = False,
    backend: str | None = None,
    allow_nonempty: bool = False,
    announce: Callable[[str], object] | None = None,
) -> dict[str, Any]:
    """This process's part of a run started by ``torchrun`` (RANK, WORLD_SIZE, MASTER_ADDR
    set). Every rank joins the group first; rank 0 then admits the run and tells the
    others its plan, or the error that refused it (so all of them stop with that line).
    ``announce`` (default: stderr) is rank 0's, as for :func:`train_distributed`."""
    from emu_dgl.files import lexists
    from emu_dgl.training.run import read_json, run_path
    from emu_dgl.training.start import to_stderr
    from emu_dgl.training.trainer import METRICS_FILE

    say = announce if announce is not None else to_stderr
    world_size, rank = int(os.environ["WORLD_SIZE"]), int(os.environ["RANK"])
    run_dir = run_path(run_dir)
    backend = backend or _backend_for(config.train.device)
    if backend == "nccl":  # this process's GPU, before the first collective uses one
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)) % torch.cuda.device_count())
    dist.init_process_group(backend, init_method="env://")
    try:
        with ExitStack() as stack:
            outcome: list[Any] = [None]
            if rank == 0:
                try:
                    _prepare(config, run_dir, world_size, resume)
                    plan, admitted = stack.enter_context(
                        _admit(
                            config,
                            run_dir,
                            world_size,
                            resume=resume,
                            allow_nonempty=allow_nonempty,
                        )
                    )
                    outcome = [("plan", plan, admitted.to_dict())]
                    say(f"run folder: {run_dir}")
                    if plan is not None:
                        say(plan.describe())
                except EmuDglError as exc:
                    outcome = [("error", type(exc).__name__, str(exc))]
            dist.broadcast_object_list(outcome, src=0)
            if outcome[0][0] == "error":
                raise _emu_error(outcome[0][1], outcome[0][2])
            _, plan, config_dict = outcome[0]
            _train_worker(rank, world_size, config_dict, str(run_dir), plan, None, None)
            dist.barrier()  # rank 0's files are written before any rank reads or leaves
            path = run_dir / METRICS_FILE
            return read_json(path, "metrics file") if rank == 0 and lexists(path) else {}
    finally:
        dist.destroy_process_group()
