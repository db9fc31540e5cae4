"""``compare`` tells the truth (issue 25, items 5 and 7 and the compare cases).

A run is finished only when its metrics cover its configured steps; an extended run loses
its old final metrics; a resumed run's wall time counts every segment; children die with
their parent and a child killed by a signal is reported with that signal; Ctrl-C says to
rerun the same compare; the log files under ``--jobs`` cannot be turned against the user.
The hang cases run in a subprocess under a timeout.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from emu_dgl.config import load_config
from emu_dgl.training.trainer import Trainer
from tests.run_helpers import assert_one_line, file_state, invoke

REPO = Path(__file__).resolve().parents[1]
#: A quick run on the built-in synthetic graph.
QUICK = [
    "train.max_steps=20",
    "train.valid_every=10",
    "train.checkpoint_every=10",
    "train.log_every=5",
    "train.device=cpu",
    "train.threads=1",
    "train.progress=false",
    "model.dim=16",
    "sampler.num_negatives=8",
]


def _args(out: Path, *extra: str, quick: list[str] = QUICK) -> list[str]:
    args = ["compare", "--out", str(out), "--arm", "base:emu.enabled=false", *extra]
    for override in quick:
        args += ["--set", override]
    return args


def _results(out: Path) -> list[dict]:
    return json.loads((out / "results.json").read_text())["runs"]


# ----------------------------------------------------------------------------- item 5


@pytest.mark.slow
def test_a_run_extended_and_killed_is_not_reported_with_its_old_metrics(tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    assert invoke(*_args(out)).exit_code == 0
    run = out / "base" / "seed0"
    old_metrics = (run / "metrics.json").read_text()
    assert json.loads(old_metrics)["steps"] == 20
    # extended to 40 steps with --resume, then killed at step 30 (stop_after: no final files)
    config = load_config(run / "config.yaml", ["train.max_steps=40"])
    assert Trainer(config, run).fit(resume=True, stop_after=10) == {}
    assert not (run / "metrics.json").exists() and not (run / "wall.json").exists()
    # even a stale metrics.json of fewer steps (an older emu-dgl kept it) is not "finished"
    (run / "metrics.json").write_text(old_metrics)
    result = invoke(*_args(out, quick=[*QUICK, "train.max_steps=40"]))
    assert result.exit_code == 0, result.output
    assert "reused" not in result.output and "base seed 0: finished in" in result.output
    (entry,) = _results(out)
    assert json.loads((run / "metrics.json").read_text())["steps"] == 40
    assert [step for step, _ in entry["curve"]][-1] == 40


@pytest.mark.slow
def test_ctrl_c_names_the_kept_checkpoints_and_a_resumed_runs_wall_time_adds_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import emu_dgl.experiments.jobs as jobs

    monkeypatch.setattr(jobs, "WALL_EVERY_SECONDS", 0.0)  # every log line records the wall time
    fit = Trainer.fit

    def interrupted_at_step_10(self: Trainer, **kwargs: object) -> dict:
        self.log_hooks.append(lambda record: time.sleep(0.6) if record.get("step") == 5 else None)
        fit(self, **{**kwargs, "stop_after": 10})
        raise KeyboardInterrupt  # Ctrl-C just after the checkpoint of step 10

    monkeypatch.setattr(Trainer, "fit", interrupted_at_step_10)
    out = tmp_path / "cmp"
    result = invoke(*_args(out))
    assert result.exit_code == 130
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("interrupted: ") and "checkpoints kept for base seed 0 (step 10)" in line
    assert "same 'emu-dgl compare' command" in line and "--resume" not in line
    first = json.loads((out / "base" / "seed0" / "wall.json").read_text())
    assert first["final"] is False and first["seconds"] >= 0.6
    monkeypatch.setattr(Trainer, "fit", fit)
    started = time.perf_counter()
    result = invoke(*_args(out))
    second = time.perf_counter() - started
    assert result.exit_code == 0, result.output
    (entry,) = _results(out)
    assert entry["wall_seconds"] >= first["seconds"] + 0.05  # both segments
    assert entry["wall_seconds"] <= first["seconds"] + second


def test_ctrl_c_before_any_checkpoint_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(self: Trainer, **kwargs: object) -> dict:
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "fit", interrupted)
    result = invoke(*_args(tmp_path / "cmp"))
    assert result.exit_code == 130
    line = result.stderr.strip().splitlines()[-1]
    assert "no run had written a checkpoint yet" in line and "same 'emu-dgl compare'" in line
    assert "--resume" not in line


# ------------------------------------------------------------------ children and signals


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")  # a zombie has stopped already


def _start_long_compare(out: Path) -> subprocess.Popen:
    """``compare --jobs 2`` of two runs long enough to be interrupted, in its own process."""
    long = [*QUICK, "train.max_steps=1000000", "train.valid_every=0", "train.checkpoint_every=0"]
    args = [*_args(out, "--arm", "emu:emu.enabled=true", "--jobs", "2", quick=long)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "emu_dgl", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    deadline = time.monotonic() + 120
    while len(_children(proc.pid)) < 2:
        assert proc.poll() is None, proc.communicate()[0]
        assert time.monotonic() < deadline, "the children did not start"
        time.sleep(0.2)
    return proc


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL])
def test_children_die_with_their_parent(tmp_path: Path, how: signal.Signals) -> None:
    proc = _start_long_compare(tmp_path / "cmp")
    children = _children(proc.pid)
    try:
        proc.send_signal(how)
        output = proc.communicate(timeout=60)[0]
        deadline = time.monotonic() + 30
        while any(_alive(c) for c in children) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(_alive(c) for c in children), "orphans left running"
        if how == signal.SIGTERM:
            assert "interrupted: the comparison" in output and "same 'emu-dgl compare'" in output
    finally:
        for child in children:
            if _alive(child):
                os.kill(child, signal.SIGKILL)


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_child_killed_by_a_signal_is_reported_with_the_signal(tmp_path: Path) -> None:
    proc = _start_long_compare(tmp_path / "cmp")
    first, second = sorted(_children(proc.pid))
    os.kill(first, signal.SIGKILL)
    time.sleep(1.0)
    os.kill(second, signal.SIGKILL)
    output = proc.communicate(timeout=60)[0]
    assert proc.returncode == 2
    assert output.count("FAILED (killed by SIGKILL)") == 2
    assert "error: 2 of 2 runs failed (" in output and ": killed by SIGKILL)" in output


# --------------------------------------------------------------------------- 7. logs


@pytest.mark.parametrize("plant", ["hard link", "symbolic link"])
def test_a_link_at_a_compare_log_is_refused_and_its_target_untouched(
    tmp_path: Path, plant: str
) -> None:
    out = tmp_path / "cmp"
    logs = out / "logs"
    logs.mkdir(parents=True)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    target = file_state(victim)
    log = logs / "emu-seed0.log"
    if plant == "hard link":
        os.link(victim, log)
    else:
        log.symlink_to(victim)
    result = invoke(*_args(out, "--arm", "emu:emu.enabled=true", "--jobs", "2"))
    line = assert_one_line(result, "emu-seed0.log")
    assert ("2 names" if plant == "hard link" else "symbolic link") in line
    assert file_state(victim) == target
    assert not (out / "base" / "seed0" / "metrics.json").exists()  # refused before training


def test_a_fifo_at_a_compare_log_is_refused_without_hanging(tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    (out / "logs").mkdir(parents=True)
    os.mkfifo(out / "logs" / "base-seed0.log")
    args = _args(out, "--arm", "emu:emu.enabled=true", "--jobs", "2")
    done = subprocess.run(
        [sys.executable, "-m", "emu_dgl", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert "is a FIFO" in done.stderr.strip().splitlines()[-1]
