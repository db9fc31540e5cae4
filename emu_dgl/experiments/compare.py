"""Side-by-side runs: the same config under several arms (e.g. EMU off / on) and seeds.

Every arm is the base config plus its own ``--set`` overrides; every arm runs every
seed with the same steps, sampler and budget through the ordinary :class:`Trainer`
(nothing is forked). The output directory receives

* ``<arm>/seed<k>/``: the full run directory of each run (config, metrics, checkpoints),
* ``results.json``: every run's final metrics, wall time and validation curve,
* ``table.md``: mean and spread (sample standard deviation) over seeds per arm,
* ``valid_mrr.png``: validation MRR against step for every arm (needs matplotlib, the
  ``[plot]`` extra; without it the command says the plot was skipped).

A run whose folder already holds the same resolved config, trained on the same data
(its data fingerprint), is not run again (finished) or is resumed (interrupted), so an
interrupted comparison continues where it stopped; a folder holding a run of other
settings or other data is an error, never reported as new. Arm names become folder
names and must each be one safe name; seeds must be distinct. ``OUT`` must be new,
empty, or hold an earlier comparison (``allow_nonempty`` writes into another folder).

``jobs`` above 1 trains the pending runs as that many concurrent processes (this module
run as ``python -m emu_dgl.experiments.compare SPEC``), each through the same
:func:`_train_one` as a run in this process, so the runs and their metrics are the same
as with one job. Each process gets ``cores / jobs`` CPU threads unless ``train.threads``
is set, and on a GPU a ``1 / jobs`` share of its memory; its output goes to
``logs/<arm>-seed<k>.log``. Several small runs on one GPU keep it busier than one.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from emu_dgl.config import Config, config_from_dict, load_config
from emu_dgl.data import canonical_dataset
from emu_dgl.errors import ConfigError, DataError, EmuDglError, RunError, shown
from emu_dgl.evaluation import describe_protocol
from emu_dgl.experiments.pace import Pace
from emu_dgl.files import make_dir, path_component
from emu_dgl.training.run import (
    METRICS_FILE,
    METRICS_LOG,
    RunLock,
    check_empty_folder,
    open_run,
    read_json,
    read_run_config,
    run_path,
    write_text,
)

COLUMNS = ("mrr", "hits@1", "hits@3", "hits@10")


@dataclass(frozen=True)
class Arm:
    name: str
    overrides: tuple[str, ...]
    preset: str | None = None  # a named arm of the config file (its ``arms:`` section)


def parse_arm(text: str) -> Arm:
    """``'emu:emu.enabled=true,emu.p=0.39'`` -> Arm('emu', (...)); ``'base:'`` has no overrides;
    ``'sans-base'`` (no colon) is the config file's arm of that name."""
    name, rest = text.split(":", 1) if ":" in text else (text, None)
    name = path_component(name.strip(), "--arm name")
    if rest is None:
        return Arm(name, (), preset=name)
    return Arm(name, tuple(part.strip() for part in rest.split(",") if part.strip()))


DEFAULT_ARMS = (Arm("base", ("emu.enabled=false",)), Arm("emu", ("emu.enabled=true",)))


def parse_seeds(text: str) -> list[int]:
    """``"0,1,2"`` -> [0, 1, 2]; a ConfigError for anything but distinct integers."""
    seeds = []
    for part in text.split(","):
        if not part.strip():
            continue
        try:
            seeds.append(int(part.strip()))
        except ValueError:
            raise ConfigError(
                f"--seeds {shown(text)}: {shown(part.strip())} is not an integer; give e.g. --seeds 0,1,2"
            ) from None
    return check_seeds(seeds)


def check_seeds(seeds: list[int]) -> list[int]:
    """``seeds`` if it is a non-empty list of distinct integers (one run each)."""
    if not seeds:
        raise ConfigError("--seeds names no seed; give e.g. --seeds 0,1,2")
    repeated = sorted({s for s in seeds if seeds.count(s) > 1})
    if repeated:
        raise ConfigError(
            f"--seeds lists {', '.join(map(str, repeated))} more than once: a run counted twice would "
            "shrink the spread; give each seed once"
        )
    return list(seeds)


