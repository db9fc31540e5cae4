"""Gloo processes on the CPU train one run that follows the one-process run: from the
first row (each rank builds its block only), through sharded checkpoints that resume
exactly on as many processes and resharded on another number, kills at random moments,
and two torchrun agents."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from emu_dgl.cli import main
from emu_dgl.config import config_from_dict, load_config
from emu_dgl.data import KnowledgeGraph, load_dataset
from emu_dgl.distributed import gather_rows, run_workers, shard_bounds, train_distributed
from emu_dgl.distributed.launch import _free_port
from emu_dgl.distributed.trainer import DistributedTrainer, ShardedEvaluator
from emu_dgl.errors import ConfigError, EmuDglError, RunError
from emu_dgl.evaluation import FilteredEvaluator
from emu_dgl.training.results import load_run
from emu_dgl.training.shards import read_rows, run_weights
from emu_dgl.training.trainer import Trainer
from tests.run_helpers import assert_one_line, snapshot

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


#: The reference schedule across its switch (Adagrad, then dense Adam at lr/10 from step
#: max_steps/2): row-wise Adagrad first, and dense Adagrad with the whole-table penalty.
REFERENCE = {
    "rows": ["train.sparse=true"],
    "dense": ["train.sparse=false", "loss.regularizer=l3_table", "loss.reg_weight=0.001"],
}


def reference_config(case: str):
    return load_config(None, [
        "model.name=distmult", "model.dim=8", "sampler.num_negatives=16", "train.batch_size=64",
        "train.lr=0.05", "train.device=cpu", "train.progress=false", "eval.batch_size=16",
        "train.schedule=reference", "train.optimizer=adagrad", "train.max_steps=8",
        "train.valid_every=4", "train.checkpoint_every=4", "train.log_every=4",
        *REFERENCE[case],
    ])  # fmt: skip


def _peak_growth(build) -> tuple[object, int]:
    """``build()`` and the growth of this process's peak resident memory while it ran."""

    def status(key: str) -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1]) * 1024
        raise AssertionError(key)

    Path("/proc/self/clear_refs").write_text("5")  # the peak starts again from here
    before = status("VmRSS:")
    made = build()
    return made, status("VmHWM:") - before


def wide_graph(entities: int) -> KnowledgeGraph:
    """Many entities, few triples: the entity table is most of a run's memory."""
    gen = torch.Generator().manual_seed(5)
    triples = torch.stack(
        [
            torch.randint(entities, (300,), generator=gen),
            torch.randint(2, (300,), generator=gen),
            torch.randint(entities, (300,), generator=gen),
        ],
        1,
    )
    return KnowledgeGraph(
        name="wide",
        entity_names=[f"e{i}" for i in range(entities)],
        relation_names=["a", "b"],
        train=triples[40:],
        valid=triples[:20],
        test=triples[20:40],
    )


WIDE = (400_000, 64)  # entities, dim: a float32 table of 102 MB, and as much Adagrad state


