"""Hyperparameter search with Optuna: ``emu-dgl tune``.

Each trial is an ordinary training run (``OUT/trials/trial-NNNN``) of the base config
plus the trial's values. Its validation metric (``eval.metric``, MRR by default) at
every ``train.valid_every`` is reported to Optuna, which prunes trials that fall
below the median of earlier trials at the same step. The trial's value is the final
validation metric of its best checkpoint; the test split is never looked at to choose.

The study lives in a storage (default: SQLite ``OUT/study.db``), so running the same
command again adds trials to the same study. After every call, ``OUT`` holds

* ``best.yaml``: the resolved config of the best trial, ready for ``emu-dgl train --config``;
* ``trials.csv`` and ``trials.md``: every trial's state, value and parameters;
* ``trials.png``: the value of each trial and the best so far (with matplotlib).

The search space is a YAML mapping from config keys to distributions::

    emu.p: {type: float, low: 0.1, high: 0.9}
    train.lr: {type: float, low: 0.01, high: 0.5, log: true}
    model.dim: {type: categorical, choices: [50, 100, 200]}
    sampler.num_negatives: {type: int, low: 32, high: 256, step: 32}

Optuna comes with ``pip install "emu-dgl[tune]"``.
"""

from __future__ import annotations

import csv
import difflib
import io
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from emu_dgl.config import MAX_SEED, Config, load_config
from emu_dgl.errors import ConfigError, DivergenceError, shown
from emu_dgl.training.build import check_components
from emu_dgl.training.run import check_empty_folder, run_path, write_text

__all__ = ["DEFAULT_SPACE", "Param", "TuneResult", "load_space", "run_study"]

# EMU's three knobs and the learning rate; ranges around the published values
# (p = 0.39, lambda = 0.53, c = 0.11).
DEFAULT_SPACE: dict[str, dict[str, Any]] = {
    "emu.p": {"type": "float", "low": 0.1, "high": 0.9},
    "emu.neg_label": {"type": "float", "low": 0.0, "high": 1.0},
    "emu.ce_coef": {"type": "float", "low": 0.0, "high": 0.5},
    "train.lr": {"type": "float", "low": 0.005, "high": 0.5, "log": True},
}


@dataclass(frozen=True)
class Param:
    """One searched config key and its distribution."""

    key: str
    kind: str  # float | int | categorical
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()

    def suggest(self, trial: Any) -> Any:
        if self.kind == "categorical":
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(
                self.key, int(self.low), int(self.high), step=int(self.step or 1), log=self.log
            )
        return trial.suggest_float(self.key, self.low, self.high, step=self.step, log=self.log)

    def extremes(self) -> list[Any]:
        return list(self.choices) if self.kind == "categorical" else [self.low, self.high]


def _require_optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise ConfigError(
            'emu-dgl tune needs the optuna package; install it with: pip install "emu-dgl[tune]"'
        ) from None
    return optuna


def _parse_param(key: str, spec: Any, where: str) -> Param:
    if not isinstance(spec, dict):
        raise ConfigError(
            f"{where}: '{key}' must map to {{type: float|int|categorical, ...}}, got {spec!r}"
        )
    kind = str(spec.get("type", "")).lower()
    allowed = {
        "float": {"type", "low", "high", "log", "step"},
        "int": {"type", "low", "high", "log", "step"},
        "categorical": {"type", "choices"},
    }
    if kind not in allowed:
        raise ConfigError(
            f"{where}: '{key}' has type {spec.get('type')!r}; valid: float, int, categorical"
        )
    unknown = set(spec) - allowed[kind]
    if unknown:
        raise ConfigError(
            f"{where}: '{key}' ({kind}) has unknown field(s) {', '.join(sorted(unknown))}; "
            f"valid: {', '.join(sorted(allowed[kind]))}"
        )
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"{where}: '{key}' needs a non-empty list 'choices'")
        return Param(key, kind, choices=tuple(choices))
    try:
        low, high = float(spec["low"]), float(spec["high"])
    except (KeyError, TypeError, ValueError):
        raise ConfigError(f"{where}: '{key}' needs numbers 'low' and 'high'") from None
    if not low < high:
        raise ConfigError(f"{where}: '{key}' needs low < high, got {low} and {high}")
    log = bool(spec.get("log", False))
    if log and low <= 0:
        raise ConfigError(f"{where}: '{key}' with log: true needs low > 0")
    step = spec.get("step")
    if step is not None and log:
        raise ConfigError(f"{where}: '{key}' cannot have both log and step")
    return Param(key, kind, low, high, log, None if step is None else float(step))


def load_space(path: str | Path | None = None, *, dims: list[int] | None = None) -> list[Param]:
    """The search space of a YAML file (default: :data:`DEFAULT_SPACE`), plus ``model.dim``
    over ``dims`` when given."""
    if path is None:
        raw, where = dict(DEFAULT_SPACE), "default search space"
    else:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(
                f"search space '{path}' does not exist; pass a YAML file mapping config keys to ranges"
            )
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError:
            raise ConfigError(f"search space '{path}' is not valid YAML; fix the syntax") from None
        if not isinstance(raw, dict) or not raw:
            raise ConfigError(f"search space '{path}' must map config keys (e.g. emu.p) to ranges")
        where = f"search space '{path}'"
    if dims:
        raw["model.dim"] = {"type": "categorical", "choices": list(dims)}
    return [_parse_param(str(key), spec, where) for key, spec in raw.items()]


