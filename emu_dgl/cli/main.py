"""The ``emu-dgl`` command group and its run commands: train, evaluate, predict, export, compare.

``datasets`` (:mod:`emu_dgl.cli.datasets`) and ``tune`` (:mod:`emu_dgl.cli.tune`) are added
at the end of this module."""

from __future__ import annotations

import errno
import json
import sys
from pathlib import Path
from typing import Any

import click

from emu_dgl.cli.components import components
from emu_dgl.cli.datasets import datasets
from emu_dgl.cli.options import (
    allow_nonempty_option,
    checkpoint_option,
    config_option,
    data_dir_option,
    device_option,
    out_option,
    set_option,
)
from emu_dgl.cli.tune import tune
from emu_dgl.config import QUICKSTART
from emu_dgl.errors import EmuDglError


class _Group(click.Group):
    """Turns every :class:`EmuDglError` into ``error: <one line>`` and exit status 2,
    and prints emu-dgl warnings as ``warning: <one line>``."""

    def invoke(self, ctx: click.Context) -> Any:
        import warnings

        from emu_dgl.errors import EmuDglWarning

        show = warnings.showwarning

        def one_line(message: Any, category: type[Warning], *args: Any, **kwargs: Any) -> None:
            if issubclass(category, EmuDglWarning):
                click.echo(f"warning: {message}", err=True)
            else:
                show(message, category, *args, **kwargs)

        warnings.showwarning = one_line
        try:
            return super().invoke(ctx)
        except EmuDglError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        except KeyboardInterrupt as exc:
            advice = getattr(exc, "advice", None)  # a comparison says how to continue itself
            run = ctx.meta.get("emu_dgl.run_dir")
            where = f"'emu-dgl train --resume {run}'" if run else "'emu-dgl train --resume RUN_DIR'"
            click.echo(
                f"interrupted: {advice or f'the last checkpoint is kept; continue with {where}'}",
                err=True,
            )
            sys.exit(130)
        except OSError as exc:
            # Disk full or read-only while writing outside the places that check it themselves.
            if exc.errno in (
                errno.ENOSPC,
                errno.EROFS,
                errno.EACCES,
                errno.EPERM,
                getattr(errno, "EDQUOT", -1),
            ):
                where = f" '{exc.filename}'" if exc.filename else ""
                click.echo(
                    f"error: cannot read or write{where} ({exc.strerror}); check its permissions and "
                    "free space, or choose another location",
                    err=True,
                )
                sys.exit(2)
            raise
        finally:
            warnings.showwarning = show


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="emu-dgl")
def main() -> None:
    """Knowledge-graph embeddings with structure-aware and EMU negatives, on DGL."""


def _format_table(metrics: dict[str, Any]) -> str:
    from emu_dgl.evaluation import describe_protocol

    first = next((metrics[s] for s in ("valid", "test") if s in metrics), {})
    hits = sorted((k for k in first if k.startswith("hits@")), key=lambda k: int(k[5:]))
    cols = ["mrr", "mr", *hits, *(["amri"] if "amri" in first else [])]
    lines = []
    if first:  # the protocol first: sampled and full numbers differ
        lines.append(describe_protocol(first))
    lines.append(f"{'split':<18}" + "".join(f"{c:>10}" for c in cols))
    for split in ("valid", "test"):
        if split not in metrics:
            continue
        for part, row in (
            ("", metrics[split]),
            (" head", metrics[split]["head"]),
            (" tail", metrics[split]["tail"]),
        ):
            cells = "".join(f"{row[c]:>10.1f}" if c == "mr" else f"{row[c]:>10.4f}" for c in cols)
            lines.append(f"{split + part:<18}{cells}")
        for kind in ("optimistic", "pessimistic"):  # ties counted as wins, then as losses
            if isinstance(metrics[split].get(kind), dict):
                row = metrics[split][kind]
                cells = "".join(
                    f"{row[c]:>10.1f}" if c == "mr" else f"{row[c]:>10.4f}" for c in cols
                )
                lines.append(f"{split + ' ' + kind:<18}{cells}")
    return "\n".join(lines)