def _steps_worker(rank: int, world_size: int, kg: KnowledgeGraph, out: str) -> None:
    results: dict[str, object] = {}
    # Memory first (before anything else raised this process's peak): the rank builds its
    # block of rows and its block's optimizer state, never the whole table.
    wide = wide_graph(WIDE[0])
    wide_config = load_config(None, [
        "model.name=distmult", f"model.dim={WIDE[1]}", "train.sparse=false",
        "train.device=cpu", "train.progress=false", "sampler.num_negatives=4",
    ])  # fmt: skip
    DistributedTrainer(wide_config, Path(out) / "warm", kg=kg)  # one-time costs (imports) first
    trainer, growth = _peak_growth(
        lambda: DistributedTrainer(wide_config, Path(out) / "wide", kg=wide)
    )
    results["wide"] = {"growth": growth, "rows": trainer.model.entity.weight.shape[0]}
    trainer = None  # (its memory goes before the next runs)
    for case in CASES:
        trainer = DistributedTrainer(step_config(case), Path(out) / f"{case}-{rank}", kg=kg)
        start = gather_rows(trainer.model.entity.weight.detach(), trainer.bounds)
        trainer = _float64(trainer)
        losses = _run_steps(trainer)
        sampled = ShardedEvaluator.like(
            FilteredEvaluator(
                kg.all_triples(), kg.num_relations, protocol="sampled", num_negatives=12
            )
        )
        results[case] = {
            "start": start,
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
    for case in REFERENCE:  # whole runs (validation, checkpoints, the switch) in float64
        trainer = _float64(
            DistributedTrainer(reference_config(case), Path(out) / f"ref-{case}", kg=kg)
        )
        results[f"ref-{case}"] = {"metrics": trainer.fit(), "phase": trainer.optim_state.phase}
    if rank == 0:
        torch.save(results, Path(out) / "result.pt")


def _last_state(run_dir: Path) -> dict:
    """The last checkpoint of a run, its blocks stitched into one table if it is sharded."""
    return run_weights(run_dir, "last")[0]


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc")
def test_two_processes_follow_one_process_in_float64(tmp_path):
    kg = tiny_graph()
    run_workers(2, _steps_worker, kg, str(tmp_path))
    got = torch.load(tmp_path / "result.pt", weights_only=False)
    # Slices from the first byte: a rank's peak grew by its block and the block's state
    # (about half of 2 x 102 MB), never by the whole table and its state.
    table = WIDE[0] * WIDE[1] * 4
    assert got["wide"]["rows"] == WIDE[0] // 2
    assert got["wide"]["growth"] < 0.7 * 2 * table, got["wide"]["growth"] / 2**20
    for case in CASES:
        single = Trainer(step_config(case), tmp_path / f"single-{case}", kg=kg)
        result = got[case]
        # Step 0: the ranks' blocks, each drawn by row id, are the one-process table.
        assert torch.equal(result["start"], single.model.entity.weight.detach())
        single = _float64(single)
        losses = _run_steps(single)
        assert result["rows"] == [20, 21] and result["state_rows"] == 20  # rank 0's block and state
        torch.testing.assert_close(
            result["entity"], single.model.entity.weight.detach(), rtol=0, atol=1e-9
        )
        torch.testing.assert_close(
            result["relation"], single.model.relation.weight.detach(), rtol=0, atol=1e-9
        )
        assert result["losses"] == pytest.approx(losses, abs=1e-9)
        assert not torch.equal(result["entity"], result["start"].double())
        full = single.evaluator.evaluate(single.model, kg.test)
        for part in ("head", "tail"):
            assert result["full"][part] == pytest.approx(full[part], abs=1e-12)
        sampled = FilteredEvaluator(
            kg.all_triples(), kg.num_relations, protocol="sampled", num_negatives=12
        )
        assert result["sampled"]["tail"] == pytest.approx(
            sampled.evaluate(single.model, kg.test)["tail"], abs=1e-12
        )
    # The reference schedule on two processes: dense Adam over each rank's block after the
    # switch is the one-process run's dense Adam over the table.
    for case in REFERENCE:
        single = _float64(Trainer(reference_config(case), tmp_path / f"single-ref-{case}", kg=kg))
        metrics = single.fit()
        result = got[f"ref-{case}"]
        assert result["phase"] == single.optim_state.phase == 1
        two, one = (
            _last_state(tmp_path / f"ref-{case}"),
            _last_state(tmp_path / f"single-ref-{case}"),
        )
        assert two["step"] == one["step"] == 8 and two["optim_phase"] == one["optim_phase"] == 1
        for key in ("entity.weight", "relation.weight"):
            assert two["model"][key].dtype == torch.float64
            torch.testing.assert_close(two["model"][key], one["model"][key], rtol=0, atol=1e-9)
        for split in ("valid", "test"):
            assert result["metrics"][split]["mrr"] == pytest.approx(metrics[split]["mrr"], abs=1e-9)
        assert result["metrics"]["world_size"] == 2


RUN_SETTINGS = [
    "dataset.name=synthetic", "model.name=distmult", "model.dim=16", "sampler.num_negatives=32",
    "train.batch_size=256", "train.max_steps=40", "train.valid_every=20", "train.checkpoint_every=20",
    "train.log_every=10", "train.progress=false", "train.device=cpu", "train.lr=0.5",
]  # fmt: skip


def run_config(*extra: str):
    return load_config(None, [*RUN_SETTINGS, *extra])


def _table(run_dir: Path, which: str = "last") -> torch.Tensor:
    return run_weights(run_dir, which)[0]["model"]["entity.weight"]


@pytest.mark.slow
def test_two_process_run_resumes_exactly_and_reshards(tmp_path):
    config = run_config()
    sets = [arg for line in RUN_SETTINGS for arg in ("--set", line)]
    cli = CliRunner().invoke(
        main, ["train", "--nproc", "2", "--out", str(tmp_path / "full"), *sets]
    )
    assert cli.exit_code == 0, cli.output
    assert "leaked semaphore" not in cli.output
    full = json.loads((tmp_path / "full" / "metrics.json").read_text())
    assert full["world_size"] == 2 and "on 2 processes" in cli.output
    kg = load_dataset("synthetic")
    assert full["entity_rows_per_rank"] == [
        kg.num_entities // 2,
        kg.num_entities - kg.num_entities // 2,
    ]
    # Each rank wrote its own rows; the manifest commits them (no gathered table anywhere).
    checkpoints = tmp_path / "full" / "checkpoints"
    manifest = json.loads((checkpoints / "sharded.json").read_text())
    assert manifest["last"]["step"] == 40 and manifest["last"]["final"]
    files = sorted(p.relative_to(checkpoints).as_posix() for p in checkpoints.rglob("*.pt"))
    assert files == sorted(
        f"{manifest[k]['folder']}/rank-{r}.pt" for k in ("last", "previous", "best") for r in (0, 1)
    )
    # Killed after 30 steps (the checkpoint of step 20 is committed), then resumed from the
    # command line without --nproc: distributed.json says 2, and the run continues exactly.
    assert train_distributed(config, tmp_path / "killed", nproc=2, stop_after=30) == {}
    shutil.copytree(tmp_path / "killed", tmp_path / "resharded")
    # A committed file that rank 1 cannot read: every rank stops with the same one line,
    # none trains on from another step, and nothing of the run is changed.
    damaged = tmp_path / "damaged"
    shutil.copytree(tmp_path / "killed", damaged)
    committed = json.loads((damaged / "checkpoints" / "sharded.json").read_text())["last"]
    victim = damaged / "checkpoints" / committed["folder"] / "rank-1.pt"
    victim.write_bytes(victim.read_bytes()[:1000])
    kept = snapshot(damaged)
    cli = CliRunner().invoke(main, ["train", "--resume", str(damaged)])
    line = assert_one_line(cli, "do not all hold step 20", only=False)
    assert "rank 1" in line and "none of them continues" in line
    assert snapshot(damaged) == kept
    # A change the checkpoints cannot honour is refused in one line before anything changes,
    # and a second writer is refused while the run folder is locked.
    before = {
        p: p.read_bytes()
        for p in (tmp_path / "full").rglob("*")
        if p.is_file() and p.name != ".lock"
    }
    cli = CliRunner().invoke(
        main, ["train", "--resume", str(tmp_path / "full"), "--set", "model.dim=8"]
    )
    assert cli.exit_code != 0 and "model.dim" in cli.output and "Traceback" not in cli.output
    assert {p: p.read_bytes() for p in before} == before
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
        busy = CliRunner().invoke(main, ["train", "--resume", str(tmp_path / "killed")])
        assert busy.exit_code != 0 and "in use" in busy.output
    finally:
        holder.kill()
        holder.wait()
    cli = CliRunner().invoke(main, ["train", "--resume", str(tmp_path / "killed")])
    assert cli.exit_code == 0, cli.output
    assert "on 2 processes" in cli.output
    resumed = json.loads((tmp_path / "killed" / "metrics.json").read_text())
    assert resumed["valid"] == full["valid"] and resumed["test"] == full["test"]
    assert torch.equal(_table(tmp_path / "killed"), _table(tmp_path / "full"))
    # The same checkpoint resumed on 3 processes: each reads its rows from the blocks of 2
    # (the same run, float32 sums in another order).
    cli = CliRunner().invoke(
        main, ["train", "--resume", str(tmp_path / "resharded"), "--nproc", "3"]
    )
    assert cli.exit_code == 0, cli.output
    three = json.loads((tmp_path / "resharded" / "metrics.json").read_text())
    assert three["world_size"] == 3 and three["entity_rows_per_rank"] == [201, 202, 202]
    assert json.loads((tmp_path / "resharded" / "distributed.json").read_text()) == {
        "world_size": 3
    }
    torch.testing.assert_close(
        _table(tmp_path / "resharded"), _table(tmp_path / "full"), rtol=0, atol=1e-4
    )
    assert three["test"]["mrr"] == pytest.approx(full["test"]["mrr"], abs=2e-3)
    # One process afterwards: the stitched best model evaluates to the distributed metrics,
    # and export writes the stitched table.
    cfg, kg, model = load_run(tmp_path / "full")
    single_eval = Trainer(cfg, tmp_path / "eval", kg=kg).evaluator.evaluate(model, kg.test)
    assert single_eval["mrr"] == pytest.approx(full["test"]["mrr"], abs=1e-6)
    assert torch.equal(model.entity.weight.detach(), _table(tmp_path / "full", "best"))
    cli = CliRunner().invoke(main, ["export", str(tmp_path / "full"), "--out", str(tmp_path / "x")])
    assert cli.exit_code == 0, cli.output
    import numpy as np

    exported = torch.from_numpy(np.load(tmp_path / "x" / "entities.npy"))
    assert torch.equal(exported, _table(tmp_path / "full", "best")), cli.output
    assert "every process's rows, stitched" in cli.output
    # It learns as a one-process run does (same initial table and draws; float32 sums in
    # another order).
    one = Trainer(config_from_dict(config.to_dict()), tmp_path / "one", kg=kg).fit()
    assert (
        full["test"]["mrr"] == pytest.approx(one["test"]["mrr"], abs=0.02)
        and one["test"]["mrr"] > 0.25
    )
    log = [
        json.loads(line) for line in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()
    ]
    assert any("loss" in rec for rec in log)


def test_blocks_and_unsupported_settings():
    assert shard_bounds(41, 2) == [0, 20, 41] and shard_bounds(10, 3) == [0, 3, 6, 10]
    with pytest.raises(ConfigError, match="1vsall"):
        train_distributed(run_config("loss.name=1vsall", "emu.enabled=false"), "unused", nproc=2)
    with pytest.raises(ConfigError, match="batch_size"):
        train_distributed(run_config("train.batch_size=1"), "unused", nproc=2)
    # message passing reads rows other processes hold: refused before any process starts
    with pytest.raises(ConfigError, match="model.encoder=rgcn is not supported on 2 processes"):
        train_distributed(run_config("model.encoder=rgcn"), "unused", nproc=2)


@pytest.mark.slow
def test_ranks_write_into_the_folder_as_admitted(tmp_path, monkeypatch):
    """A run folder named through a link (``runs/current``) that is re-pointed once the
    launcher has admitted the run: the ranks write into the folder it locked, and the
    folder the link points to now keeps its own files only."""
    import emu_dgl.distributed.launch as launch

    runs = tmp_path / "runs"
    (runs / "new").mkdir(parents=True)
    (runs / "other").mkdir()
    (runs / "other" / "notes.txt").write_text("not the run's\n")
    current = runs / "current"
    current.symlink_to("new")
    start_ranks = launch.run_workers

    def re_pointed_then_started(*args, **kwargs):
        (runs / "current.tmp").symlink_to("other")
        os.replace(runs / "current.tmp", current)  # as `ln -sfn other current` does
        start_ranks(*args, **kwargs)

    monkeypatch.setattr(launch, "run_workers", re_pointed_then_started)
    metrics = train_distributed(run_config("train.max_steps=8"), current, nproc=2)
    assert metrics["world_size"] == 2 and metrics["steps"] == 8
    assert sorted(os.listdir(runs / "other")) == ["notes.txt"]
    new = runs / "new"
    assert json.loads((new / "checkpoints" / "sharded.json").read_text())["last"]["step"] == 8
    assert (new / "metrics.json").is_file() and (new / "metrics.jsonl").is_file()


@pytest.mark.slow
def test_the_run_folder_then_the_fitted_negatives_are_said_once(tmp_path, capfd):
    """What a one-process run says, said once for the whole run: the run folder first (by
    the launcher, once admitted), then the fitted negatives (rank 0 alone; 64 asked of a
    graph of 41 entities)."""
    config = run_config("train.max_steps=4", "sampler.num_negatives=64", "train.progress=true")
    metrics = train_distributed(config, tmp_path / "run", nproc=2, kg=tiny_graph())
    assert metrics["world_size"] == 2
    lines = capfd.readouterr().err.splitlines()
    assert lines[0] == f"run folder: {tmp_path / 'run'}", lines
    notes = [line for line in lines if "negatives per positive" in line]
    assert len(notes) == 1 and "drawing 41 negatives per positive" in notes[0], lines


def _fake_checkpoint(folder: Path, bounds: list[int], width: int = 3) -> dict:
    """A committed checkpoint of ``len(bounds) - 1`` ranks whose row ``i`` holds
    ``i * width .. i * width + width - 1`` and Adagrad state ten times that."""
    from emu_dgl.training.checkpoint import save_checkpoint

    world = len(bounds) - 1
    entry = {"step": 7, "folder": "step-00000007.1", "world_size": world, "bounds": bounds}
    for rank in range(world):
        rows = torch.arange(bounds[rank] * width, bounds[rank + 1] * width, dtype=torch.float64)
        rows = rows.view(-1, width)
        state = {
            "step": 7,
            "model": {"entity.weight": rows, "relation.weight": torch.ones(2, width)},
            "optimizer": {
                "state": {
                    0: {"sum": rows * 10, "step": torch.tensor(5.0)},
                    1: {"sum": torch.full((2, width), 3.0)},
                },
                "param_groups": [{"lr": 0.1, "params": [0, 1]}],
            },
            "generator": torch.tensor([rank]),  # replicated parts are taken from one file
            "shard": {"rank": rank, "world_size": world, "bounds": bounds, "entity_param": 0},
        }
        save_checkpoint(state, folder / entry["folder"] / f"rank-{rank}.pt")
    return entry


def test_a_checkpoint_of_two_processes_reads_on_three_and_on_one(tmp_path):
    entry = _fake_checkpoint(tmp_path, [0, 5, 11])
    whole = torch.arange(33, dtype=torch.float64).view(11, 3)
    for lo, hi in zip(shard_bounds(11, 3), shard_bounds(11, 3)[1:], strict=False):
        state = read_rows(tmp_path, entry, lo, hi)
        assert torch.equal(state["model"]["entity.weight"], whole[lo:hi])
        assert torch.equal(state["optimizer"]["state"][0]["sum"], whole[lo:hi] * 10)
        assert float(state["optimizer"]["state"][0]["step"]) == 5.0  # a scalar: not cut
        assert torch.equal(state["optimizer"]["state"][1]["sum"], torch.full((2, 3), 3.0))
    stitched = read_rows(tmp_path, entry, 0, 11)
    assert torch.equal(stitched["model"]["entity.weight"], whole)
    assert torch.equal(stitched["generator"], torch.tensor([0]))
    same = read_rows(tmp_path, entry, 5, 11)  # rank 1's own block: its file as written
    assert torch.equal(same["generator"], torch.tensor([1]))
    # A file that is not the one the manifest names is refused in one line.
    (tmp_path / entry["folder"] / "rank-1.pt").rename(tmp_path / entry["folder"] / "rank-9.pt")
    with pytest.raises(EmuDglError, match="no checkpoint at"):
        read_rows(tmp_path, entry, 0, 11)


def test_manifest_names_only_checkpoint_folders_and_uncommitted_ones_go(tmp_path):
    from emu_dgl.training.shards import MANIFEST, read_manifest, remove_uncommitted

    folder = tmp_path / "checkpoints"
    entry = _fake_checkpoint(folder, [0, 2, 4])
    record = {"format": "emu-dgl-sharded/1", "commits": 1, "last": entry, "previous": None,
              "best": None, "config": {}}  # fmt: skip
    (folder / MANIFEST).write_text(json.dumps(record))
    assert read_manifest(folder)["last"]["step"] == 7
    (folder / "step-00000009.2").mkdir()  # a save the kill cut short: never committed
    (folder / "step-00000009.2" / "rank-0.pt").write_bytes(b"partial")
    removed = remove_uncommitted(folder, read_manifest(folder))
    assert [p.name for p in removed] == ["step-00000009.2"]
    assert (folder / entry["folder"] / "rank-1.pt").is_file()
    for bad in ("../../elsewhere", "step-7"):
        (folder / MANIFEST).write_text(json.dumps({**record, "last": {**entry, "folder": bad}}))
        with pytest.raises(RunError, match="not the checkpoint manifest"):
            read_manifest(folder)


def test_uncommitted_folders_go_without_following_a_link(tmp_path):
    """A link planted under a checkpoint folder's name, and links inside an uncommitted
    folder, are removed themselves: what they point to keeps every file."""
    from emu_dgl.files import anchored
    from emu_dgl.training.shards import remove_uncommitted

    outside = tmp_path / "outside"
    (outside / "keep").mkdir(parents=True)
    (outside / "keep" / "rank-0.pt").write_bytes(b"someone's")
    folder = tmp_path / "run" / "checkpoints"
    (folder / "step-00000003.1").mkdir(parents=True)
    (folder / "step-00000003.1" / "rank-0.pt").symlink_to(outside / "keep" / "rank-0.pt")
    (folder / "step-00000003.1" / "sub").symlink_to(outside / "keep", target_is_directory=True)
    (folder / "best-00000002.1").symlink_to(outside / "keep", target_is_directory=True)
    with anchored(tmp_path / "run", "run directory"):  # as the run's lock holds it
        removed = remove_uncommitted(folder, None)
    assert sorted(p.name for p in removed) == ["best-00000002.1", "step-00000003.1"]
    assert os.listdir(folder) == []
    assert (outside / "keep" / "rank-0.pt").read_bytes() == b"someone's"


def test_parts_of_a_distributed_run_point_to_the_run(tmp_path):
    """A rank folder (the layout of earlier versions) or a checkpoint folder given to
    --resume or evaluate: one line naming the run folder to use instead."""
    run = tmp_path / "big"
    (run / "ranks" / "1" / "checkpoints").mkdir(parents=True)
    (run / "distributed.json").write_text('{"world_size": 2}')
    (run / "config.yaml").write_text("model: {name: distmult}\n")
    (run / "ranks" / "1" / "config.yaml").write_text("model: {name: distmult}\n")
    for args in (["train", "--resume", run / "ranks" / "1"], ["evaluate", run / "ranks" / "1"]):
        result = CliRunner().invoke(main, [str(a) for a in args])
        assert result.exit_code == 2 and "Traceback" not in result.output, result.output
        line = result.output.strip().splitlines()[-1]
        assert f"'{run}'" in line and "part of the run on several processes" in line, line
    # The earlier layout itself is refused for resuming, in one line.
    with pytest.raises(RunError, match="older emu-dgl"):
        train_distributed(run_config(), run, nproc=2, resume=True)


# --------------------------------------------------------------------------- kills

KILL_SETTINGS = [
    "dataset.name=synthetic", "model.name=distmult", "model.dim=8", "sampler.num_negatives=16",
    "train.batch_size=128", "train.max_steps=120", "train.valid_every=40", "train.checkpoint_every=4",
    "train.log_every=4", "train.progress=false", "train.device=cpu", "eval.protocol=sampled",
    "eval.num_negatives=50",
]  # fmt: skip


def _ranks_of(pid: int) -> list[int]:
    """The rank processes a launcher started (its spawned children, not the resource tracker)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == pid and b"spawn_main" in cmdline and b"resource_tracker" not in cmdline:
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _kill_at_random(
    args: list[str], victim: str, run: Path, rng: random.Random
) -> tuple[int, str, bool]:
    """Run the CLI and SIGKILL ``victim`` at a random moment: a random rank once the run's
    first checkpoint is committed (steps, checkpoint writes and commits then alternate),
    or the launcher (ranks included) at any moment from the ranks' start. Returns the exit
    status, stderr, and whether the kill landed before the run ended."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "emu_dgl", *args], stderr=subprocess.PIPE, text=True
    )
    manifest = run / "checkpoints" / "sharded.json"
    # A rank dies after a random number of this launch's commits (then up to 0.3 s more),
    # counted by the manifest, not by the clock: on a fast machine a delay in seconds
    # could outlast the whole run, and the kill would never land.
    wanted = _commits(manifest) + rng.randint(1, 4)
    deadline = time.monotonic() + 60
    ranks: list[int] = []
    while proc.poll() is None and time.monotonic() < deadline:
        ranks = ranks if len(ranks) == 2 else _ranks_of(proc.pid)
        if victim == "launcher" and len(ranks) == 2:
            break
        if len(ranks) == 2 and _commits(manifest) >= wanted:
            break  # this launch has committed its checkpoints
        time.sleep(0.01)
    time.sleep(rng.uniform(0.0, 1.5 if victim == "launcher" else 0.3))
    landed = proc.poll() is None
    if landed:
        try:
            os.kill(proc.pid if victim == "launcher" else rng.choice(ranks), signal.SIGKILL)
        except ProcessLookupError:  # it ended just now
            landed = False
    _, err = proc.communicate(timeout=60)
    deadline = time.monotonic() + 10  # no rank outlives its launcher (PR_SET_PDEATHSIG)
    while any(_alive(pid) for pid in ranks) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in ranks), "a rank outlived its run"
    return proc.returncode, err, landed


