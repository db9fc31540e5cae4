"""The memory plan: its parts in closed form, per-rank slices, the verdict, the CLI, and a
real run's peak memory within the plan's 15%."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from emu_dgl.config import load_config
from emu_dgl.training import memory
from emu_dgl.training.memory import GraphSize, memory_plan
from tests.run_helpers import invoke

GRAPH = GraphSize(
    entities=1_000_000, relations=500, train=4_000_000, valid=5000, test=5000, name_bytes=9_000_000
)
RUN = [
    "model.name=distmult",
    "model.dim=100",
    "train.batch_size=1000",
    "sampler.num_negatives=256",
    "train.optimizer=rowwise_adagrad",
    "train.sparse=true",
]


def _parts(*overrides: str, nproc: int = 1) -> dict[str, int]:
    plan = memory_plan(load_config(None, [*RUN, *overrides]), GRAPH, nproc=nproc, baseline=1)
    return {p.name: p.bytes for p in plan.parts}


def test_the_parts_in_closed_form() -> None:
    parts = _parts()
    E, d = GRAPH.entities, 100
    assert parts["entity table"] == E * d * 4
    assert parts["optimizer state"] == E * 4  # row-wise Adagrad: one float per row
    assert parts["relation parameters"] == 500 * d * 4 * 4
    assert parts["data (triples, names)"] == GRAPH.triples * 24 + GRAPH.name_bytes + 8 * (E + 502)
    assert parts["batch order"] == GRAPH.train * 8
    assert parts["filter index"] == 8 * (2 * GRAPH.train + 2 * 10_000)
    assert parts["best weights read back"] == E * d * 4 + 500 * d * 4
    # validated only at the last step: the best weights are those in memory, none read back
    assert "best weights read back" not in _parts("train.max_steps=500", "train.valid_every=500")
    # a step looks up B * (n + 2) rows
    assert parts["training step"] == int(1000 * 258 * (440 + 3.75 * 400))
    adagrad = _parts("train.optimizer=adagrad")
    assert adagrad["optimizer state"] == E * d * 4
    adam = _parts("train.optimizer=adam")
    assert adam["optimizer state"] == 2 * E * d * 4
    dense = _parts("train.sparse=false")  # a dense update: the table's gradient too
    assert dense["optimizer state"] == E * 4 + E * d * 4 and dense["optimizer row buffers"] == 0


def test_bfloat16_halves_the_table_and_ranks_hold_slices() -> None:
    assert _parts("model.dtype=bfloat16")["entity table"] == GRAPH.entities * 100 * 2
    one, two = _parts(), _parts(nproc=2)
    assert two["entity table"] == one["entity table"] // 2
    assert two["optimizer state"] == one["optimizer state"] // 2
    rows = 1000 * 258
    # the draws for the whole batch, the scoring of half of it, the exchanged rows
    assert two["training step"] == int(rows * 440 + rows // 2 * 3.75 * 400 + rows // 2 * 400)
    assert two["data (triples, names)"] == one["data (triples, names)"]  # each maps it all
    plan = memory_plan(load_config(None, RUN), GRAPH, nproc=2, baseline=0)
    shared = sum(p.bytes for p in plan.parts if p.shared)
    assert shared == two["data (triples, names)"] + two["filter index"]
    assert plan.machine_peak == 2 * plan.peak - shared


def test_a_shared_negatives_step_is_planned_by_its_chunks_and_scores() -> None:
    """sampler.shared_chunk: the step looks up B anchors, B true entities and n negatives
    per chunk, draws n words per chunk, and scores every positive against its chunk's n
    negatives (the filter tests each such pair for the whole batch, on every process)."""
    B, n, d, C = 1000, 256, 100, 100
    rows = 2 * B + (B // C) * n  # lookups of the shared step
    scores = B * n
    plain = _parts()
    parts = _parts(f"sampler.shared_chunk={C}")
    assert parts["training step"] == int(
        rows * 440
        + rows * 3.75 * d * 4
        + scores * memory.SHARED_FILTER_BYTES_PER_SCORE
        + scores * memory.SHARED_FLOATS_PER_SCORE * 4
    )
    assert parts["training step"] < plain["training step"] / 3
    # side coins, one draw per chunk, the chunks' 8-bit EMU mask: 64 bits per word
    assert parts["step's random words"] == (B + (B // C) * n + (B // C) * n * d // 8) * 8
    assert parts["shared-negative filter keys"] == 16 * GRAPH.train
    unfiltered = _parts(f"sampler.shared_chunk={C}", "sampler.filter=false")
    assert "shared-negative filter keys" not in unfiltered
    assert parts["training step"] - unfiltered["training step"] == (
        scores * memory.SHARED_FILTER_BYTES_PER_SCORE
    )
    # a decoder without a matrix-product form broadcasts [C, n, width] terms
    l1 = _parts(f"sampler.shared_chunk={C}", "model.name=transe", "model.p_norm=1")
    l2 = _parts(f"sampler.shared_chunk={C}", "model.name=transe", "model.p_norm=2")
    assert l1["training step"] - l2["training step"] == (
        scores * d * 4 * memory.SHARED_BROADCAST_FLOATS
    )
    # two processes: the filter for the whole batch on each, the scores of half of it
    two = _parts(f"sampler.shared_chunk={C}", nproc=2)
    assert two["training step"] == int(
        rows * 440
        + rows // 2 * 3.75 * d * 4
        + rows // 2 * d * 4
        + scores * memory.SHARED_FILTER_BYTES_PER_SCORE
        + scores // 2 * memory.SHARED_FLOATS_PER_SCORE * 4
    )


def test_the_verdict_follows_the_available_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    config = load_config(None, RUN)
    monkeypatch.setattr(memory, "available_memory", lambda: (2**40, "test"))
    roomy = memory_plan(config, GRAPH, baseline=0)
    assert roomy.fits and "fits" in roomy.verdict()
    monkeypatch.setattr(memory, "available_memory", lambda: (2**30, "ulimit -v"))
    tight = memory_plan(config, GRAPH, baseline=0)
    assert (
        tight.fits is False and "does NOT fit" in tight.verdict() and "ulimit -v" in tight.verdict()
    )
    assert tight.peak == max(tight.phase(p) for p in ("step", "evaluation", "end"))
    assert tight.peak >= tight.phase("always") + 400 * 2**20


def test_plan_command_plans_a_generated_graph_without_generating_it(tmp_path: Path) -> None:
    name = "synthetic:entities=86000000,triples=338000000"
    args = ["--set", f"dataset.name={name}", *(a for s in RUN for a in ("--set", s))]
    args += ["--set", "eval.protocol=sampled"]
    table = invoke("plan", *args, "--set", "model.dtype=bfloat16", "--nproc", "8")
    assert table.exit_code == 0, table.output
    assert "memory plan per process (8 processes)" in table.output
    assert "entity table" in table.output and "all processes" in table.output
    assert "fit" in table.output.splitlines()[-1]
    result = invoke("plan", *args, "--json")
    data = json.loads(result.output)
    assert data["parts"]["entity table"]["bytes"] == 86_000_000 * 100 * 4
    assert not list((tmp_path).rglob("synthetic-*"))  # nothing generated or cached


def test_an_unfit_run_is_warned_about_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(memory, "available_memory", lambda: (1, "test limit"))
    result = invoke(
        "train",
        "--set",
        "train.max_steps=2",
        "--set",
        "train.progress=false",
        "--out",
        tmp_path / "run",
    )
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stderr.splitlines() if "memory plan" in line]
    assert len(lines) == 1 and lines[0].startswith("warning: memory plan: peak")
    assert "does NOT fit" in lines[0]


_MEASURE = """
import json, sys
from emu_dgl.config import load_config
from emu_dgl.training.memory import baseline_bytes, GraphSize, memory_plan
from emu_dgl.training.trainer import Trainer
config = load_config(None, sys.argv[2:])
trainer = Trainer(config, sys.argv[1])
trainer.fit()
peak = int(open('/proc/self/status').read().split('VmHWM:')[1].split()[0]) * 1024
print(json.dumps({"plan": trainer.memory_plan.peak, "measured": peak}))
"""


@pytest.mark.slow
@pytest.mark.parametrize(
    "step",
    [
        ["train.batch_size=500"],
        # a shared-negatives step whose scores, not its rows, are most of its memory
        ["train.batch_size=4000", "sampler.num_negatives=1024", "sampler.shared_chunk=200"],
    ],
    ids=["per-positive", "shared"],
)
def test_a_runs_peak_memory_is_within_15_percent_of_its_plan(
    tmp_path: Path, step: list[str]
) -> None:
    overrides = [
        "dataset.name=synthetic:entities=20000,triples=200000",
        *RUN,
        *step,
        "train.max_steps=10",
        "train.valid_every=10",
        "eval.protocol=sampled",
        "train.progress=false",
    ]
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(tmp_path / "run"), *overrides],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert abs(result["plan"] / result["measured"] - 1) <= 0.15, result


def test_the_start_check_counts_the_table_as_the_plan_does() -> None:
    """The check at the start of a run (estimate_bytes) counts the entity table in its dtype
    with its optimizer's state, as the plan does: a bfloat16 table with rowwise_adagrad
    and row-wise updates is half a float32 one and carries no dense gradient, so a run the
    plan admits is not refused at start (20M entities at d = 100 were refused as 22 GB)."""
    from emu_dgl.training.memory import estimate_bytes

    entities, dim = 1_000_000, 100
    common = ["model.name=distmult", f"model.dim={dim}", "train.sparse=true"]
    dense = load_config(None, [*common, "train.optimizer=adagrad", "train.sparse=false"])
    rows = load_config(None, [*common, "train.optimizer=rowwise_adagrad", "model.dtype=bfloat16"])
    key = "embedding tables and optimizer state"
    relations = 10 * dim * 4  # 10 relations' rows, float32, with their state and gradient
    table = entities * dim
    # float32 adagrad, dense: the table, its gradient and its state
    assert estimate_bytes(dense, entities, 10)[key][0] == table * 4 * 3 + relations * 3
    # bfloat16 rows with one float of state per row, no dense gradient
    assert estimate_bytes(rows, entities, 10)[key][0] == table * 2 + entities * 4 + relations * 3
