"""Starting a data-parallel run: ``emu-dgl train --nproc N`` (spawn) or ``torchrun``.

A run on ``N`` processes keeps one folder per rank under ``RUN/ranks/<r>/`` (config,
log, ``checkpoints/last.pt`` and ``best.pt`` holding that rank's block of the entity
table, its optimizer state and the replicated relations), written atomically as in a
one-process run. ``RUN/distributed.json`` records the world size. When training ends,
rank 0 gathers the best entity table and writes what one-process tools read:
``RUN/config.yaml``, ``RUN/checkpoints/best.pt`` (the whole model), ``RUN/metrics.json``
(with ``world_size`` and ``entity_rows_per_rank``) and ``RUN/metrics.jsonl`` (rank 0's
log), so ``emu-dgl evaluate|predict|export RUN`` work on one process afterwards.

Backend: gloo when the run's device is the CPU, NCCL on CUDA (rank ``r`` on GPU
``r mod count``); ``--backend`` on the CLI overrides.

Admission: the launching process (torchrun: rank 0) admits ``RUN`` with
:func:`~emu_dgl.training.run.open_run` for the run's whole life (lock, folder checks, and
on resume the config checked against rank 0's checkpoint); each rank's trainer admits its
own ``ranks/<r>`` folder the same way.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from emu_dgl.config import Config, config_from_dict
from emu_dgl.errors import ConfigError

__all__ = ["run_workers", "torchrun_train", "train_distributed"]

INFO_FILE = "distributed.json"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _backend_for(device: str) -> str:
    wants_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    return "nccl" if wants_cuda else "gloo"


def _entry(
    rank: int,
    world_size: int,
    port: int,
    backend: str,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
) -> None:
    if "OMP_NUM_THREADS" not in os.environ:  # N processes share the cores
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world_size))
    dist.init_process_group(
        backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size
    )
    try:
        fn(rank, world_size, *args)
        dist.barrier()  # no rank leaves while a peer still talks to it
    finally:
        dist.destroy_process_group()
    # The work is written; leave without the interpreter's teardown. There, objects the
    # collectives' C++ threads still hold can be freed after Python is gone, which aborts
    # the process now and then (SIGABRT, "terminate called without an active exception")
    # and would fail a finished run.
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(0)


def run_workers(nproc: int, fn: Callable[..., Any], *args: Any, backend: str = "gloo") -> None:
    """Spawn ``nproc`` processes on this machine; each joins the group and runs
    ``fn(rank, world_size, *args)`` (``fn`` must be importable, e.g. module level)."""
    import torch.multiprocessing as mp

    if nproc < 1:
        raise ConfigError(f"--nproc must be at least 1, got {nproc}")
    mp.spawn(_entry, args=(nproc, _free_port(), backend, fn, args), nprocs=nproc, join=True)


def _prepare(config: Config, run_dir: Path, world_size: int, resume: bool) -> None:
    from emu_dgl.distributed.trainer import check_distributed_config

    check_distributed_config(config, world_size)
    info = run_dir / INFO_FILE
    if resume:
        if not info.is_file():
            raise ConfigError(
                f"'{run_dir}' was not trained on several processes ({INFO_FILE} missing); resume it without --nproc"
            )
        from emu_dgl.training.run import read_json

        record = read_json(info, "distributed record")
        trained = record.get("world_size") if isinstance(record, dict) else None
        if not isinstance(trained, int):
            raise ConfigError(f"'{info}' holds no world size; it is not the file emu-dgl wrote")
        if trained != world_size:
            raise ConfigError(
                f"'{run_dir}' was trained on {trained} processes; resume it with --nproc {trained}"
            )


def _admit(
    config: Config, run_dir: Path, *, resume: bool, allow_nonempty: bool, leader: bool
) -> AbstractContextManager[Any]:
    """The leader's admission of the whole run; the same resume rules as a one-process run,
    checked on rank 0's state (every rank holds the same config) before anything changes."""
    from emu_dgl.training.run import open_run

    if not leader:
        return nullcontext()
    return open_run(
        run_dir,
        config,
        resume=resume,
        allow_nonempty=allow_nonempty,
        state_dir=run_dir / "ranks" / "0" if resume else None,
    )


