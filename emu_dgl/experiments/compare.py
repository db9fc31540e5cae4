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

``jobs`` above 1 trains the pending runs as that many concurrent processes, each
through the same code as a run in this process, so the runs and their metrics are the
same as with one job (:mod:`emu_dgl.experiments.jobs`: threads and GPU memory per
process, logs, children that die with the comparison, what counts as finished).
Several small runs on one GPU keep it busier than one.
"""

from __future__ import annotations

import json
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from emu_dgl.config import Config, load_config
from emu_dgl.data import canonical_dataset
from emu_dgl.errors import ConfigError, DataError, EmuDglError, shown
from emu_dgl.evaluation import describe_protocol
from emu_dgl.experiments.jobs import (
    Interrupted,
    Run,
    checkpoint_step,
    finished,
    interrupted_advice,
    results_of,
    sigterm_interrupts,
    train_pending,
)
from emu_dgl.files import path_component
from emu_dgl.training.run import (
    METRICS_LOG,
    RunLock,
    check_empty_folder,
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
    from emu_dgl.training.run import differing_keys, holds_run, with_defaults

    if not holds_run(run_dir):
        return False
    try:
        saved = read_run_config(run_dir)
    except EmuDglError:
        saved = None
    differs = (
        differing_keys(with_defaults(saved), config.to_dict())
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
    if jobs < 1:
        raise ConfigError(f"--jobs must be at least 1, got {jobs}")
    seeds = check_seeds(list(seeds))
    configs = _arm_configs(config_path, overrides, arms, seeds)  # every one before training
    out = run_path(out)
    _check_out(out, allow_nonempty)
    with RunLock(out) as lock:  # one comparison at a time writes results.json and table.md here
        plan = _plan(arms, seeds, out, configs, say)
        pending = [run for run in plan if not run.reused]
        started = time.perf_counter()
        try:
            with sigterm_interrupts():
                train_pending(pending, jobs, out, say, lock.fd)
        except KeyboardInterrupt:
            raise Interrupted(interrupted_advice(plan, out)) from None
        elapsed = time.perf_counter() - started
        runs, positives = _collect(plan)
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


def _arm_configs(
    config_path: str | Path | None, overrides: list[str], arms: list[Arm], seeds: list[int]
) -> dict[tuple[str, int], Config]:
    """The validated config of every arm and seed, its components checked (before any work)."""
    from emu_dgl.training.build import check_components

    for arm in arms:
        path_component(arm.name, "arm name")
    if len({arm.name for arm in arms}) != len(arms):
        raise ConfigError("two --arm options share a name; give each arm its own name")
    configs: dict[tuple[str, int], Config] = {}
    for arm in arms:
        for seed in seeds:
            configs[arm.name, seed] = load_config(
                config_path, [*overrides, *arm.overrides, f"train.seed={seed}"], arm=arm.preset
            )
            check_components(configs[arm.name, seed])
    return configs


def _plan(
    arms: list[Arm],
    seeds: list[int],
    out: Path,
    configs: dict[tuple[str, int], Config],
    say: Callable[[str], None],
) -> list[Run]:
    """Every run of the comparison: reused (finished with the same config, on the same
    data), continued from its checkpoint, or new."""
    graphs: dict[tuple[str, str], Any] = {}
    plan: list[Run] = []
    for arm in arms:
        for seed in seeds:
            run_dir = out / arm.name / f"seed{seed}"
            config = configs[arm.name, seed]
            config.dataset.name = canonical_dataset(config.dataset.name, config.dataset.data_dir)
            existing = _existing_run(run_dir, config)
            reused = existing and finished(run_dir, config) is not None
            if reused:
                _check_same_data(run_dir, config, graphs)
            plan.append(Run(arm.name, seed, run_dir, config, existing, reused))
    for run in plan:
        if run.reused:
            say(f"{run.label}: reused (a finished run of the same config in {run.run_dir})")
        elif run.existing:
            run.start_step = checkpoint_step(run.run_dir)
    return plan


def _collect(plan: list[Run]) -> tuple[list[dict[str, Any]], int]:
    """The results of every run, and the positives trained by this invocation."""
    runs: list[dict[str, Any]] = []
    positives = 0
    for run in plan:
        metrics, wall = results_of(run)
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
    return runs, positives


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


def save_figure(fig: Any, path: Path, *, dpi: int = 120) -> None:
    """A matplotlib figure as PNG through :func:`emu_dgl.files.write_atomic` (no link followed)."""
    import io

    from emu_dgl.files import write_atomic

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    write_atomic(path, buffer.getvalue(), "plot", durable=False)