def _yaml_value(value: Any) -> str:
    """A value as the right-hand side of ``--set key=value`` (read back as YAML)."""
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def _check_space(base: str | Path | None, overrides: list[str], space: list[Param]) -> None:
    """Every key must exist and every bound must be a valid value, before any trial runs."""
    for param in space:
        for value in param.extremes():
            try:
                check_components(
                    load_config(base, [*overrides, f"{param.key}={_yaml_value(value)}"])
                )
            except ConfigError as exc:
                raise ConfigError(f"search space, '{param.key}' = {value!r}: {exc}") from None


#: What a study folder holds (anything else makes it a folder of the user's).
STUDY_FILES = frozenset(
    {"study.db", "best.yaml", "trials.csv", "trials.md", "trials.png", "trials"}
)


def _trial_folder(trials: Path, number: int) -> Path:
    """``trials/trial-NNNN``, or the first free ``trial-NNNN-k`` when that name holds a run
    of an earlier study (whose database was deleted or replaced: numbers start again)."""
    folder, k = trials / f"trial-{number:04d}", 1
    while folder.exists() or folder.is_symlink():
        k += 1
        folder = trials / f"trial-{number:04d}-{k}"
    return folder


@dataclass
class TuneResult:
    study_name: str
    storage: str
    best_value: float
    best_params: dict[str, Any]
    best_trial: int
    trials: list[dict[str, Any]]
    out: Path


def _trial_rows(study: Any, space: list[Param]) -> list[dict[str, Any]]:
    rows = []
    for t in study.trials:
        seconds = (
            (t.datetime_complete - t.datetime_start).total_seconds()
            if t.datetime_complete and t.datetime_start
            else None
        )
        row = {
            "trial": t.number,
            "state": t.state.name.lower(),
            "value": t.value,
            "last_step": t.last_step,
            "seconds": seconds,
        }
        row.update({p.key: t.params.get(p.key) for p in space})
        rows.append(row)
    return rows


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _write_tables(rows: list[dict[str, Any]], out: Path) -> None:
    columns = list(rows[0]) if rows else ["trial", "state", "value"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    write_text(out / "trials.csv", buffer.getvalue(), "trial table")
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_fmt(row[c]) for c in columns) + " |" for row in rows]
    write_text(out / "trials.md", "\n".join(lines) + "\n", "trial table")