def _train_worker(
    rank: int,
    world_size: int,
    config_dict: dict[str, Any],
    run_dir: str,
    resume: bool,
    stop_after: int | None,
    kg: Any,
) -> None:
    from emu_dgl.distributed.sharded import gather_rows
    from emu_dgl.distributed.trainer import DistributedTrainer
    from emu_dgl.files import read_bytes, write_atomic
    from emu_dgl.training.checkpoint import save_checkpoint
    from emu_dgl.training.run import write_text
    from emu_dgl.training.trainer import CONFIG_FILE, METRICS_FILE, METRICS_LOG, model_config

    config = config_from_dict(config_dict)
    device = config.train.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):  # one GPU per process of this machine
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', rank)) % torch.cuda.device_count()}"
        torch.cuda.set_device(device)
    config.train.device = device
    root = Path(run_dir)
    if rank == 0 and not resume:
        write_text(root / INFO_FILE, json.dumps({"world_size": world_size}) + "\n", "run record")
        config.dump(root / CONFIG_FILE)  # what --resume reads
    trainer = DistributedTrainer(config, root / "ranks" / str(rank), kg=kg)
    metrics = trainer.fit(resume=resume, stop_after=stop_after)
    if not metrics:  # stopped early on request: the rank checkpoints are the state
        return
    state = {k: v.detach().cpu() for k, v in trainer.model.state_dict().items()}
    full = gather_rows(trainer.model.entity.weight.detach(), trainer.bounds)
    if rank != 0:
        return
    state["entity.weight"] = full.cpu()
    save_checkpoint(
        {"step": metrics["best_step"], "model": state, "model_config": model_config(config)},
        root / "checkpoints" / "best.pt",
    )
    config.dump(root / CONFIG_FILE)
    log = read_bytes(trainer.run_dir / METRICS_LOG, "metrics log")
    write_atomic(root / METRICS_LOG, log, "metrics log")
    metrics.update(world_size=world_size, entity_rows_per_rank=trainer.entity_rows_per_rank)
    write_text(root / METRICS_FILE, json.dumps(metrics, indent=2) + "\n", "metrics file")


def _say_run_folder(run_dir: Path) -> None:
    """Once admitted, before any work: where the run goes (as a one-process run says it)."""
    print(f"run folder: {run_dir}", file=sys.stderr, flush=True)


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
) -> dict[str, Any]:
    """Train one run on ``nproc`` spawned processes; returns metrics.json's content
    (``{}`` when ``stop_after`` ended the run early, as for :meth:`Trainer.fit`)."""
    from emu_dgl.training.run import read_json, run_path
    from emu_dgl.training.trainer import METRICS_FILE

    run_dir = run_path(run_dir)
    _prepare(config, run_dir, nproc, resume)
    with _admit(config, run_dir, resume=resume, allow_nonempty=allow_nonempty, leader=True):
        _say_run_folder(run_dir)
        (run_dir / METRICS_FILE).unlink(missing_ok=True)
        run_workers(
            nproc,
            _train_worker,
            config.to_dict(),
            str(run_dir),
            resume,
            stop_after,
            kg,
            backend=backend or _backend_for(config.train.device),
        )
        path = run_dir / METRICS_FILE
        return read_json(path, "metrics file") if path.is_file() else {}


def torchrun_train(
    config: Config,
    run_dir: str | Path,
    *,
    resume: bool = False,
    backend: str | None = None,
    allow_nonempty: bool = False,
) -> dict[str, Any]:
    """This process's part of a run started by ``torchrun`` (RANK, WORLD_SIZE, MASTER_ADDR set)."""
    from emu_dgl.training.run import read_json, run_path

    world_size, rank = int(os.environ["WORLD_SIZE"]), int(os.environ["RANK"])
    run_dir = run_path(run_dir)
    _prepare(config, run_dir, world_size, resume)
    leader = rank == 0
    with _admit(config, run_dir, resume=resume, allow_nonempty=allow_nonempty, leader=leader):
        if leader:
            _say_run_folder(run_dir)
        dist.init_process_group(backend or _backend_for(config.train.device), init_method="env://")
        try:
            _train_worker(rank, world_size, config.to_dict(), str(run_dir), resume, None, None)
            dist.barrier()  # rank 0's files are written before any rank reads or leaves
        finally:
            dist.destroy_process_group()
        path = run_dir / "metrics.json"
        return read_json(path, "metrics file") if leader and path.is_file() else {}