#: What a comparison folder holds besides its ``<arm>/seed<k>/`` runs.
COMPARISON_FILES = frozenset({"results.json", "table.md", "valid_mrr.png", "logs"})


def _check_out(out: Path, allow_nonempty: bool) -> None:
    """``out`` must be new, empty or an earlier comparison (files above, folders of seed runs)."""
    if not out.is_dir():
        return

    def arm_folder(path: Path) -> bool:
        return (
            path.is_dir()
            and not path.is_symlink()
            and all(p.name.startswith("seed") and p.is_dir() for p in path.iterdir())
        )

    own = frozenset(p.name for p in out.iterdir() if p.name in COMPARISON_FILES or arm_folder(p))
    check_empty_folder(out, "comparison", allow_nonempty=allow_nonempty, own=own)


def _existing_run(run_dir: Path, config: Config) -> bool:
    """Whether ``run_dir`` holds a run (finished or not) of exactly ``config``.

    A folder holding a run of other settings is refused rather than reported as new.
    """
    from emu_dgl.training.run import differing_keys, holds_run

    if not holds_run(run_dir):
        return False
    try:
        saved = read_run_config(run_dir)
    except EmuDglError:
        saved = None
    differs = (
        differing_keys(saved, config.to_dict())
        if isinstance(saved, dict)
        else ["config.yaml unreadable"]
    )
    if differs:
        raise ConfigError(
            f"'{run_dir}' holds a run with other settings ({', '.join(differs[:4])} differ); "
            "choose another --out, or delete that folder to run it again"
        )
    return True


def _check_same_data(run_dir: Path, config: Config, graphs: dict[tuple[str, str], Any]) -> None:
    """Refuse to reuse a finished run whose dataset files changed since it was trained."""
    from emu_dgl.data import load_dataset
    from emu_dgl.training.run import match_data, read_data_record

    key = (config.dataset.name, str(config.dataset.data_dir))
    if key not in graphs:
        graphs[key] = load_dataset(config.dataset.name, config.dataset.data_dir)
    try:
        match_data(graphs[key], read_data_record(run_dir), run_dir)
    except DataError as exc:
        raise ConfigError(
            f"'{run_dir}' holds a run trained on other data ({exc}); choose another --out, "
            "or delete that folder to run it again"
        ) from None


def _valid_curve(run_dir: Path) -> list[tuple[int, float]]:
    """(step, valid MRR) of every validation in the run's log (lines cut or edited skipped)."""
    from emu_dgl.files import read_bytes

    curve = []
    for line in (
        read_bytes(run_dir / METRICS_LOG, "metrics log").decode(errors="replace").splitlines()
    ):
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if (
            isinstance(record, dict)
            and record.get("split") == "valid"
            and isinstance(record.get("step"), int)
            and isinstance(record.get("mrr"), int | float)
        ):
            curve.append((record["step"], record["mrr"]))
    return curve


def _finished(run_dir: Path) -> tuple[dict[str, Any], float] | None:
    """(final metrics, wall seconds) of a finished run, or None (unfinished, or its files
    cut short: resuming it writes them again)."""
    try:
        metrics = read_json(run_dir / METRICS_FILE, "metrics file")
        wall = read_json(run_dir / "wall.json", "wall-time record")["seconds"]
    except (EmuDglError, TypeError, KeyError):
        return None
    ok = isinstance(metrics, dict) and all(
        isinstance(metrics.get(k), dict) for k in ("valid", "test")
    )
    return (metrics, float(wall)) if ok and isinstance(wall, int | float) else None


@dataclass
class _Run:
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


def _train_one(
    config: Config,
    run_dir: Path,
    resume: bool,
    label: str,
    say: Callable[[str], object] = print,
    hooks: tuple[Callable[[dict[str, Any]], None], ...] = (),
) -> None:
    """Train (or resume) one run and record its wall time; every job count runs this."""
    from emu_dgl.training.start import start_run

    start = time.perf_counter()
    with open_run(run_dir, config, resume=resume):  # held until wall.json is written too
        start_run(
            config,
            run_dir,
            resume=resume,
            say=lambda line: say(f"{label}: {line}"),  # its run folder first
            details=False,
            label=label,
            hooks=hooks,
        )
        seconds = time.perf_counter() - start
        write_text(
            run_dir / "wall.json", json.dumps({"seconds": seconds}) + "\n", "wall-time record"
        )


