"""Side-by-side runs: the same config under several arms (e.g. EMU off / on) and seeds.

Every arm is the base config plus its own ``--set`` overrides; every arm runs every
seed with the same steps, sampler and budget through the ordinary :class:`Trainer`
(nothing is forked). The output directory receives

* ``<arm>/seed<k>/``: the full run directory of each run (config, metrics, checkpoints),
* ``results.json``: every run's final metrics, wall time and validation curve,
* ``table.md``: mean and spread (sample standard deviation) over seeds per arm,
* ``valid_mrr.png``: validation MRR against step for every arm (needs matplotlib, the
  ``[plot]`` extra; without it the command says the plot was skipped).

A run whose folder already holds the same resolved config is not run again (finished)
or is resumed (interrupted), so an interrupted comparison continues where it stopped;
a folder holding a run of other settings is an error, never reported as new.
"""

from __future__ import annotations

import json
import platform
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from emu_dgl.config import Config, load_config
from emu_dgl.data import canonical_dataset
from emu_dgl.errors import ConfigError
from emu_dgl.evaluation import describe_protocol

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
    name = name.strip()
    if (
        not name
        or name.startswith(".")
        or not name.replace("-", "").replace("_", "").replace(".", "").isalnum()
    ):
        raise ConfigError(
            f"--arm '{text}': the name (a folder name) must be letters, digits, '-', '_' or '.'"
        )
    if rest is None:
        return Arm(name, (), preset=name)
    return Arm(name, tuple(part.strip() for part in rest.split(",") if part.strip()))


DEFAULT_ARMS = (Arm("base", ("emu.enabled=false",)), Arm("emu", ("emu.enabled=true",)))


def _existing_run(run_dir: Path, config: Config) -> bool:
    """Whether ``run_dir`` holds a run (finished or not) of exactly ``config``.

    A folder holding a run of other settings is refused rather than reported as new.
    """
    import yaml

    from emu_dgl.training.run import CONFIG_FILE, differing_keys

    path = run_dir / CONFIG_FILE
    if not path.is_file():
        return False
    try:
        saved = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
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


def _valid_curve(run_dir: Path) -> list[tuple[int, float]]:
    curve = []
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record.get("split") == "valid":
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
) -> dict[str, Any]:
    """Run every arm x seed (skipping finished runs) and write results, table and plot."""
    from emu_dgl.training.build import check_components
    from emu_dgl.training.trainer import Trainer

    if len({arm.name for arm in arms}) != len(arms):
        raise ConfigError("two --arm options share a name; give each arm its own name")
    # Validate every arm's config before any training starts.
    configs: dict[tuple[str, int], Config] = {}
    for arm in arms:
        for seed in seeds:
            configs[arm.name, seed] = load_config(
                config_path, [*overrides, *arm.overrides, f"train.seed={seed}"], arm=arm.preset
            )
            check_components(configs[arm.name, seed])
    out.mkdir(parents=True, exist_ok=True)
    runs: list[dict[str, Any]] = []
    for arm in arms:
        for seed in seeds:
            run_dir = out / arm.name / f"seed{seed}"
            config = configs[arm.name, seed]
            config.dataset.name = canonical_dataset(config.dataset.name, config.dataset.data_dir)
            existing = _existing_run(run_dir, config)
            finished = run_dir / "metrics.json"
            if existing and finished.exists() and (run_dir / "wall.json").exists():
                metrics = json.loads(finished.read_text())
                wall = json.loads((run_dir / "wall.json").read_text())["seconds"]
            else:
                start = time.perf_counter()
                trainer = Trainer(config, run_dir)
                trainer.progress_label = f"{arm.name} seed {seed}"
                metrics = trainer.fit(resume=existing)
                wall = time.perf_counter() - start
                (run_dir / "wall.json").write_text(json.dumps({"seconds": wall}))
            runs.append(
                {
                    "arm": arm.name,
                    "seed": seed,
                    "wall_seconds": wall,
                    "valid": metrics["valid"],
                    "test": metrics["test"],
                    "best_step": metrics["best_step"],
                    "curve": _valid_curve(run_dir),
                }
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
    (out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "table.md").write_text(markdown_table(result))
    # not saved in results.json: whether a plot exists says nothing about the runs
    result = {**result, "plotted": plot_curves(result, out / "valid_mrr.png")}
    return result


def markdown_table(result: dict[str, Any]) -> str:
    seeds = len(result["seeds"])
    head = (
        "| arm | "
        + " | ".join(f"{split} {c}" for split in ("valid", "test") for c in COLUMNS)
        + " | wall s |"
    )
    lines = [head, "|" + "---|" * (2 + 2 * len(COLUMNS))]
    for arm in result["arms"]:
        runs = [r for r in result["runs"] if r["arm"] == arm]
        cells = []
        for split in ("valid", "test"):
            for col in COLUMNS:
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
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True