def _plot(rows: list[dict[str, Any]], out: Path, metric: str) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        return False
    done = [r for r in rows if r["state"] == "complete" and r["value"] is not None]
    fig, ax = plt.subplots(figsize=(6, 4))
    if done:
        ax.scatter([r["trial"] for r in done], [r["value"] for r in done], label="trial", zorder=3)
        best, running = [], -math.inf
        for r in done:
            running = max(running, r["value"])
            best.append(running)
        ax.step([r["trial"] for r in done], best, where="post", color="C1", label="best so far")
    pruned = [r for r in rows if r["state"] == "pruned"]
    if pruned:  # at the last value reported before the pruner stopped them
        ax.scatter(
            [r["trial"] for r in pruned],
            [r["value"] or 0.0 for r in pruned],
            marker="x",
            color="grey",
            label="pruned (last validation)",
        )
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_xlabel("trial")
    ax.set_ylabel(f"validation {metric} (filtered)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    from emu_dgl.experiments.compare import save_figure

    save_figure(fig, out / "trials.png")
    plt.close(fig)
    return True


def run_study(
    base: str | Path | None,
    *,
    trials: int,
    out: str | Path,
    study_name: str = "emu-dgl",
    storage: str | None = None,
    space: list[Param] | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    seed: int = 0,
    pruner: str = "median",
    data_dir: str | None = None,
    echo: Callable[[str], object] = print,
    allow_nonempty: bool = False,
) -> TuneResult:
    """Run ``trials`` more trials of the study (created or continued) and write the summary.

    ``out`` must be new, empty or an earlier study's folder (``allow_nonempty`` writes into
    another folder). A trial whose training diverges is pruned (with the reason), not the
    end of the study.
    """
    optuna = _require_optuna()
    out = run_path(out)
    if not 0 <= seed <= MAX_SEED:
        raise ConfigError(f"--seed must be in [0, {MAX_SEED}], got {shown(seed)}")
    space = space if space is not None else load_space()
    overrides = list(overrides)
    if data_dir is not None:
        overrides.append(f"dataset.data_dir={data_dir}")
    base_config = load_config(base, overrides)
    check_components(base_config)
    _check_space(base, overrides, space)
    metric = base_config.eval.metric
    study, storage = _open_study(
        optuna, out, study_name, storage, pruner, allow_nonempty=allow_nonempty
    )
    # A continued study draws on from a new seed, so it does not repeat the first call's draws.
    study.sampler = optuna.samplers.TPESampler(seed=seed + len(study.trials), n_startup_trials=5)

    def config_of(params: dict[str, Any], *, quiet: bool) -> Config:
        sets = [f"{key}={_yaml_value(value)}" for key, value in params.items()]
        return load_config(base, [*overrides, *sets, *(["train.progress=false"] if quiet else [])])

    def objective(trial: Any) -> float:
        params = {p.key: p.suggest(trial) for p in space}
        run_dir = _trial_folder(out / "trials", trial.number)
        trial.set_user_attr("run_dir", str(run_dir))
        return _train_trial(optuna, config_of(params, quiet=True), run_dir, trial, metric, echo)

    def announce(study: Any, trial: Any) -> None:
        echo(f"trial {trial.number}: {_outcome(trial, metric)} ({_params_text(trial)})")

    study.optimize(objective, n_trials=trials, callbacks=[announce])

    rows = _trial_rows(study, space)
    _write_tables(rows, out)
    _plot(rows, out, metric)
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    if not complete:
        raise ConfigError(f"no trial of study '{study_name}' completed; see {out / 'trials.md'}")
    best = study.best_trial
    best_config = config_of(dict(best.params), quiet=False)
    best_config.dump(out / "best.yaml")
    return TuneResult(
        study_name, storage, float(best.value), dict(best.params), best.number, rows, out
    )


def _open_study(
    optuna: Any,
    out: Path,
    study_name: str,
    storage: str | None,
    pruner: str,
    *,
    allow_nonempty: bool,
) -> tuple[Any, str]:
    """The study in ``out`` (created or continued) with its pruner, and its storage URL."""
    from emu_dgl.files import make_dir

    pruners = {
        "median": lambda: optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0),
        "none": optuna.pruners.NopPruner,
    }
    if pruner not in pruners:
        close = difflib.get_close_matches(pruner, list(pruners), n=1)
        raise ConfigError(
            f"unknown pruner '{pruner}'{f' (did you mean {close[0]!r}?)' if close else ''}; valid: median, none"
        )
    if out.is_dir():
        own = frozenset(p.name for p in out.iterdir() if p.name in STUDY_FILES)
        check_empty_folder(out, "study", allow_nonempty=allow_nonempty, own=own)
    created = not out.exists()
    make_dir(out, "study folder")
    storage = storage or f"sqlite:///{(out / 'study.db').resolve()}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.create_study(
            storage=storage,
            study_name=study_name,
            direction="maximize",
            load_if_exists=True,
            pruner=pruners[pruner](),
        )
    except Exception as exc:  # noqa: BLE001 - storage back ends raise many kinds (SQLAlchemy, drivers)
        if created and not any(out.iterdir()):
            out.rmdir()  # leave no empty folder behind
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConfigError(
            f"cannot open the study storage {shown(storage)} ({type(exc).__name__}: {shown(reason, 100)}); "
            "check the URL and that the database is reachable and not corrupt (a new --out starts a new study)"
        ) from None
    return study, storage


def _train_trial(
    optuna: Any,
    config: Config,
    run_dir: Path,
    trial: Any,
    metric: str,
    echo: Callable[[str], object],
) -> float:
    """One trial's run (through :func:`~emu_dgl.training.start.start_run`, as every run),
    reported to the pruner at each validation; its valid metric."""
    from emu_dgl.training.start import start_run

    def report(record: dict[str, Any]) -> None:
        if record.get("split") == "valid":
            trial.report(float(record[metric]), int(record["step"]))
            if trial.should_prune():
                raise optuna.TrialPruned(
                    f"validation {metric} {record[metric]:.4f} at step {record['step']}"
                )

    try:  # the trial's run folder is said first, as for every run
        result = start_run(
            config,
            run_dir,
            say=lambda line: echo(f"trial {trial.number}: {line}"),
            details=False,
            hooks=[report],
        ).metrics
    except DivergenceError as exc:
        # One diverging trial (a learning rate too high, say) is a bad point of the
        # space, not the end of the study: pruned, with the reason kept.
        reason = str(exc).split(";", 1)[0]
        trial.set_user_attr("failure", reason)
        raise optuna.TrialPruned(reason) from None
    assert result is not None
    trial.set_user_attr("test_" + metric, float(result["test"][metric]))
    return float(result["valid"][metric])


def _params_text(trial: Any) -> str:
    return ", ".join(f"{k}={_fmt(v)}" for k, v in trial.params.items())


def _outcome(trial: Any, metric: str) -> str:
    """A finished trial in words: its metric, why it failed, or where it was pruned."""
    state = trial.state.name.lower()
    if state == "complete":
        return f"valid {metric} {trial.value:.4f}"
    if "failure" in trial.user_attrs:
        return f"{state}: {trial.user_attrs['failure']}"
    return f"{state} at step {trial.last_step}" if trial.last_step is not None else state
