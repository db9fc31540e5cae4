"""Two gloo processes on the CPU train one run that follows the one-process run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from emu_dgl.cli import main
from emu_dgl.config import config_from_dict, load_config
from emu_dgl.data import KnowledgeGraph, load_dataset
from emu_dgl.distributed import gather_rows, run_workers, shard_bounds, train_distributed
from emu_dgl.distributed.trainer import DistributedTrainer, ShardedEvaluator
from emu_dgl.errors import ConfigError
from emu_dgl.evaluation import FilteredEvaluator
from emu_dgl.training.results import load_run
from emu_dgl.training.trainer import Trainer

STEPS = 4


def tiny_graph() -> KnowledgeGraph:
    """41 entities (blocks of 20 and 21 rows on two ranks); batches of 64 repeat ids often."""
    gen = torch.Generator().manual_seed(3)
    triples = torch.unique(
        torch.stack(
            [
                torch.randint(41, (400,), generator=gen),
                torch.randint(3, (400,), generator=gen),
                torch.randint(41, (400,), generator=gen),
            ],
            1,
        ),
        dim=0,
    )
    triples = triples[torch.randperm(len(triples), generator=gen)]
    return KnowledgeGraph(
        name="tiny",
        entity_names=[f"e{i}" for i in range(41)],
        relation_names=["a", "b", "c"],
        train=triples[60:],
        valid=triples[:30],
        test=triples[30:60],
    )


#: Row Adagrad, lazy Adam, and dense Adagrad over each block with per-triple (Bernoulli)
#: sides and the whole-table L3 penalty (each block's part on its owner).
CASES = {
    "adagrad": ["train.optimizer=adagrad", "train.sparse=true"],
    "adam": ["train.optimizer=adam", "train.sparse=true"],
    "dense": [
        "train.optimizer=adagrad", "train.sparse=false", "sampler.bernoulli=true",
        "loss.regularizer=l3_table", "loss.reg_weight=0.001",
    ],
}  # fmt: skip


def step_config(case: str):
    return load_config(None, [
        "model.name=distmult", "model.dim=8", "sampler.num_negatives=16", "train.batch_size=64",
        "train.lr=0.05", "train.device=cpu", "train.progress=false", "eval.batch_size=16",
        *CASES[case],
    ])  # fmt: skip


def _float64(trainer: Trainer) -> Trainer:
    trainer.model.double()
    trainer.optimizer = trainer._make_optimizer(0)
    return trainer


def _run_steps(trainer: Trainer) -> list[float]:
    return [float(trainer.train_step(step)) for step in range(STEPS)]


def _steps_worker(rank: int, world_size: int, kg: KnowledgeGraph, out: str) -> None:
    results = {}
    for case in CASES:
        trainer = _float64(
            DistributedTrainer(step_config(case), Path(out) / f"{case}-{rank}", kg=kg)
        )
        losses = _run_steps(trainer)
        sampled = ShardedEvaluator.like(
            FilteredEvaluator(
                kg.all_triples(), kg.num_relations, protocol="sampled", num_negatives=12
            )
        )
        results[case] = {
            "losses": losses,
            "entity": gather_rows(trainer.model.entity.weight.detach(), trainer.bounds),
            "relation": trainer.model.relation.weight.detach().clone(),
            "full": trainer.evaluator.evaluate(trainer.model, kg.test),
            "sampled": sampled.evaluate(trainer.model, kg.test),
            "rows": trainer.entity_rows_per_rank,
            "state_rows": len(
                trainer.optimizer.state[trainer.model.entity.weight][
                    "exp_avg" if case == "adam" else "sum"
                ]
            ),
        }
    if rank == 0:
        torch.save(results, Path(out) / "result.pt")


@pytest.mark.slow
def test_two_processes_follow_one_process_in_float64(tmp_path):
    kg = tiny_graph()
    run_workers(2, _steps_worker, kg, str(tmp_path))
    got = torch.load(tmp_path / "result.pt", weights_only=False)
    for case in CASES:
        single = _float64(Trainer(step_config(case), tmp_path / f"single-{case}", kg=kg))
        losses = _run_steps(single)
        result = got[case]
        assert result["rows"] == [20, 21] and result["state_rows"] == 20  # rank 0's block and state
        torch.testing.assert_close(
            result["entity"], single.model.entity.weight.detach(), rtol=0, atol=1e-9
        )
        torch.testing.assert_close(
            result["relation"], single.model.relation.weight.detach(), rtol=0, atol=1e-9
        )
        assert result["losses"] == pytest.approx(losses, abs=1e-9)
        assert not torch.equal(
            result["entity"],
            _float64(Trainer(step_config(case), tmp_path / "x", kg=kg)).model.entity.weight,
        )
        full = single.evaluator.evaluate(single.model, kg.test)
        for part in ("head", "tail"):
            assert result["full"][part] == pytest.approx(full[part], abs=1e-12)
        sampled = FilteredEvaluator(
            kg.all_triples(), kg.num_relations, protocol="sampled", num_negatives=12
        )
        assert result["sampled"]["tail"] == pytest.approx(
            sampled.evaluate(single.model, kg.test)["tail"], abs=1e-12
        )


RUN_SETTINGS = [
    "dataset.name=synthetic", "model.name=distmult", "model.dim=16", "sampler.num_negatives=32",
    "train.batch_size=256", "train.max_steps=40", "train.valid_every=20", "train.checkpoint_every=20",
    "train.log_every=10", "train.progress=false", "train.device=cpu", "train.lr=0.5",
]  # fmt: skip


def run_config(*extra: str):
    return load_config(None, [*RUN_SETTINGS, *extra])


@pytest.mark.slow
def test_two_process_run_resumes_exactly_and_leaves_a_one_process_run_folder(tmp_path):
    config = run_config()
    sets = [arg for line in RUN_SETTINGS for arg in ("--set", line)]
    cli = CliRunner().invoke(
        main, ["train", "--nproc", "2", "--out", str(tmp_path / "full"), *sets]
    )
    assert cli.exit_code == 0, cli.output
    full = json.loads((tmp_path / "full" / "metrics.json").read_text())
    assert full["world_size"] == 2 and "on 2 processes" in cli.output
    kg = load_dataset("synthetic")
    assert full["entity_rows_per_rank"] == [
        kg.num_entities // 2,
        kg.num_entities - kg.num_entities // 2,
    ]
    # Killed after 30 steps (the rank checkpoints of step 20 survive), then resumed from the command line.
    assert train_distributed(config, tmp_path / "killed", nproc=2, stop_after=30) == {}
    # A change the checkpoints cannot honour is refused in one line before anything changes,
    # and a second writer is refused while the run folder is locked.
    before = {
        p: p.read_bytes()
        for p in (tmp_path / "full").rglob("*")
        if p.is_file() and p.name != ".lock"
    }
    cli = CliRunner().invoke(
        main, ["train", "--resume", str(tmp_path / "full"), "--nproc", "2", "--set", "model.dim=8"]
    )
    assert cli.exit_code != 0 and "model.dim" in cli.output and "Traceback" not in cli.output
    assert {p: p.read_bytes() for p in before} == before
    import subprocess
    import sys

    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from emu_dgl.training.run import RunLock; "
            f"l = RunLock({str(tmp_path / 'killed')!r}); l.__enter__(); print('locked', flush=True); "
            "time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        busy = CliRunner().invoke(
            main, ["train", "--resume", str(tmp_path / "killed"), "--nproc", "2"]
        )
        assert busy.exit_code != 0 and "in use" in busy.output
    finally:
        holder.kill()
        holder.wait()
    cli = CliRunner().invoke(main, ["train", "--resume", str(tmp_path / "killed"), "--nproc", "2"])
    assert cli.exit_code == 0, cli.output
    resumed = json.loads((tmp_path / "killed" / "metrics.json").read_text())
    assert resumed["valid"] == full["valid"] and resumed["test"] == full["test"]
    # One process afterwards: the gathered best model evaluates to the distributed metrics.
    cfg, kg, model = load_run(tmp_path / "full")
    single_eval = Trainer(cfg, tmp_path / "eval", kg=kg).evaluator.evaluate(model, kg.test)
    assert single_eval["mrr"] == pytest.approx(full["test"]["mrr"], abs=1e-6)
    # It learns as a one-process run does (same draws; float32 sums in another order).
    one = Trainer(config_from_dict(config.to_dict()), tmp_path / "one", kg=kg).fit()
    assert (
        full["test"]["mrr"] == pytest.approx(one["test"]["mrr"], abs=0.02)
        and one["test"]["mrr"] > 0.25
    )
    log = [
        json.loads(line) for line in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()
    ]
    assert any("loss" in rec for rec in log)
    with pytest.raises(ConfigError, match="--nproc 2"):
        train_distributed(config, tmp_path / "full", nproc=3, resume=True)


def test_blocks_and_unsupported_settings():
    assert shard_bounds(41, 2) == [0, 20, 41] and shard_bounds(10, 3) == [0, 3, 6, 10]
    with pytest.raises(ConfigError, match="1vsall"):
        train_distributed(run_config("loss.name=1vsall", "emu.enabled=false"), "unused", nproc=2)
    with pytest.raises(ConfigError, match="batch_size"):
        train_distributed(run_config("train.batch_size=1"), "unused", nproc=2)
