"""Starting a run: the one function behind ``emu-dgl train``, :func:`emu_dgl.train`, and each
run of ``compare`` and ``tune``.

:func:`start_run` says where the run goes before it writes or trains anything (so a run
killed at any moment is found without ``ls``), admits it (:func:`~emu_dgl.training.run.open_run`: the
lock, the folder rules, the resume check), builds the :class:`Trainer`, trains, and returns
a :class:`~emu_dgl.training.results.RunResult`.
"""

from __future__ import annotations

import copy
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from emu_dgl.config import Config
from emu_dgl.errors import ConfigError
from emu_dgl.training.results import RunResult
from emu_dgl.training.run import open_run, run_path

__all__ = ["resolve_config", "run_directory", "start_run", "to_stderr", "train"]


def run_directory(config: Config, out: str | Path | None = None) -> Path:
    """``--out`` wins; otherwise ``output.dir`` with {dataset}, {model}, {time} filled in.

    ``~`` is expanded; each filled-in name must be one safe folder name (a dataset called
    ``..`` cannot lead the run out of ``output.dir``), and the result is never ``/``.
    """
    from datetime import datetime

    from emu_dgl.files import path_component

    if out is not None:
        return run_path(out)
    name = Path(config.dataset.name.rstrip("/")).name or config.dataset.name
    values = {
        "dataset": path_component(name, "the dataset name for {dataset} in output.dir"),
        "model": path_component(config.model.name, "the model name for {model} in output.dir"),
        "time": datetime.now().strftime("%Y%m%d-%H%M%S"),
    }
    return run_path(config.output.dir.format(**values))


def to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def start_run(
    config: Config,
    run_dir: str | Path,
    *,
    resume: bool = False,
    allow_nonempty: bool = False,
    kg: Any = None,
    say: Callable[[str], object] = to_stderr,
    details: bool = True,
    label: str | None = None,
    hooks: Sequence[Callable[[dict[str, Any]], None]] = (),
) -> RunResult:
    """Train ``config`` into ``run_dir`` (a new run, or ``resume`` the one there) and return it.

    ``say`` receives ``run folder: <run_dir>`` first, once the run is admitted and its data
    and model are built, before anything is written or trained (only a download or a SANS
    build, announced by themselves, can come before it); with ``details`` then what resuming
    does, the data and model, and the CPU threads. ``kg``
    trains on a graph given in Python (the run keeps a copy). ``hooks`` receive every
    ``metrics.jsonl`` record (trackers, a tuner's pruning); ``label`` names the progress bar.
    A resumed run that had already finished is returned as it is, its metrics unchanged.
    """
    from emu_dgl.training.trainer import Trainer

    run_dir = run_path(run_dir)
    with open_run(run_dir, config, resume=resume, allow_nonempty=allow_nonempty) as run:
        trainer = Trainer(config, run_dir, kg=kg)
        # Before anything is written into the folder or trained: a run killed from here on is
        # found without `ls`. A refusal or bad data before it stays one error line.
        say(f"run folder: {run_dir}")
        if run.plan is not None and details:
            say(run.plan.describe())
        if details:
            data, cfg = trainer.kg, trainer.config
            say(
                f"{data.name}: {data.num_entities} entities, {data.num_relations} relations, "
                f"{len(data.train)} training triples; model {cfg.model.name} d={cfg.model.dim} "
                f"on {trainer.device}"
            )
            say(
                f"threads: {trainer.threads} ({trainer.threads_reason}; set with --set train.threads=N)"
            )
        if label is not None:
            trainer.progress_label = label
        trainer.log_hooks.extend(hooks)
        metrics = trainer.fit(resume=run.plan or False)
    if trainer.already_finished and details:
        say(
            f"the run had already finished at step {metrics['steps']}; raise train.max_steps to train further"
        )
    return RunResult(trainer.config, trainer.kg, trainer.model.eval(), run_dir, metrics)


def resolve_config(
    config: Config | str | os.PathLike[str] | dict[str, Any] | None,
    overrides: dict[str, Any],
    *,
    arm: str | None = None,
) -> Config:
    """A validated :class:`Config` from what :func:`train` accepts: a ``Config`` (copied), a
    nested dict (missing keys take their defaults), a YAML path (with its ``arm``), or
    ``None`` (the packaged quickstart); then ``section__key=value`` overrides."""
    from emu_dgl.config import QUICKSTART, config_from_dict, load_config

    if isinstance(config, Config | dict) and arm is not None:
        raise ConfigError(f"arm '{arm}' needs a config file that defines it; pass its path")
    if config is None or isinstance(config, str | os.PathLike):
        base = load_config(config if config is not None else QUICKSTART, arm=arm)
    elif isinstance(config, Config):
        base = copy.deepcopy(config)
    elif isinstance(config, dict):
        base = config_from_dict(config)
    else:
        raise ConfigError(
            f"config must be a Config, a dict or the path of a YAML file, got {type(config).__name__}"
        )
    if not overrides:
        return base.validate()
    data = base.to_dict()
    for key, value in overrides.items():
        section, _, name = key.partition("__")
        if not name or "__" in name:
            raise ConfigError(
                f"override '{key}': name it section__key, e.g. train__max_steps=500 for train.max_steps"
            )
        part = data.setdefault(section, {})
        if not isinstance(part, dict):
            raise ConfigError(f"override '{key}': '{section}' is not a config section")
        part[name] = value
    return config_from_dict(data)


def train(
    config: Config | str | os.PathLike[str] | dict[str, Any] | None = None,
    *,
    out: str | os.PathLike[str] | None = None,
    resume: bool = False,
    allow_nonempty: bool = False,
    arm: str | None = None,
    kg: Any = None,
    say: Callable[[str], object] = to_stderr,
    **overrides: Any,
) -> RunResult:
    """``emu-dgl train`` from Python; returns the :class:`RunResult` (model, graph, metrics,
    ``predict``, ``evaluate``, ``export``).

    ``config``: a :class:`~emu_dgl.config.Config`, a nested dict, a YAML path (``arm``
    picks one of its arms) or ``None`` for the packaged quickstart; ``section__key=value``
    keywords override single keys (``train__max_steps=500``). ``out`` is the run folder
    (default: ``output.dir``). ``resume=True`` continues the run in ``out`` when it holds one
    (a finished run comes back as it is, so the same call again costs nothing) and starts
    it otherwise; only the keys ``--resume`` allows may differ from the run's. A new run
    needs a new or empty folder unless ``allow_nonempty``. ``kg`` trains on a graph built
    in Python (the run keeps a copy). ``say`` receives the run folder first, then a few
    lines about the run (default: stderr).
    """
    from emu_dgl.training.run import holds_run, read_run_config

    resolved = resolve_config(config, overrides, arm=arm)
    if resume and out is None:
        raise ConfigError("resume=True needs out=, the folder of the run to continue")
    run_dir = run_directory(resolved, out)
    existing = resume and holds_run(run_dir)
    if existing and resolved.dataset.data_dir is None:
        # the run's recorded data root, as `emu-dgl train --resume` reads it from config.yaml
        saved = read_run_config(run_dir).get("dataset")
        if isinstance(saved, dict) and isinstance(saved.get("data_dir"), str):
            resolved.dataset.data_dir = saved["data_dir"]
    return start_run(
        resolved, run_dir, resume=existing, allow_nonempty=allow_nonempty, kg=kg, say=say
    )
