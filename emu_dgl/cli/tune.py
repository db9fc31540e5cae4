"""``emu-dgl tune``: Optuna search over a base config (see :mod:`emu_dgl.experiments.tune`)."""

from __future__ import annotations

from pathlib import Path

import click

from emu_dgl.cli.options import (
    allow_nonempty_option,
    config_option,
    data_dir_option,
    out_option,
    set_option,
)

__all__ = ["tune"]


@click.command(
    epilog="Search space format and defaults: 'python -m pydoc emu_dgl.experiments.tune' or README, 'Hyperparameter search'."
)
@config_option("Base YAML config that every trial starts from (default: the quickstart).")
@set_option("Override for every trial (repeatable).")
@click.option(
    "--space",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="YAML search space (config key -> {type, low, high[, log, step]} or {type: categorical, choices}); "
    "default: emu.p, emu.neg_label, emu.ce_coef, train.lr.",
)
@click.option(
    "--dims", default=None, metavar="D1,D2,...", help="Also search model.dim over these widths."
)
@click.option(
    "--trials",
    default=20,
    show_default=True,
    type=click.IntRange(min=1),
    help="Trials to add to the study in this call.",
)
@click.option(
    "--study",
    "study_name",
    default="emu-dgl",
    show_default=True,
    help="Study name within the storage.",
)
@click.option(
    "--storage",
    default=None,
    metavar="URL",
    help="Optuna storage, e.g. sqlite:///study.db (default: OUT/study.db); run again to add trials.",
)
@out_option("Folder for trial runs, best.yaml, trials.csv / trials.md and trials.png.")
@click.option(
    "--pruner",
    type=click.Choice(["median", "none"]),
    default="median",
    show_default=True,
    help="Stop trials whose validation metric falls below the median of earlier trials at the same step.",
)
@click.option("--seed", default=0, show_default=True, help="Seed of the sampler of trial values.")
@data_dir_option()
@allow_nonempty_option("study")
def tune(
    config_path: Path | None,
    overrides: tuple[str, ...],
    space: Path | None,
    dims: str | None,
    trials: int,
    study_name: str,
    storage: str | None,
    out: Path,
    pruner: str,
    seed: int,
    data_dir: str | None,
    allow_nonempty: bool,
) -> None:
    """Hyperparameter search with Optuna: prunes on validation MRR, writes best.yaml.

    Every trial trains the base config with sampled values; its score is the validation
    metric (eval.metric) of its best checkpoint. Needs: pip install "emu-dgl[tune]".
    """
    from emu_dgl.config import QUICKSTART
    from emu_dgl.experiments.tune import load_space, run_study

    try:
        dim_list = [int(d) for d in dims.split(",") if d.strip()] if dims else None
    except ValueError:
        raise click.BadParameter(
            f"'{dims}' is not a comma-separated list of integers", param_hint="--dims"
        ) from None
    result = run_study(
        config_path if config_path is not None else QUICKSTART,
        trials=trials,
        out=out,
        study_name=study_name,
        storage=storage,
        space=load_space(space, dims=dim_list),
        overrides=list(overrides),
        seed=seed,
        pruner=pruner,
        data_dir=data_dir,
        echo=lambda line: click.echo(line, err=True),
        allow_nonempty=allow_nonempty,
    )
    done = sum(1 for row in result.trials if row["state"] == "complete")
    pruned = sum(1 for row in result.trials if row["state"] == "pruned")
    from emu_dgl.files import read_text

    click.echo(read_text(result.out / "trials.md", "trial table"))
    click.echo(
        f"study '{result.study_name}': {len(result.trials)} trials ({done} complete, {pruned} pruned); "
        f"best trial {result.best_trial}, valid {result.best_value:.4f}"
    )
    click.echo(
        f"best config: {out / 'best.yaml'}  (train it: emu-dgl train --config {out / 'best.yaml'})"
    )