def _checkpoint_step(run_dir: Path) -> int:
    """The step of an interrupted run's last checkpoint (0 when there is none readable)."""
    from emu_dgl.training.checkpoint import load_checkpoint

    try:
        return int(load_checkpoint(run_dir / "checkpoints" / "last.pt")["step"])
    except (EmuDglError, OSError, KeyError, TypeError, ValueError):
        return 0


def _results_of(run: _Run) -> tuple[dict[str, Any], float]:
    done = _finished(run.run_dir)
    if done is None:
        raise RunError(
            f"'{run.run_dir}' has no complete metrics after training; run the compare again"
        )
    return done


def _done_line(run: _Run) -> str:
    metrics, wall = _results_of(run)
    rate = metrics["train_steps_per_second"] * run.config.train.batch_size
    return (
        f"{run.label}: finished in {wall:.0f} s, test MRR {metrics['test']['mrr']:.4f}, "
        f"{rate:,.0f} positives/s"
    )


def _usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _threads(run: _Run, jobs: int) -> int:
    """CPU threads of one of ``jobs`` concurrent runs: its own setting, else a share of the cores."""
    return run.config.train.threads or max(1, _usable_cores() // jobs)


def _train_concurrently(
    pending: list[_Run], jobs: int, out: Path, say: Callable[[str], None], pace: Pace
) -> None:
    """Train ``pending`` as up to ``jobs`` child processes at once, one line per run."""
    logs = make_dir(out / "logs", "compare log folder", allow_link=False)
    share = 1.0 / min(jobs, len(pending))  # of a GPU's memory, per process
    # The children import this very package, whatever else is installed.
    package_root = str(Path(__file__).resolve().parents[2])
    path = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)
    queue, running = list(pending), {}
    launched: dict[Any, float] = {}
    failures: list[str] = []
    try:
        while queue or running:
            while queue and len(running) < jobs:
                run = queue.pop(0)
                threads = _threads(run, jobs)
                spec = {
                    "config": run.config.to_dict(),
                    "run_dir": str(run.run_dir),
                    "resume": run.existing,
                    "label": run.label,
                    "threads": threads,
                    "memory_fraction": share,
                }
                log = logs / f"{run.arm}-seed{run.seed}.log"
                flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
                handle = os.open(log, flags, 0o644)
                try:
                    proc = subprocess.Popen(
                        [sys.executable, "-m", "emu_dgl.experiments.compare", json.dumps(spec)],
                        stdout=handle,
                        stderr=subprocess.STDOUT,
                        env={**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": path},
                    )
                finally:
                    os.close(handle)
                running[proc] = (run, log)
                launched[proc] = time.perf_counter()
                say(f"{run.label}: run folder {run.run_dir} (log {log})")  # first, as for one job
            time.sleep(0.2)
            for proc in running:
                pace.poll(running[proc][0].run_dir, running[proc][0].start_step, launched[proc])
            for proc in [p for p in running if p.poll() is not None]:
                run, log = running.pop(proc)
                pace.poll(run.run_dir, run.start_step, launched.pop(proc))
                if proc.returncode == 0:
                    say(_done_line(run) + f" (log {log})")
                else:
                    lines = log.read_text(errors="replace").strip().splitlines() or ["no output"]
                    failures.append(f"{run.label}: {lines[-1]}")
                    say(f"{run.label}: FAILED (exit {proc.returncode}), see {log}")
    finally:
        for proc in running:  # interrupted: stop the others; each resumes from its checkpoint
            proc.terminate()
            proc.wait()
    if failures:
        raise RunError(
            f"{len(failures)} of {len(pending)} runs failed ({failures[0]}); their logs are in "
            f"{logs}; the finished runs are kept and the same compare again reuses them"
        )


def _worker(spec_json: str) -> int:
    """One run of ``--jobs N`` in its own process (the entry point of ``python -m``)."""
    from emu_dgl.device import resolve_device

    spec = json.loads(spec_json)
    try:
        config = config_from_dict(spec["config"])
        config.train.threads = spec["threads"]  # no effect on the results (NO_EFFECT)
        config.train.progress = False
        device = resolve_device(config.train.device)
        if device.type == "cuda" and spec["memory_fraction"] < 1:
            torch.cuda.set_per_process_memory_fraction(spec["memory_fraction"], device)
        _train_one(config, Path(spec["run_dir"]), spec["resume"], spec["label"])
    except EmuDglError as exc:
        print(f"error: {exc}", flush=True)
        return 2
    return 0


def _summary(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def run_comparison(
    config_path: str | Path | None,
    overrides: list[str],
    arms: list[Arm],
    seeds: list[int],
    out: Path,
    *,
    allow_nonempty: bool = False,
    jobs: int = 1,
    say: Callable[[str], None] = lambda line: None,
) -> dict[str, Any]:
    """Run every arm x seed (skipping finished runs) and write results, table and plot.

    ``jobs``: how many runs train at once, as separate processes (1: one after the other,
    in this process). ``say`` receives one line per run (reused, finished or failed) and
    the aggregate throughput. The returned dict also holds ``throughput`` (not saved).
    """
    from emu_dgl.training.build import check_components

    if jobs < 1:
        raise ConfigError(f"--jobs must be at least 1, got {jobs}")
    for arm in arms:
        path_component(arm.name, "arm name")
    if len({arm.name for arm in arms}) != len(arms):
        raise ConfigError("two --arm options share a name; give each arm its own name")
    seeds = check_seeds(list(seeds))
    out = run_path(out)
    # Validate every arm's config before any training starts.
    configs: dict[tuple[str, int], Config] = {}
    for arm in arms:
        for seed in seeds:
            configs[arm.name, seed] = load_config(
                config_path, [*overrides, *arm.overrides, f"train.seed={seed}"], arm=arm.preset
            )
            check_components(configs[arm.name, seed])
    _check_out(out, allow_nonempty)
    graphs: dict[tuple[str, str], Any] = {}
    runs: list[dict[str, Any]] = []
    with RunLock(out):  # one comparison at a time writes results.json and table.md here
        plan: list[_Run] = []
        for arm in arms:
            for seed in seeds:
                run_dir = out / arm.name / f"seed{seed}"
                config = configs[arm.name, seed]
                config.dataset.name = canonical_dataset(
                    config.dataset.name, config.dataset.data_dir
                )
                existing = _existing_run(run_dir, config)
                reused = existing and _finished(run_dir) is not None
                if reused:
                    _check_same_data(run_dir, config, graphs)
                plan.append(_Run(arm.name, seed, run_dir, config, existing, reused))
        pending = [run for run in plan if not run.reused]
        for run in plan:
            if run.reused:
                say(f"{run.label}: reused (a finished run of the same config in {run.run_dir})")
            elif run.existing:
                run.start_step = _checkpoint_step(run.run_dir)
        started = time.perf_counter()
        pace = Pace([r.config.train.max_steps - r.start_step for r in pending], jobs, say)
        if jobs == 1:
            for run in pending:
                _train_one(
                    run.config,
                    run.run_dir,
                    run.existing,
                    run.label,
                    say,
                    (pace.hook(run.start_step),),
                )
                say(_done_line(run))
        elif pending:
            say(
                f"training {len(pending)} runs, {min(jobs, len(pending))} at a time "
                f"({_threads(pending[0], jobs)} thread(s) each; logs in {out / 'logs'})"
            )
            _train_concurrently(pending, jobs, out, say, pace)
        elapsed = time.perf_counter() - started
        runs: list[dict[str, Any]] = []
        positives = 0
        for run in plan:
            metrics, wall = _results_of(run)
            if not run.reused:
                positives += (metrics["steps"] - run.start_step) * run.config.train.batch_size
            runs.append(
                {
                    "arm": run.arm,
                    "seed": run.seed,
                    "wall_seconds": wall,
                    "valid": metrics["valid"],
                    "test": metrics["test"],
                    "best_step": metrics["best_step"],
                    "curve": _valid_curve(run.run_dir),
                }
            )
        throughput = {
            "runs_trained": len(pending),
            "jobs": jobs,
            "wall_seconds": elapsed,
            "positives_per_second": positives / elapsed if pending else 0.0,
        }
        if pending:
            say(
                f"{len(pending)} run(s) in {elapsed:.0f} s with --jobs {jobs}: "
                f"{throughput['positives_per_second']:,.0f} positives/s in aggregate "
                "(training and evaluation time included)"
            )
        result = {
            "arms": {
                arm.name: ([f"arm={arm.preset}"] if arm.preset else []) + list(arm.overrides)
                for arm in arms
            },
            "base_overrides": overrides,
            "config": str(config_path) if config_path else None,
            "seeds": seeds,
            "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
            "runs": runs,
        }
        write_text(out / "results.json", json.dumps(result, indent=2) + "\n", "comparison results")
        write_text(out / "table.md", markdown_table(result), "comparison table")
        # not saved in results.json: whether a plot exists says nothing about the runs, and
        # the throughput is that of this invocation
        plotted = plot_curves(result, out / "valid_mrr.png")
        return {**result, "plotted": plotted, "throughput": throughput}


def _columns(result: dict[str, Any]) -> tuple[str, ...]:
    """MRR and the Hits@k the runs report (``eval.hits_at``), as in :data:`COLUMNS` by default."""
    first = result["runs"][0]["test"] if result["runs"] else {}
    hits = sorted((k for k in first if k.startswith("hits@")), key=lambda k: int(k[5:]))
    return ("mrr", *hits) if hits else COLUMNS


def markdown_table(result: dict[str, Any]) -> str:
    seeds = len(result["seeds"])
    columns = _columns(result)
    head = (
        "| arm | "
        + " | ".join(f"{split} {c}" for split in ("valid", "test") for c in columns)
        + " | wall s |"
    )
    lines = [head, "|" + "---|" * (2 + 2 * len(columns))]
    for arm in result["arms"]:
        runs = [r for r in result["runs"] if r["arm"] == arm]
        cells = []
        for split in ("valid", "test"):
            for col in columns:
                mean, spread = _summary([r[split][col] for r in runs])
                cells.append(f"{mean:.4f} ± {spread:.4f}" if seeds > 1 else f"{mean:.4f}")
        wall, _ = _summary([r["wall_seconds"] for r in runs])
        lines.append(f"| {arm} | " + " | ".join(cells) + f" | {wall:.0f} |")
    protocols = dict.fromkeys(describe_protocol(r["test"]) for r in result["runs"])
    note = (
        f"\nMean{' ± sample std' if seeds > 1 else ''} over {seeds} seed(s); filtered ranks, "
        f"both sides. {' / '.join(protocols)}.\n"
    )
    return "\n".join(lines) + "\n" + note


def plot_curves(result: dict[str, Any], path: Path) -> bool:
    """Validation MRR against step, one line per run, one colour per arm; False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(6, 4))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, arm in enumerate(result["arms"]):
        for j, run in enumerate(r for r in result["runs"] if r["arm"] == arm):
            steps, mrr = zip(*run["curve"], strict=True) if run["curve"] else ((), ())
            ax.plot(
                steps,
                mrr,
                color=colours[i % len(colours)],
                alpha=0.8,
                marker=".",
                label=arm if j == 0 else None,
            )
    ax.set_xlabel("step")
    ax.set_ylabel("validation MRR (filtered)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
    return True


def save_figure(fig: Any, path: Path) -> None:
    """A matplotlib figure as PNG through :func:`emu_dgl.files.write_atomic` (no link followed)."""
    import io

    from emu_dgl.files import write_atomic

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    write_atomic(path, buffer.getvalue(), "plot", durable=False)


if __name__ == "__main__":  # one run of ``--jobs N``: python -m emu_dgl.experiments.compare SPEC
    sys.exit(_worker(sys.argv[1]))
