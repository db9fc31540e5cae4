"""Experiment tracking: TensorBoard, MLflow and Weights & Biases, next to metrics.jsonl.

The trainer writes one record per logging point to ``metrics.jsonl`` (always on) and
hands the same record to every hook in ``Trainer.log_hooks``; :func:`open_trackers`
builds the hook for the backends named in ``tracking.backends``. Nothing runs in
the training step itself, so tracking costs nothing between logging points.

What each backend receives, under the same names:

* ``train/loss``, ``train/lr``, ``train/steps_per_second``, ``train/triples_per_second``
  every ``train.log_every`` steps;
* ``valid/mrr``, ``valid/mr``, ``valid/hits_at_k`` at every validation;
* ``final/valid/...`` and ``final/test/...`` once, after training;
* the resolved config (TensorBoard: a text panel; MLflow: parameters named
  ``section.key`` plus ``config.yaml``; W&B: the run config).

Backends and where they write, all inside the run directory unless configured:

* ``tensorboard``: event files in ``RUN_DIR/tensorboard`` (``tensorboard --logdir runs``);
* ``mlflow``: ``tracking.mlflow_uri``, default a SQLite store ``RUN_DIR/mlflow.db``
  with artifacts in ``RUN_DIR/mlartifacts`` (``mlflow ui --backend-store-uri sqlite:///RUN_DIR/mlflow.db``);
* ``wandb``: ``RUN_DIR/wandb``, offline unless ``tracking.wandb_mode=online``
  (upload later with ``wandb sync RUN_DIR/wandb/offline-run-*``).

A resumed run continues the same MLflow and W&B runs (their ids are kept in
``RUN_DIR/tracking.json``). The packages come with ``pip install "emu-dgl[track]"``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import yaml

from emu_dgl.errors import ConfigError

__all__ = ["BACKENDS", "Tracker", "flatten", "metric_name", "open_trackers", "tracker_records"]

BACKENDS = ("tensorboard", "mlflow", "wandb")
IDS_FILE = "tracking.json"
_PACKAGES = {"tensorboard": "tensorboard", "mlflow": "mlflow", "wandb": "wandb"}


class Tracker(Protocol):
    def log_config(self, config: dict[str, Any]) -> None: ...

    def log_metrics(self, metrics: dict[str, float], step: int) -> None: ...

    def close(self) -> None: ...


def _require(backend: str) -> None:
    """Raise a one-line error naming the extra when the backend's package is missing."""
    import importlib

    module = _PACKAGES[backend]
    try:
        importlib.import_module(module)  # imported, not just found: a broken install fails here too
    except ImportError:
        raise ConfigError(
            f"tracking.backends includes '{backend}' but the '{module}' package is not installed; "
            f'install it with: pip install "emu-dgl[track]"'
        ) from None


def metric_name(key: str) -> str:
    """``hits@10`` -> ``hits_at_10``: a name every backend accepts (MLflow rejects '@')."""
    return key.replace("@", "_at_")


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{'train': {'lr': 0.1}}`` -> ``{'train.lr': 0.1}``."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def tracker_records(record: dict[str, Any], batch_size: int) -> dict[str, float]:
    """Backend metric names and values of one metrics.jsonl record."""
    split = record.get("split")
    if split is not None:  # a validation record: flat metrics of both sides
        return {
            f"{split}/{metric_name(k)}": float(v)
            for k, v in record.items()
            if k not in ("step", "split") and isinstance(v, int | float)
        }
    out = {
        f"train/{k}": float(v)
        for k, v in record.items()
        if k != "step" and isinstance(v, int | float)
    }
    if "steps_per_second" in record:
        out["train/triples_per_second"] = float(record["steps_per_second"]) * batch_size
    return out


# ---------------------------------------------------------------------------- backends


class _TensorBoard:
    def __init__(self, run_dir: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"))

    def log_config(self, config: dict[str, Any]) -> None:
        # indented by four spaces: TensorBoard renders text panels as Markdown
        text = "".join(
            f"    {line}\n" for line in yaml.safe_dump(config, sort_keys=False).splitlines()
        )
        self.writer.add_text("config", text, 0)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, step)

    def close(self) -> None:
        self.writer.close()


