"""Training the runs of a comparison: one after the other in this process, or as child
processes (``compare --jobs N``), and what a run's folder says about it.

A child is this module run as ``python -m emu_dgl.experiments.jobs SPEC``; it trains
through the same :func:`train_one` as a run in this process, so the runs and their
metrics are the same whatever the job count. Each child gets ``cores / jobs`` CPU
threads unless ``train.threads`` is set, and on a GPU a ``1 / jobs`` share of its
memory; its output goes to ``OUT/logs/<arm>-seed<k>.log``, opened without following
links (a planted link, hard link or FIFO there is refused in one line, never written
through or waited on). The children die with the comparison: stopped (Ctrl-C, SIGTERM)
it stops them, and killed outright they get SIGTERM from the kernel (Linux
``PR_SET_PDEATHSIG``); they also hold the comparison's lock, so no second comparison
starts over a child still running.

A run counts as finished only when its ``metrics.json`` covers its configured steps (or
it stopped early) and its wall time is final; ``wall.json`` adds up every segment of a
run that was interrupted and resumed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from emu_dgl.config import Config, config_from_dict
from emu_dgl.errors import EmuDglError, RunError
from emu_dgl.experiments.pace import Pace
from emu_dgl.files import make_dir, open_log, resolve_path
from emu_dgl.training.run import METRICS_FILE, open_run, read_json, write_text

WALL_FILE = "wall.json"


def read_wall(run_dir: Path) -> dict[str, Any]:
    """The run's wall-time record (``{}`` when missing or not the file emu-dgl wrote)."""
    try:
        wall = read_json(run_dir / WALL_FILE, "wall-time record")
    except EmuDglError:
        return {}
    ok = isinstance(wall, dict) and isinstance(wall.get("seconds"), int | float)
    return wall if ok else {}


def finished(run_dir: Path, config: Config) -> tuple[dict[str, Any], float] | None:
    """(final metrics, wall seconds) of a run finished as ``config`` says, or None: not
    finished, its files cut short, or metrics of fewer steps than ``train.max_steps`` (a run
    extended with --resume and stopped before its new end). Resuming it writes them again."""
    try:
        metrics = read_json(run_dir / METRICS_FILE, "metrics file")
    except EmuDglError:
        return None
    wall = read_wall(run_dir)
    ok = (
        isinstance(metrics, dict)
        and all(isinstance(metrics.get(k), dict) for k in ("valid", "test"))
        and (metrics.get("steps") == config.train.max_steps or metrics.get("stopped_early") is True)
        and bool(wall)
        and wall.get("final", True) is True
    )
    return (metrics, float(wall["seconds"])) if ok else None


@dataclass
class Run:
    """One arm x seed of a comparison, and what is known of its folder before running."""

    arm: str
    seed: int
    run_dir: Path
    config: Config
    existing: bool  # the folder holds this run (finished or interrupted)
    reused: bool  # finished: its metrics are taken as they are
    start_step: int = 0  # the step an interrupted run resumes from

    @property
    def label(self) -> str:
        return f"{self.arm} seed {self.seed}"


#: How often the wall time of a run in progress is recorded (for a resume to add it up).
WALL_EVERY_SECONDS = 10.0


def train_one(
    config: Config,
    run_dir: Path,
    resume: bool,
    label: str,
    say: Callable[[str], object] = print,
    hooks: tuple[Callable[[dict[str, Any]], None], ...] = (),
) -> None:
    """Train (or resume) one run and record its wall time; every job count runs this.

    ``wall.json`` holds the seconds of every segment of the run: the earlier segments'
    (read before the trainer removes an extended run's old final records) plus this
    one's, written as it goes (``final: false``) and once more at the end."""
    from emu_dgl.training.start import start_run

    start = time.perf_counter()
    with open_run(run_dir, config, resume=resume) as run:  # held until wall.json is written
        earlier = float(read_wall(run_dir).get("seconds", 0.0)) if run.resumed else 0.0
        last = [-WALL_EVERY_SECONDS]  # the first log line records it at once

        def record(final: bool) -> None:
            now = time.perf_counter()
            wall = {"seconds": earlier + now - start, "final": final}
            write_text(run_dir / WALL_FILE, json.dumps(wall) + "\n", "wall-time record")
            last[0] = now

        def progress(line: dict[str, Any]) -> None:
            if time.perf_counter() - last[0] >= WALL_EVERY_SECONDS:
                record(final=False)

        start_run(
            config,
            run_dir,
            resume=resume,
            say=lambda line: say(f"{label}: {line}"),  # its run folder first
            details=False,
            label=label,
            hooks=(progress, *hooks),
        )
        record(final=True)


