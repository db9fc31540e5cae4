"""benchmarks/paper_protocol.sh: the paper arms at a chosen budget, summarised in the CPU
protocol's table format (run here on the built-in graph with a tiny GPU-preset budget)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "paper_protocol.sh"


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(REPO),
    }
    return subprocess.run(
        ["bash", str(SCRIPT), *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )


@pytest.mark.slow
def test_protocol_runs_the_arms_at_the_budget_and_writes_the_tables(tmp_path: Path) -> None:
    out = tmp_path / "protocol"
    done = _run(
        str(out), "--budget", "gpu", "--steps", "20", "--batch", "32", "--negatives", "4",
        "--valid-every", "10", "--datasets", "wn18rr", "--decoders", "distmult",
        "--arms", "uniform-base,uniform-emu", "--jobs", "2", "--device", "cpu",
        "--set", "dataset.name=synthetic", "--set", "train.threads=1",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads((out / "wn18rr-distmult" / "results.json").read_text())
    overrides = result["base_overrides"]
    # the GPU preset's full-split validation, with the steps, batch and negatives given
    for key in ("train.max_steps=20", "train.batch_size=32", "sampler.num_negatives=4",
                "train.valid_every=10", "eval.valid_max_triples=0"):  # fmt: skip
        assert key in overrides
    assert [r["arm"] for r in result["runs"]] == ["uniform-base", "uniform-emu"]
    assert all(len(r["curve"]) == 2 for r in result["runs"])  # validations at steps 10 and 20
    summary = (out / "summary" / "SUMMARY.md").read_text()
    head = "| comparison | arm | test MRR | test Hits@1 | test Hits@10 | valid MRR | best step | wall s |"
    assert head in summary and "| wn18rr-distmult | uniform-emu | " in summary
    table = (out / "summary" / "table.md").read_text().splitlines()
    assert table[0] == "| comparison | uniform-base | uniform-emu |"
    mrr = {r["arm"]: r["test"]["mrr"] for r in result["runs"]}
    best = max(mrr, key=mrr.get)
    cells = table[2].split(" | ")[1:]
    assert [c.strip(" |") for c in cells] == [
        f"**{mrr[a]:.3f}**" if a == best else f"{mrr[a]:.3f}"
        for a in ("uniform-base", "uniform-emu")
    ]
    assert (out / "summary" / "wn18rr-distmult" / "valid_mrr.png").is_file()


def test_protocol_refuses_unknown_budgets_and_configs(tmp_path: Path) -> None:
    bad = _run(str(tmp_path / "o"), "--budget", "tpu")
    assert bad.returncode == 2 and "--budget must be cpu, gpu or paper" in bad.stderr
    bad = _run(str(tmp_path / "o"), "--datasets", "wn18", "--decoders", "distmult")
    assert bad.returncode == 2 and "no paper config configs/paper/wn18/distmult.yaml" in bad.stderr
    assert not (tmp_path / "o").exists()