def _format_relation_table(metrics: dict[str, Any]) -> str:
    """Per-relation MRR / Hits@10, both sides and per side, for each split that has them."""
    lines = []
    for split in ("valid", "test"):
        per_rel = metrics.get(split, {}).get("per_relation")
        if not per_rel:
            continue
        width = max(len("relation"), *(len(name) for name in per_rel))
        lines.append(f"{split}: per relation")
        lines.append(
            f"{'relation':<{width}}  {'count':>6}  {'mrr':>7}  {'head':>7}  {'tail':>7}  {'hits@10':>7}"
        )
        for name, row in sorted(per_rel.items(), key=lambda item: -item[1]["count"]):
            lines.append(
                f"{name:<{width}}  {row['count']:>6}  {row['mrr']:>7.4f}  {row['head']['mrr']:>7.4f}  "
                f"{row['tail']['mrr']:>7.4f}  {row['hits@10']:>7.4f}"
            )
    return "\n".join(lines)


_DATA_DIR_HELP = (
    "Data root holding the run's dataset (default: the run's dataset.data_dir, $EMU_DGL_DATA, ...)."
)


@main.command(
    epilog="Every config key, its default and meaning: emu_dgl/config.py (README, 'Configuration'). "
    "Dataset names: 'emu-dgl datasets list'."
)
@config_option("YAML config (default: the quickstart on the built-in synthetic graph).")
@set_option("Override a config key, e.g. --set train.lr=0.05 (repeatable).")
@out_option("Run directory (default: output.dir of the config).", required=False)
@click.option(
    "--resume",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Continue the run in this directory from its last checkpoint.",
)
@click.option(
    "--arm",
    default=None,
    metavar="NAME",
    help="A named arm of the config file (its 'arms:' section), e.g. sans-base.",
)
@data_dir_option()
@click.option(
    "--nproc",
    type=click.IntRange(min=1),
    default=None,
    help="Processes on this machine training one run, the entity table split between them "
    "(gloo on CPU, NCCL on GPU); default 1, or with --resume as many as the run had (another "
    "number reshards its checkpoint). Under torchrun the launcher sets the processes instead.",
)
@allow_nonempty_option()
def train(
    config_path: Path | None,
    overrides: tuple[str, ...],
    out: Path | None,
    resume: Path | None,
    arm: str | None,
    data_dir: str | None,
    nproc: int | None,
    allow_nonempty: bool,
) -> None:
    """Train a model and report filtered MRR / Hits@k on valid and test."""
    import os

    from emu_dgl.config import load_config
    from emu_dgl.training.build import check_components
    from emu_dgl.training.components import check_run_components
    from emu_dgl.training.run import CONFIG_FILE, check_run_begun, check_run_files
    from emu_dgl.training.shards import enclosing_run, trained_world_size
    from emu_dgl.training.start import run_directory

    if resume is not None:
        if config_path is not None or out is not None or arm is not None or allow_nonempty:
            raise click.UsageError(
                "--resume continues a run with its own config; drop --config, --arm, --out and --allow-nonempty"
            )
        resume = resume.expanduser()
        enclosing = enclosing_run(resume)
        if enclosing is not None:
            raise EmuDglError(
                f"'{resume}' is part of the run on several processes '{enclosing}'; resume the "
                f"run itself: 'emu-dgl train --resume {enclosing}'"
            )
        check_run_begun(resume)  # config.yaml is there, or one line says why not
        check_run_files(resume)  # a planted link is refused before its target is read
        config = load_config(resume / CONFIG_FILE, overrides)
        run_dir = resume
    else:
        config = load_config(
            config_path if config_path is not None else QUICKSTART, overrides, arm=arm
        )
        run_dir = run_directory(config, out)
    if data_dir is not None:
        config.dataset.data_dir = str(Path(data_dir).expanduser().absolute())
    if resume is not None:
        check_run_components(config, resume)  # a plugin the run used and this process lacks: named
    else:
        check_components(config)
    click.get_current_context().meta["emu_dgl.run_dir"] = run_dir

    # A run trained on several processes resumes on as many unless --nproc says otherwise
    # (never on one process as if it were a one-process run: its checkpoints are sharded).
    trained = trained_world_size(run_dir) if resume is not None else None
    nproc = nproc if nproc is not None else (trained or 1)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 or nproc > 1 or trained is not None:
        from emu_dgl.distributed import torchrun_train, train_distributed

        # The launcher admits the run (lock, folder, resume checks) on the leading process,
        # and records a new run's data root as a one-process run does.
        common = {
            "resume": resume is not None,
            "allow_nonempty": allow_nonempty,
            "announce": lambda text: click.echo(text, err=True),
        }
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # this process is one of torchrun's
            metrics = torchrun_train(config, run_dir, **common)
        else:
            metrics = train_distributed(config, run_dir, nproc=nproc, **common)
        if metrics:
            click.echo(_format_table(metrics))
            click.echo(
                f"best step {metrics['best_step']} of {metrics['steps']} on {metrics['world_size']} processes "
                f"(entity rows per process: {metrics['entity_rows_per_rank']}); metrics in {run_dir / 'metrics.json'}"
            )
        return
    from emu_dgl.training.start import start_run

    # Admitted before anything is built or written (a refused run leaves the folder as it
    # was, with one error line); the run folder is the first line of the run's own output.
    result = start_run(
        config,
        run_dir,
        resume=resume is not None,
        allow_nonempty=allow_nonempty,
        say=lambda line: click.echo(line, err=True),
    )
    metrics = result.metrics or {}
    click.echo(_format_table(metrics))
    if config.eval.per_relation:
        click.echo(_format_relation_table(metrics))
    click.echo(
        f"best step {metrics['best_step']} of {metrics['steps']}; {metrics['train_steps_per_second']:.1f} steps/s; "
        f"metrics in {run_dir / 'metrics.json'}"
    )