def checkpoint_step(run_dir: Path) -> int:
    """The step of an interrupted run's last checkpoint (0 when there is none readable)."""
    from emu_dgl.training.checkpoint import load_checkpoint

    try:
        return int(load_checkpoint(run_dir / "checkpoints" / "last.pt")["step"])
    except (EmuDglError, OSError, KeyError, TypeError, ValueError):
        return 0


def results_of(run: Run) -> tuple[dict[str, Any], float]:
    done = finished(run.run_dir, run.config)
    if done is None:
        raise RunError(
            f"'{run.run_dir}' has no complete metrics after training; run the compare again"
        )
    return done


def done_line(run: Run) -> str:
    metrics, wall = results_of(run)
    rate = metrics["train_steps_per_second"] * run.config.train.batch_size
    return (
        f"{run.label}: finished in {wall:.0f} s, test MRR {metrics['test']['mrr']:.4f}, "
        f"{rate:,.0f} positives/s"
    )


def _usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _threads(run: Run, jobs: int) -> int:
    """CPU threads of one of ``jobs`` concurrent runs: its own setting, else a share of the cores."""
    return run.config.train.threads or max(1, _usable_cores() // jobs)


def _log_path(out: Path, run: Run) -> Path:
    return out / "logs" / f"{run.arm}-seed{run.seed}.log"


def _start_child(run: Run, jobs: int, share: float, log: Path, lock_fd: int) -> Any:
    """One run as a child process writing to ``log``: this very package, its share of the
    threads (and of a GPU's memory), dying with this process, holding the comparison's lock."""
    threads = _threads(run, jobs)
    spec = {
        "config": run.config.to_dict(),
        "run_dir": str(
            resolve_path(run.run_dir)
        ),  # the folder as admitted, not a link's target now
        "resume": run.existing,
        "label": run.label,
        "threads": threads,
        "memory_fraction": share,
        "parent": os.getpid(),
    }
    package_root = str(Path(__file__).resolve().parents[2])
    path = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)
    handle = open_log(log, "compare log")  # a link, hard link or FIFO there: one line, no wait
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "emu_dgl.experiments.jobs", json.dumps(spec)],
            stdout=handle,
            stderr=subprocess.STDOUT,
            env={**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": path},
            pass_fds=(lock_fd,) if lock_fd >= 0 else (),
        )
    finally:
        os.close(handle)


def _failure(code: int, log: Path) -> str:
    """Why a child failed: the signal that killed it, else its log's last line."""
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"killed by {name}"
    try:
        from emu_dgl.files import read_text

        lines = read_text(log, "compare log").strip().splitlines()
    except EmuDglError:
        lines = []
    return lines[-1] if lines else "no output"


def _train_concurrently(
    pending: list[Run],
    jobs: int,
    out: Path,
    say: Callable[[str], None],
    pace: Pace,
    lock_fd: int = -1,
) -> None:
    """Train ``pending`` as up to ``jobs`` child processes at once, one line per run."""
    logs = make_dir(out / "logs", "compare log folder", allow_link=False)
    for run in pending:  # every log name checked before any run starts
        os.close(open_log(_log_path(out, run), "compare log"))
    share = 1.0 / min(jobs, len(pending))  # of a GPU's memory, per process
    queue, running = list(pending), {}
    launched: dict[Path, float] = {}
    failures: list[str] = []
    try:
        while queue or running:
            while queue and len(running) < jobs:
                run = queue.pop(0)
                log = _log_path(out, run)
                running[_start_child(run, jobs, share, log, lock_fd)] = (run, log)
                launched[run.run_dir] = time.perf_counter()
                say(f"{run.label}: run folder {run.run_dir} (log {log})")  # first, as for one job
            time.sleep(0.2)
            for run, _ in running.values():
                pace.poll(run.run_dir, run.start_step, launched[run.run_dir])
            for proc in [p for p in running if p.poll() is not None]:
                run, log = running.pop(proc)
                pace.poll(run.run_dir, run.start_step, launched[run.run_dir])
                if proc.returncode == 0:
                    say(done_line(run) + f" (log {log})")
                else:
                    reason = _failure(proc.returncode, log)
                    failures.append(f"{run.label}: {reason}")
                    code = reason if proc.returncode < 0 else f"exit {proc.returncode}"
                    say(f"{run.label}: FAILED ({code}), see {log}")
    finally:
        for proc in running:  # interrupted: stop the others; each resumes from its checkpoint
            proc.terminate()
        for proc in running:
            proc.wait()
    if failures:
        raise RunError(
            f"{len(failures)} of {len(pending)} runs failed ({failures[0]}); their logs are in "
            f"{logs}; the finished runs are kept and the same compare again reuses them"
        )


