"""``emu-dgl compare --jobs N``: the same runs and metrics as one at a time, one line per
run, finished runs reused, a failed run reported in one line with the others kept."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from emu_dgl.cli import main

TINY = [
    "train.max_steps=20",
    "train.valid_every=10",
    "train.checkpoint_every=0",
    "train.device=cpu",
    "train.threads=1",
    "train.progress=false",
]


def _compare(out: Path, *extra: str) -> tuple[int, str]:
    args = ["compare", "--out", str(out), *extra]
    for override in TINY:
        args += ["--set", override]
    result = CliRunner().invoke(main, args)
    return result.exit_code, result.output


def _runs(out: Path) -> list[dict]:
    """Every run of results.json without its wall time (which depends on the machine's load)."""
    runs = json.loads((out / "results.json").read_text())["runs"]
    return [{k: v for k, v in run.items() if k != "wall_seconds"} for run in runs]


@pytest.mark.slow
def test_two_jobs_train_the_same_runs_as_one(tmp_path: Path) -> None:
    code, one = _compare(tmp_path / "one", "--seeds", "0", "--jobs", "1")
    assert code == 0, one
    code, two = _compare(tmp_path / "two", "--seeds", "0", "--jobs", "2")
    assert code == 0, two
    assert _runs(tmp_path / "two") == _runs(tmp_path / "one")  # same metrics and curves
    labels = ("base seed 0", "emu seed 0")
    for output in (one, two):
        for label in labels:  # one line per run
            assert (
                sum(line.startswith(f"{label}: finished in ") for line in output.splitlines()) == 1
            )
        assert "2 run(s) in " in output and " positives/s in aggregate" in output
    assert "2 at a time (1 thread(s) each" in two
    logs = sorted(p.name for p in (tmp_path / "two" / "logs").iterdir())
    assert logs == ["base-seed0.log", "emu-seed0.log"]

    # the same comparison again: every run is reused, one line each, nothing is trained
    code, again = _compare(tmp_path / "two", "--seeds", "0", "--jobs", "2")
    assert code == 0, again
    for label in labels:
        assert f"{label}: reused (a finished run of the same config in " in again
    assert "finished in" not in again and "aggregate" not in again
    assert _runs(tmp_path / "two") == _runs(tmp_path / "one")


@pytest.mark.slow
def test_a_failed_job_is_one_line_and_the_others_are_kept(tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    arms = ["--arm", "ok:train.lr=0.1", "--arm", "bad:train.lr=1e29"]  # 1e29 diverges at once
    code, output = _compare(out, *arms, "--jobs", "2")
    assert code == 2
    assert "error: 1 of 2 runs failed (bad seed 0: error: training diverged" in output
    assert "Traceback" not in output
    assert (out / "ok" / "seed0" / "metrics.json").is_file()
    assert "training diverged" in (out / "logs" / "bad-seed0.log").read_text()
    # the finished run is reused when the comparison is run again without the failing arm
    code, again = _compare(out, "--arm", "ok:train.lr=0.1", "--jobs", "2")
    assert code == 0 and "ok seed 0: reused" in again


def test_jobs_must_be_positive(tmp_path: Path) -> None:
    code, output = _compare(tmp_path / "cmp", "--jobs", "0")
    assert code == 2 and "--jobs" in output and not (tmp_path / "cmp").exists()