def _commits(manifest: Path) -> int:
    """Checkpoints committed to a sharded run's manifest so far (0 before the first; a
    manifest being replaced reads as the last one seen, never as a torn file)."""
    try:
        return int(json.loads(manifest.read_text())["commits"])
    except (OSError, ValueError, KeyError):
        return 0


def _log_records(run_dir: Path) -> list[dict]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "steps_per_second"} for r in records]


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SIGKILL and /proc")
def test_ranks_killed_at_random_moments_resume_exactly(tmp_path):
    """Issue 25 'ranks agree': a rank or the launcher SIGKILLed at random moments, three
    times in one run; each resume (from the command line, without --nproc) continues from
    the step the manifest commits, and the end is the uninterrupted run's, bit for bit."""
    sets = [arg for line in KILL_SETTINGS for arg in ("--set", line)]
    reference = train_distributed(load_config(None, KILL_SETTINGS), tmp_path / "ref", nproc=2)
    rng = random.Random(int(os.environ.get("EMU_DGL_KILL_SEED", time.time_ns() % 1000)))
    run = tmp_path / "run"
    args = ["train", "--nproc", "2", "--out", str(run), *sets]
    kills = 0
    for victim in ("rank", "launcher", "rank"):
        code, err, landed = _kill_at_random(args, victim, run, rng)
        assert "Traceback" not in err and "leaked semaphore" not in err, err
        if code == 0:
            break  # the run finished before the kill
        kills += landed
        said = err.strip().splitlines()
        lines = [line for line in said[1:] if not line.startswith("resuming at")]
        if victim == "rank":  # the launcher reports the dead rank in one line
            assert said[0] == f"run folder: {run}", err  # said once admitted, before the ranks
            assert code == 2 and len(lines) == 1 and "was killed by SIGKILL" in lines[0], err
            assert f"emu-dgl train --resume {run}" in lines[0], err
        args = ["train", "--resume", str(run)]
    else:
        last = subprocess.run(
            [sys.executable, "-m", "emu_dgl", *args], capture_output=True, text=True, timeout=120
        )
        code, err = last.returncode, last.stderr
    assert code == 0 and kills >= 1, err
    assert "resuming at step" in err and "leaked semaphore" not in err, err
    resumed = json.loads((run / "metrics.json").read_text())
    for key in ("valid", "test", "best_step", "steps", "world_size"):
        assert resumed[key] == reference[key], key
    assert torch.equal(_table(run), _table(tmp_path / "ref"))
    assert _log_records(run) == _log_records(tmp_path / "ref")


