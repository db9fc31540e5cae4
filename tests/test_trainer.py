"""The trainer end to end on the built-in synthetic graph: learns, resumes exactly, fails clearly."""

from __future__ import annotations

import json

import pytest
import torch

from emu_dgl.config import load_config
from emu_dgl.data import load_dataset
from emu_dgl.errors import CheckpointError
from emu_dgl.training.checkpoint import load_checkpoint
from emu_dgl.training.run import check_resume
from emu_dgl.training.trainer import Trainer


@pytest.fixture(scope="module")
def kg():
    return load_dataset("synthetic")


def small_config(*overrides: str):
    base = [
        "model.name=distmult",
        "model.dim=32",
        "sampler.num_negatives=32",
        "train.batch_size=256",
        "train.max_steps=40",
        "train.valid_every=20",
        "train.checkpoint_every=20",
        "train.log_every=10",
        "train.progress=false",
        "train.device=cpu",
    ]
    return load_config(None, [*base, *overrides])


@pytest.mark.slow
def test_training_learns_far_beyond_random(kg, tmp_path):
    config = small_config(
        "train.max_steps=300", "train.valid_every=100", "train.checkpoint_every=100"
    )
    untrained = Trainer(config, tmp_path / "untrained", kg=kg)
    before = untrained.evaluator.evaluate(untrained.model, kg.test)["mrr"]
    metrics = Trainer(config, tmp_path / "run", kg=kg).fit()
    # A random ranker's MRR is about (ln E) / E, ~0.02 here; training must beat it many times over.
    assert metrics["test"]["mrr"] > 0.3, metrics["test"]
    assert metrics["test"]["mrr"] > 5 * before
    for split in ("valid", "test"):
        for part in (metrics[split], metrics[split]["head"], metrics[split]["tail"]):
            assert set(part) >= {"mrr", "mr", "hits@1", "hits@3", "hits@10"}
    assert metrics["train_steps_per_second"] > 0 and metrics["preprocess_seconds"] >= 0
    files = {p.name for p in (tmp_path / "run").iterdir()}
    assert {"config.yaml", "metrics.jsonl", "metrics.json", "checkpoints"} <= files
    written = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert written["test"]["mrr"] == metrics["test"]["mrr"]
    log = [
        json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    ]
    losses = [rec["loss"] for rec in log if "loss" in rec]
    assert losses[-1] < losses[0]
    assert any(rec.get("split") == "valid" for rec in log)


@pytest.mark.slow
def test_same_seed_same_numbers(kg, tmp_path):
    a = Trainer(small_config(), tmp_path / "a", kg=kg).fit()
    b = Trainer(small_config(), tmp_path / "b", kg=kg).fit()
    assert a["test"] == b["test"] and a["valid"] == b["valid"]
    c = Trainer(small_config("train.seed=1"), tmp_path / "c", kg=kg).fit()
    assert c["test"] != a["test"]