@main.command(
    epilog="Parts: the interpreter with torch and DGL (measured here), the entity table and "
    "its optimizer state, relations, data, filter index, SANS candidates, and one at a time "
    "a training step, an evaluation batch and the best weights read back at the end. "
    "A generated graph (dataset.name=synthetic:...) is planned from its name alone."
)
@config_option("YAML config (default: the quickstart).")
@set_option("Override a config key, e.g. --set model.dtype=bfloat16 (repeatable).")
@data_dir_option()
@click.option(
    "--nproc",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Processes sharing the run: each holds 1/N of the entity table and its state.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
def plan(
    config_path: Path | None,
    overrides: tuple[str, ...],
    data_dir: str | None,
    nproc: int,
    as_json: bool,
) -> None:
    """Memory per process of a run: each part, the peak, and whether it fits this machine."""
    from emu_dgl.config import load_config
    from emu_dgl.training.build import check_components
    from emu_dgl.training.memory import baseline_bytes, graph_size, memory_plan, plan_as_dict

    config = load_config(config_path if config_path is not None else QUICKSTART, overrides)
    if data_dir is not None:
        config.dataset.data_dir = str(Path(data_dir).expanduser().absolute())
    check_components(config)
    baseline = baseline_bytes()  # before the data is loaded
    result = memory_plan(config, graph_size(config), nproc=nproc, baseline=baseline)
    click.echo(json.dumps(plan_as_dict(result), indent=2) if as_json else result.table())


@main.command()
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--split",
    type=click.Choice(["valid", "test"]),
    default="test",
    show_default=True,
    help="Which split's triples to rank.",
)
@device_option
@click.option("--per-relation", is_flag=True, help="Also MRR / Hits@k of every relation, per side.")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as one JSON object.")
@data_dir_option(_DATA_DIR_HELP)
@checkpoint_option
@click.option(
    "--protocol",
    type=click.Choice(["full", "sampled", "given"]),
    default=None,
    help="Rank against every entity, eval.num_negatives sampled ones, or the fixed negatives a "
    "converted ogbl-wikikg2 folder keeps (OGB's protocol) (default: the run's eval.protocol).",
)
def evaluate(
    run_dir: Path,
    split: str,
    device: str,
    per_relation: bool,
    as_json: bool,
    data_dir: str | None,
    which: str,
    protocol: str | None,
) -> None:
    """Filtered evaluation of a trained run (checkpoints/best.pt, or --checkpoint last)."""
    from emu_dgl.training.results import load_run

    run = load_run(run_dir, device=device, data_dir=data_dir, which=which)
    metrics = {split: run.evaluate(split, protocol=protocol, per_relation=per_relation)}
    if as_json:
        click.echo(json.dumps(metrics, indent=2))
        return
    click.echo(_format_table(metrics))
    if per_relation:
        click.echo(_format_relation_table(metrics))


