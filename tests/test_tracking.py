"""Experiment tracking: each backend read back with its own reader, no network."""

from __future__ import annotations

import json
import struct
import sys
import time
from pathlib import Path

import pytest
import yaml

from emu_dgl.config import load_config
from emu_dgl.errors import ConfigError
from emu_dgl.training.build import check_components
from emu_dgl.training.trainer import Trainer

TINY = [
    "train.max_steps=20",
    "train.log_every=5",
    "train.valid_every=10",
    "train.progress=false",
    "model.dim=8",
    "sampler.num_negatives=8",
    "train.batch_size=64",
    "train.checkpoint_every=0",
]


def _train(tmp_path: Path, *sets: str) -> tuple[Path, dict, list[dict]]:
    config = load_config(None, [*TINY, *sets])
    run_dir = tmp_path / "run"
    metrics = Trainer(config, run_dir).fit()
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return run_dir, metrics, records


@pytest.mark.slow
def test_tensorboard_events_hold_loss_lr_throughput_validation_and_config(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir, metrics, records = _train(tmp_path, "tracking.backends=[tensorboard]")
    events = EventAccumulator(
        str(run_dir / "tensorboard"), size_guidance={"scalars": 0, "tensors": 0}
    )
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {
        "train/loss",
        "train/lr",
        "train/steps_per_second",
        "train/triples_per_second",
        "valid/mrr",
        "valid/hits_at_10",
        "final/test/mrr",
    } <= tags
    train = [r for r in records if "loss" in r]
    assert (
        [e.step for e in events.Scalars("train/loss")]
        == [r["step"] for r in train]
        == [5, 10, 15, 20]
    )
    for event, record in zip(events.Scalars("train/loss"), train, strict=True):
        assert event.value == pytest.approx(record["loss"], rel=1e-6)
    speed = events.Scalars("train/triples_per_second")[0].value
    assert speed == pytest.approx(train[0]["steps_per_second"] * 64, rel=1e-5)
    valid = [r for r in records if r.get("split") == "valid"]
    assert [e.value for e in events.Scalars("valid/mrr")] == pytest.approx(
        [r["mrr"] for r in valid], rel=1e-6
    )
    assert events.Scalars("final/test/mrr")[0].value == pytest.approx(
        metrics["test"]["mrr"], rel=1e-6
    )
    text = events.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert yaml.safe_load("\n".join(line[4:] for line in text.splitlines()))["model"]["dim"] == 8


@pytest.mark.slow
def test_mlflow_local_store_in_run_dir_and_resume_continues_the_run(tmp_path):
    from mlflow.tracking import MlflowClient

    run_dir, metrics, records = _train(
        tmp_path, "tracking.backends=mlflow", "tracking.project=tests"
    )
    client = MlflowClient(tracking_uri=f"sqlite:///{run_dir / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("tests").experiment_id])
    assert run.info.run_id == json.loads((run_dir / "tracking.json").read_text())["mlflow"]
    assert run.info.run_name == "run" and run.info.status == "FINISHED"
    assert run.data.params["train.lr"] == "0.1" and run.data.params["model.dim"] == "8"
    loss = sorted(
        (m.step, m.value) for m in client.get_metric_history(run.info.run_id, "train/loss")
    )
    train = [(r["step"], r["loss"]) for r in records if "loss" in r]
    assert [s for s, _ in loss] == [s for s, _ in train] == [5, 10, 15, 20]
    assert [v for _, v in loss] == pytest.approx([v for _, v in train], rel=1e-6)
    assert run.data.metrics["final/valid/mrr"] == pytest.approx(metrics["valid"]["mrr"])
    lr = client.get_metric_history(run.info.run_id, "train/lr")
    assert {m.value for m in lr} == {0.1}
    artifact = Path(client.download_artifacts(run.info.run_id, "config.yaml", str(tmp_path)))
    assert yaml.safe_load(artifact.read_text())["tracking"]["backends"] == ["mlflow"]

    # a resumed run keeps logging into the same MLflow run
    config = load_config(run_dir / "config.yaml", ["train.max_steps=30"])
    Trainer(config, run_dir).fit(resume=True)
    (again,) = client.search_runs([client.get_experiment_by_name("tests").experiment_id])
    assert again.info.run_id == run.info.run_id
    assert max(m.step for m in client.get_metric_history(run.info.run_id, "train/loss")) == 30


def _wandb_records(path: Path) -> list:
    """Records of a W&B offline ``.wandb`` file: a 7-byte header, then LevelDB-log
    chunks (crc32 u32, length u16, type u8) in 32 KiB blocks, each record a protobuf."""
    from wandb.proto import wandb_internal_pb2 as pb

    data, block, pos, pending, out = path.read_bytes(), 32768, 7, b"", []
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a chunk header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if (length == 0 and kind == 0) or pos + 7 + length > len(data):
            break  # padding, or a chunk still being written
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        pending = chunk if kind in (1, 2) else pending + chunk  # 1 full, 2 first, 3 middle, 4 last
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(pending)
            out.append(record)
    return out


@pytest.mark.slow
def test_wandb_offline_run_holds_history_and_config(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_SILENT", "true")
    run_dir, metrics, records = _train(
        tmp_path, "tracking.backends=[wandb]", "tracking.wandb_mode=offline"
    )
    (path,) = (run_dir / "wandb").glob("offline-run-*/run-*.wandb")
    # W&B's service process writes the file; it may still be flushing when finish() returns
    deadline = time.monotonic() + 30
    while not any(r.WhichOneof("record_type") == "exit" for r in _wandb_records(path)):
        assert time.monotonic() < deadline, "W&B never finished writing its offline run"
        time.sleep(0.2)
    history, config = [], {}
    for record in _wandb_records(path):
        kind = record.WhichOneof("record_type")
        if kind == "history":
            history.append(
                {
                    item.nested_key[0] if item.nested_key else item.key: json.loads(item.value_json)
                    for item in record.history.item
                }
            )
        elif kind in ("run", "config"):
            updates = record.run.config.update if kind == "run" else record.config.update
            config.update({item.key: json.loads(item.value_json) for item in updates})
    losses = [(h["_step"], h["train/loss"]) for h in history if "train/loss" in h]
    train = [(r["step"], r["loss"]) for r in records if "loss" in r]
    assert [s for s, _ in losses] == [s for s, _ in train] == [5, 10, 15, 20]
    assert [v for _, v in losses] == pytest.approx([v for _, v in train], rel=1e-6)
    assert any(h.get("final/test/mrr") == pytest.approx(metrics["test"]["mrr"]) for h in history)
    assert config["model"]["dim"] == 8 and config["emu"]["p"] == 0.39


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["tensorboard", "mlflow", "wandb"])
def test_missing_package_names_the_extra(tmp_path, monkeypatch, backend):
    # sys.modules[name] = None makes `import name` raise ImportError, as when not installed
    monkeypatch.setitem(sys.modules, backend, None)
    others = [b for b in ("tensorboard", "mlflow", "wandb") if b != backend]
    config = load_config(None, [*TINY, f"tracking.backends={others[0]},{backend}"])
    with pytest.raises(ConfigError) as info:
        Trainer(config, tmp_path / "run").fit()
    assert str(info.value) == (
        f"tracking.backends includes '{backend}' but the '{backend}' package is not installed; "
        'install it with: pip install "emu-dgl[track]"'
    )
    # checked before any backend opens or any step runs
    assert (
        not (tmp_path / "run" / "tensorboard").exists()
        and not (tmp_path / "run" / "metrics.jsonl").exists()
    )


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "tracking.backends=[tensorbord]",
            "tracking.backends: unknown value 'tensorbord' (did you mean 'tensorboard'?)",
        ),
        ("tracking.backends=3", "expected a list of names"),
        ("tracking.wandb_mode=cloud", "tracking.wandb_mode: unknown value 'cloud'"),
    ],
)
def test_bad_tracking_config_is_rejected_before_training(override, message):
    with pytest.raises(ConfigError) as info:
        check_components(load_config(None, [override]))
    assert message in str(info.value)


def test_a_uri_mlflow_refuses_is_one_line(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    uri = (tmp_path / "mlruns").as_uri()  # MLflow 3 keeps its file store only behind an opt-out
    config = load_config(None, [*TINY, "tracking.backends=mlflow", f"tracking.mlflow_uri={uri}"])
    with pytest.raises(ConfigError) as info:
        Trainer(config, tmp_path / "run").fit()
    message = str(info.value)
    assert (
        message.startswith(f"tracking.mlflow_uri '{uri}': MLflow refused it (")
        and "\n" not in message
    )


def test_no_backends_means_only_metrics_jsonl(tmp_path):
    run_dir, _, records = _train(tmp_path)
    assert (
        records
        and not (run_dir / "tensorboard").exists()
        and not (run_dir / "tracking.json").exists()
    )