class _MLflow:
    def __init__(
        self, run_dir: Path, uri: str | None, experiment: str, name: str, run_id: str | None
    ) -> None:
        for noisy in ("mlflow", "alembic"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        self.uri = uri or f"sqlite:///{(run_dir / 'mlflow.db').resolve()}"
        try:
            self.client = MlflowClient(tracking_uri=self.uri)
            found = self.client.get_experiment_by_name(experiment)
            if found is not None:
                experiment_id = found.experiment_id
            else:
                artifacts = None if uri else (run_dir / "mlartifacts").resolve().as_uri()
                experiment_id = self.client.create_experiment(
                    experiment, artifact_location=artifacts
                )
            if run_id is None:
                run_id = self.client.create_run(experiment_id, run_name=name).info.run_id
        except MlflowException as exc:
            reason = str(exc).strip().split(". ")[0]
            raise ConfigError(
                f"tracking.mlflow_uri '{self.uri}': MLflow refused it ({reason}); "
                "use a sqlite:///path/to/mlflow.db or http(s):// URI, or leave it unset"
            ) from None
        self.run_id = run_id

    def log_config(self, config: dict[str, Any]) -> None:
        from mlflow.entities import Param
        from mlflow.exceptions import MlflowException

        params = [Param(k, str(v)[:6000]) for k, v in flatten(config).items()]
        try:
            self.client.log_batch(self.run_id, params=params)
        except MlflowException:
            # A resumed run whose --set changed a key: MLflow keeps parameters immutable,
            # so the first values stay and the new config.yaml below records the change.
            pass
        self.client.log_text(self.run_id, yaml.safe_dump(config, sort_keys=False), "config.yaml")

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(
            self.run_id, metrics=[Metric(k, v, now, step) for k, v in metrics.items()]
        )

    def close(self) -> None:
        self.client.set_terminated(self.run_id)


class _WandB:
    def __init__(
        self, run_dir: Path, project: str, name: str, mode: str, run_id: str | None
    ) -> None:
        import wandb

        self.run = wandb.init(
            project=project,
            name=name,
            dir=str(run_dir),
            mode=mode,
            id=run_id,
            resume="allow",
            settings=wandb.Settings(silent=True, console="off"),
        )
        self.run_id = self.run.id

    def log_config(self, config: dict[str, Any]) -> None:
        self.run.config.update(config, allow_val_change=True)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self.run.log(metrics, step=step)

    def close(self) -> None:
        self.run.finish()


class _Fanout:
    """Every tracker of a run behind one ``(record) -> None`` hook."""

    def __init__(self, trackers: list[Tracker], batch_size: int) -> None:
        self.trackers = trackers
        self.batch_size = batch_size
        self._last_step = 0

    def __call__(self, record: dict[str, Any]) -> None:
        step = int(record.get("step", 0))
        self._last_step = max(self._last_step, step)
        metrics = tracker_records(record, self.batch_size)
        for tracker in self.trackers:
            tracker.log_metrics(metrics, step)

    def log_final(self, result: dict[str, Any]) -> None:
        metrics = {
            f"final/{split}/{metric_name(k)}": float(v)
            for split in ("valid", "test")
            for k, v in result.get(split, {}).items()
            if isinstance(v, int | float) and k != "num_triples"
        }
        if not metrics:  # a run stopped before its final evaluation
            return
        for tracker in self.trackers:
            tracker.log_metrics(metrics, self._last_step)

    def close(self) -> None:
        for tracker in self.trackers:
            tracker.close()


def open_trackers(
    tracking: Any, config: dict[str, Any], run_dir: Path, *, batch_size: int, resume: bool = False
) -> _Fanout | None:
    """The hook for ``tracking.backends`` (None when the list is empty).

    Checks every backend's package first, so a missing one fails before any run starts.
    """
    backends = list(tracking.backends)
    if not backends:
        return None
    for backend in backends:
        _require(backend)
    from emu_dgl.files import make_dir, read_text, write_atomic

    make_dir(run_dir, "run directory")
    ids_path = run_dir / IDS_FILE
    try:
        ids = json.loads(read_text(ids_path, "tracker ids")) if resume and ids_path.exists() else {}
    except ValueError:  # cut short: the trackers start new runs instead of continuing theirs
        ids = {}
    ids = ids if isinstance(ids, dict) else {}
    name = tracking.name or run_dir.resolve().name
    makers: dict[str, Callable[[], Tracker]] = {
        "tensorboard": lambda: _TensorBoard(run_dir),
        "mlflow": lambda: _MLflow(
            run_dir, tracking.mlflow_uri, tracking.project, name, ids.get("mlflow")
        ),
        "wandb": lambda: _WandB(
            run_dir, tracking.project, name, tracking.wandb_mode, ids.get("wandb")
        ),
    }
    trackers: list[Tracker] = []
    for backend in backends:
        tracker = makers[backend]()
        if hasattr(tracker, "run_id"):
            ids[backend] = tracker.run_id
        tracker.log_config(config)
        trackers.append(tracker)
    write_atomic(ids_path, json.dumps(ids) + "\n", "tracker ids")
    return _Fanout(trackers, batch_size)