def _die_with_parent(parent: int) -> None:
    """Ask the kernel to send this process SIGTERM when its parent dies (Linux), and leave
    at once if the parent is gone already: a child of a killed comparison never runs on."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        try:
            ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGTERM))
        except (OSError, AttributeError):  # pragma: no cover - no prctl in this libc
            pass
    if os.getppid() != parent:
        os._exit(1)


def _worker(spec_json: str) -> int:
    """One run of ``--jobs N`` in its own process (the entry point of ``python -m``)."""
    from emu_dgl.device import resolve_device

    spec = json.loads(spec_json)
    if "parent" in spec:
        _die_with_parent(int(spec["parent"]))
    try:
        config = config_from_dict(spec["config"])
        config.train.threads = spec["threads"]  # no effect on the results (NO_EFFECT)
        config.train.progress = False
        device = resolve_device(config.train.device)
        if device.type == "cuda" and spec["memory_fraction"] < 1:
            torch.cuda.set_per_process_memory_fraction(spec["memory_fraction"], device)
        train_one(config, Path(spec["run_dir"]), spec["resume"], spec["label"])
    except EmuDglError as exc:
        print(f"error: {exc}", flush=True)
        return 2
    return 0


class Interrupted(KeyboardInterrupt):
    """A comparison stopped by Ctrl-C or SIGTERM; ``advice`` says how to continue it."""

    def __init__(self, advice: str) -> None:
        super().__init__(advice)
        self.advice = advice


@contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """SIGTERM stops a comparison as Ctrl-C does: its children are stopped, not orphaned."""

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, stop)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def interrupted_advice(plan: list[Run], out: Path) -> str:
    """What an interrupted comparison left and how to continue it: the same command."""
    done, kept, fresh = [], [], []
    for run in plan:
        if run.reused or finished(run.run_dir, run.config) is not None:
            done.append(run.label)
        elif (step := checkpoint_step(run.run_dir)) > 0:
            kept.append(f"{run.label} (step {step})")
        else:
            fresh.append(run.label)
    parts = []
    if kept:
        parts.append(f"checkpoints kept for {', '.join(kept)}")
    else:
        parts.append("no run had written a checkpoint yet")
    if fresh and kept:
        parts.append(f"{', '.join(fresh)} start from step 0")
    if done:
        parts.append(f"{len(done)} finished run(s) are reused")
    return (
        f"the comparison in '{out}' was stopped: {'; '.join(parts)}. Continue it by running the "
        "same 'emu-dgl compare' command again (same --out): finished runs are reused and "
        "interrupted ones resume from their checkpoints"
    )


def train_pending(
    pending: list[Run], jobs: int, out: Path, say: Callable[[str], None], lock_fd: int
) -> None:
    """Train the runs of a comparison that are not finished: here one after the other, or
    as up to ``jobs`` child processes; the planned steps first, an estimate after the first
    validation (:class:`~emu_dgl.experiments.pace.Pace`)."""
    pace = Pace([r.config.train.max_steps - r.start_step for r in pending], jobs, say)
    if jobs == 1:
        for run in pending:
            hooks = (pace.hook(run.start_step),)
            train_one(run.config, run.run_dir, run.existing, run.label, say, hooks)
            say(done_line(run))
    elif pending:
        say(
            f"training {len(pending)} runs, {min(jobs, len(pending))} at a time "
            f"({_threads(pending[0], jobs)} thread(s) each; logs in {out / 'logs'})"
        )
        _train_concurrently(pending, jobs, out, say, pace, lock_fd)


if __name__ == "__main__":  # one run of ``--jobs N``: python -m emu_dgl.experiments.jobs SPEC
    sys.exit(_worker(sys.argv[1]))