@pytest.mark.slow
@pytest.mark.parametrize(
    "overrides",
    [
        ("sampler.name=uniform",),
        ("sampler.name=sans", "sampler.walks=50"),
        ("sampler.name=sans", "sampler.walks=0", "emu.variant=mixup"),
        ("model.name=complex", "train.schedule=reference", "train.max_steps=60"),
        ("model.name=rotate", "sampler.bernoulli=true", "loss.name=self_adversarial"),
    ],
    ids=[
        "uniform",
        "sans-csr",
        "sans-exact-mixup",
        "complex-reference-schedule",
        "rotate-bernoulli",
    ],
)
def test_killed_run_resumes_to_identical_metrics(kg, tmp_path, overrides):
    config = small_config(*overrides)
    uninterrupted = Trainer(config, tmp_path / "full", kg=kg).fit()
    # "Kill" the run after 30 steps: the last checkpoint on disk is the one of step 20.
    assert Trainer(config, tmp_path / "killed", kg=kg).fit(stop_after=30) == {}
    assert load_checkpoint(tmp_path / "killed" / "checkpoints" / "last.pt")["step"] == 20
    resumed = Trainer(config, tmp_path / "killed", kg=kg).fit(resume=True)
    assert resumed["valid"] == uninterrupted["valid"]
    assert resumed["test"] == uninterrupted["test"]
    assert resumed["best_step"] == uninterrupted["best_step"]
    lines = (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()
    steps = [json.loads(line)["step"] for line in lines if "loss" in json.loads(line)]
    assert steps == sorted(steps) and len(steps) == len(set(steps))


@pytest.mark.slow
def test_every_validation_is_a_checkpoint_whatever_checkpoint_every_says(kg, tmp_path):
    # The paper configs checkpoint every 5,000 steps; a short run of them must not lose
    # everything to a crash after its first validation.
    config = small_config("train.valid_every=10", "train.checkpoint_every=5000")
    uninterrupted = Trainer(config, tmp_path / "full", kg=kg).fit()
    assert Trainer(config, tmp_path / "killed", kg=kg).fit(stop_after=15) == {}
    checkpoints = tmp_path / "killed" / "checkpoints"
    assert load_checkpoint(checkpoints / "last.pt")["step"] == 10  # the first validation's step
    plan = check_resume(tmp_path / "killed", config.to_dict())
    assert plan.step == 10
    resumed = Trainer(config, tmp_path / "killed", kg=kg).fit(resume=plan)
    assert resumed["test"] == uninterrupted["test"] and resumed["valid"] == uninterrupted["valid"]


@pytest.mark.slow
def test_a_long_run_with_no_checkpoint_before_its_end_is_warned_about(kg, tmp_path):
    import warnings

    from emu_dgl.errors import EmuDglWarning

    long = ("train.max_steps=2000", "train.valid_every=0", "train.checkpoint_every=5000")
    with pytest.warns(
        EmuDglWarning, match=r"checkpoint_every \(5000\) exceeds train.max_steps \(2000\)"
    ):
        Trainer(small_config(*long), tmp_path / "warned", kg=kg).fit(stop_after=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", EmuDglWarning)
        # a validation before the end is a checkpoint: no warning; nor for a short run
        quiet = ("train.max_steps=2000", "train.checkpoint_every=5000", "train.valid_every=500")
        Trainer(small_config(*quiet), tmp_path / "quiet", kg=kg).fit(stop_after=1)
        short = ("train.valid_every=0", "train.checkpoint_every=5000")
        Trainer(small_config(*short), tmp_path / "short", kg=kg).fit(stop_after=1)


@pytest.mark.slow
def test_reference_schedule_switches_to_adam_at_half(kg, tmp_path):
    config = small_config("train.schedule=reference", "train.max_steps=40", "train.lr=0.1")
    trainer = Trainer(config, tmp_path / "run", kg=kg)
    trainer.fit()
    assert isinstance(trainer.optimizer, torch.optim.Adam)
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.01)
    assert trainer.optim_state.next_switch == 60


@pytest.mark.parametrize(
    "decoder", ["transe", "distmult", "complex", "rotate", "protate", "transd", "hake"]
)
@pytest.mark.parametrize("variant", ["emu", "mixup", "label_smoothing"])
def test_every_decoder_combines_with_every_emu_variant(kg, tmp_path, decoder, variant):
    config = small_config(
        f"model.name={decoder}",
        f"emu.variant={variant}",
        "train.max_steps=4",
        "train.valid_every=0",
        "train.checkpoint_every=0",
        "eval.valid_max_triples=50",
    )
    trainer = Trainer(config, tmp_path, kg=kg)
    losses = [float(trainer.train_step(step)) for step in range(4)]
    assert all(torch.isfinite(torch.tensor(losses)))


def test_one_vs_all_loss_trains(kg, tmp_path):
    config = small_config(
        "loss.name=1vsall",
        "emu.enabled=false",
        "train.max_steps=100",
        "train.valid_every=50",
        "train.checkpoint_every=50",
    )
    metrics = Trainer(config, tmp_path, kg=kg).fit()
    assert metrics["test"]["mrr"] > 0.1


@pytest.mark.slow
def test_corrupt_last_checkpoint_falls_back_to_previous_and_finishes_identically(kg, tmp_path):
    config = small_config("train.checkpoint_every=10")
    full = Trainer(config, tmp_path / "full", kg=kg).fit()
    assert Trainer(config, tmp_path / "run", kg=kg).fit(stop_after=35) == {}
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    previous = tmp_path / "run" / "checkpoints" / "previous.pt"
    assert (load_checkpoint(last)["step"], load_checkpoint(previous)["step"]) == (30, 20)
    last.write_bytes(last.read_bytes()[:1000])  # truncated
    with pytest.raises(CheckpointError, match="truncated or not an emu-dgl checkpoint") as info:
        load_checkpoint(last)
    assert "\n" not in str(info.value)
    plan = check_resume(tmp_path / "run", config.to_dict())
    assert plan.step == 20 and plan.source.startswith("previous.pt")
    resumed = Trainer(config, tmp_path / "run", kg=kg).fit(resume=plan)
    assert resumed["test"] == full["test"] and resumed["valid"] == full["valid"]
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    with pytest.raises(CheckpointError, match="not an emu-dgl checkpoint"):
        load_checkpoint(foreign)