@main.command()
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--head", default=None, help="Head entity name (predict tails).")
@click.option("--tail", default=None, help="Tail entity name (predict heads).")
@click.option("--relation", required=True, help="Relation name.")
@click.option(
    "--top",
    default=10,
    show_default=True,
    type=click.IntRange(min=1),
    help="How many completions to list.",
)
@device_option
@data_dir_option(_DATA_DIR_HELP)
@checkpoint_option
def predict(
    run_dir: Path,
    head: str | None,
    tail: str | None,
    relation: str,
    top: int,
    device: str,
    data_dir: str | None,
    which: str,
) -> None:
    """Top-K completions of (head, relation, ?) or (?, relation, tail); known triples marked.

    Uses checkpoints/best.pt (or --checkpoint last). Names are the dataset's own: find them with
    'emu-dgl datasets entities NAME --grep TEXT' (add --relations for relations).
    """
    if (head is None) == (tail is None):
        raise click.UsageError(
            "give exactly one of --head (to rank tails) or --tail (to rank heads)"
        )
    from emu_dgl.training.results import load_run

    run = load_run(run_dir, device=device, data_dir=data_dir, which=which)
    table = run.predict(head=head, tail=tail, relation=relation, top=top, filtered=False)
    click.echo(f"{'rank':>4}  {'score':>10}  known  entity")
    for row in table.itertuples():
        click.echo(
            f"{row.rank:>4}  {row.score:>10.4f}  {'*' if row.known else '':^5}  {row.entity}"
        )


@main.command()
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@out_option("Folder to write (created if missing; files in it are overwritten).")
@data_dir_option(_DATA_DIR_HELP)
@checkpoint_option
def export(run_dir: Path, out: Path, data_dir: str | None, which: str) -> None:
    """Write entities.npy, relations.npy, id-to-name TSV tables and meta.json (the column
    layout of each table) for use outside emu-dgl.

    The weights are those of checkpoints/best.pt (the best validation step), or of
    last.pt with --checkpoint last; of a run on several processes, the blocks of every
    process stitched into one table.
    """
    from emu_dgl.training.results import load_run

    run = load_run(run_dir, device="cpu", data_dir=data_dir, which=which)
    run.export(out)
    click.echo(
        f"wrote {run.kg.num_entities} entity and {run.kg.num_relations} relation embeddings "
        f"from {run.source} to {out}"
    )


@main.command()
@config_option("Base YAML config (default: the quickstart).")
@set_option("Override for every arm (repeatable).")
@click.option(
    "--arm",
    "arm_specs",
    multiple=True,
    metavar="NAME[:KEY=VALUE,...]",
    help="One arm of the comparison (repeatable): a named arm of the config file, or "
    "NAME:KEY=VALUE[,KEY=VALUE] for an ad-hoc one. Default: every arm the config file "
    "names, else base:emu.enabled=false and emu:emu.enabled=true.",
)
@click.option(
    "--seeds",
    default="0",
    show_default=True,
    help="Comma-separated seeds; every arm runs every seed.",
)
@out_option("Directory for the runs, results.json, table.md and valid_mrr.png.")
@click.option(
    "--jobs",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    help="Runs trained at once, as separate processes (CPU threads split between them "
    "unless train.threads is set; on a GPU, a 1/N share of its memory each). Same runs "
    "and metrics as one at a time.",
)
@allow_nonempty_option()
def compare(
    config_path: Path | None,
    overrides: tuple[str, ...],
    arm_specs: tuple[str, ...],
    seeds: str,
    out: Path,
    jobs: int,
    allow_nonempty: bool,
) -> None:
    """Run one config under several arms (EMU off / on by default) and seeds; tabulate and plot."""
    from emu_dgl.config import config_arms
    from emu_dgl.experiments.compare import (
        DEFAULT_ARMS,
        Arm,
        parse_arm,
        parse_seeds,
        run_comparison,
    )

    base = config_path if config_path is not None else QUICKSTART
    seed_list = parse_seeds(seeds)
    named = list(config_arms(base)) if base.is_file() else []
    arms = (
        [parse_arm(spec) for spec in arm_specs]
        or [Arm(n, (), preset=n) for n in named]
        or list(DEFAULT_ARMS)
    )
    result = run_comparison(
        base,
        list(overrides),
        arms,
        seed_list,
        out,
        allow_nonempty=allow_nonempty,
        jobs=jobs,
        say=click.echo,
    )
    from emu_dgl.experiments.compare import markdown_table

    click.echo(markdown_table(result))
    if not result.get("plotted", True):
        click.echo(
            'plot skipped: matplotlib is not installed (pip install "emu-dgl[plot]")', err=True
        )
    click.echo(f"results in {out}")


main.add_command(datasets)
main.add_command(tune)
main.add_command(components)