# --------------------------------------------------------------------------- torchrun


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("torchrun") is None, reason="needs torchrun")
def test_two_torchrun_agents_train_and_resume(tmp_path):
    """Two machines as two torchrun agents on localhost (c10d rendezvous, one process each):
    the run trains, then resumes (extended) and ends where the spawned run of 2 ends."""
    sets = [arg for line in KILL_SETTINGS[:-2] for arg in ("--set", line)]

    def agents(*args: str) -> None:
        port = _free_port()
        procs = [
            subprocess.Popen(
                [
                    shutil.which("torchrun"),
                    "--nnodes",
                    "2",
                    "--nproc-per-node",
                    "1",
                    "--node-rank",
                    str(node),
                    "--rdzv-backend",
                    "c10d",
                    "--rdzv-endpoint",
                    f"127.0.0.1:{port}",
                    "--rdzv-id",
                    "emu-test",
                    "-m",
                    "emu_dgl",
                    "train",
                    *args,
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )  # fmt: skip
            for node in (0, 1)
        ]
        try:
            outs = [proc.communicate(timeout=150)[0] for proc in procs]
        finally:
            for proc in procs:
                proc.kill()
        assert all(proc.returncode == 0 for proc in procs), outs

    run = tmp_path / "multi"
    agents("--out", str(run), *sets, "--set", "train.max_steps=40")
    first = json.loads((run / "metrics.json").read_text())
    assert first["world_size"] == 2 and first["steps"] == 40
    assert json.loads((run / "checkpoints" / "sharded.json").read_text())["last"]["step"] == 40
    agents("--resume", str(run), "--set", "train.max_steps=80")
    resumed = json.loads((run / "metrics.json").read_text())
    assert resumed["steps"] == 80 and resumed["world_size"] == 2
    spawned = train_distributed(
        load_config(None, [*KILL_SETTINGS[:-2], "train.max_steps=80"]),
        tmp_path / "spawned",
        nproc=2,
    )
    torch.testing.assert_close(_table(run), _table(tmp_path / "spawned"), rtol=0, atol=1e-5)
    assert resumed["test"]["mrr"] == pytest.approx(spawned["test"]["mrr"], abs=1e-3)


def test_all_finite_sees_every_nan_and_infinity():
    from emu_dgl.training.trainer import all_finite

    for dtype in (torch.float32, torch.float64, torch.bfloat16):
        table = torch.zeros(300, 7, dtype=dtype)
        assert bool(all_finite([table, torch.ones(2, 3)]))
        for value in (float("nan"), float("inf"), -float("inf")):
            bad = table.clone()
            bad[123, 4] = value
            assert not bool(all_finite([torch.ones(2, 3), bad])), (dtype, value)
    assert bool(all_finite([torch.empty(0, 4)]))


def test_hashes_of_sorted_triples_are_the_lexsort_ones(monkeypatch):
    """The data record's split hashes and the graph's fingerprint hash triples sorted by
    (h, r, t); the bounded sort and the sliced hashing give exactly the digests of the
    sorted copy they replace (duplicates and huge ids too), so stored records still match."""
    import hashlib

    import numpy as np

    from emu_dgl.data import triples as triple_module
    from emu_dgl.data.io import encode_names

    def split_hash(triples: torch.Tensor) -> str:  # the data record's hash of a split
        digest = hashlib.sha256()
        triple_module.hash_sorted_triples(digest, triples.numpy())
        return digest.hexdigest()

    def sorted_bytes(triples: torch.Tensor) -> bytes:
        array = triples.numpy()
        order = np.lexsort((array[:, 2], array[:, 1], array[:, 0]))
        return np.ascontiguousarray(array[order]).tobytes()

    def fingerprint(kg: KnowledgeGraph) -> str:  # the formula before the bounded sort
        digest = hashlib.sha256(b"emu-dgl-kg-fingerprint-v1")
        for names in (kg.entity_names, kg.relation_names):
            digest.update(f"\n{len(names)}\n".encode())
            digest.update(encode_names(names).tobytes())
        for split, triples in kg.splits.items():
            digest.update(f"\n{split}:{len(triples)}\n".encode())
            digest.update(sorted_bytes(triples))
        return digest.hexdigest()

    gen = torch.Generator().manual_seed(4)
    for rows, entities in ((0, 5), (1, 5), (700, 6), (5000, 100_000)):
        triples = torch.stack(
            [
                torch.randint(entities, (rows,), generator=gen),
                torch.randint(3, (rows,), generator=gen),
                torch.randint(entities, (rows,), generator=gen),
            ],
            1,
        )
        assert split_hash(triples) == hashlib.sha256(sorted_bytes(triples)).hexdigest()
    huge = torch.tensor([[2**40, 3, 2**40 - 5], [1, 2, 3], [2**40, 3, 2], [1, 2, 3]])
    assert split_hash(huge) == hashlib.sha256(sorted_bytes(huge)).hexdigest()
    monkeypatch.setattr(triple_module, "HASH_ROWS", 7)  # many slices
    assert split_hash(triples) == hashlib.sha256(sorted_bytes(triples)).hexdigest()
    kg = tiny_graph()  # the graph's own hashes: from its sorted keys, in slices of 7 rows
    assert kg.fingerprint == fingerprint(kg)
    for split, triples in kg.splits.items():
        assert kg.split_sha256(split) == hashlib.sha256(sorted_bytes(triples)).hexdigest()
