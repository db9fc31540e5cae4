"""Kill a training process at chosen and at random instants, then resume: the result must
equal an uninterrupted run's, whatever the instant (inside checkpoint writing included).

The process is a real ``emu-dgl train`` in a subprocess, killed with SIGKILL: by a test hook
inside :func:`~emu_dgl.training.checkpoint.save_checkpoint` (between its writes and
renames), or by the test after a random delay. Resuming happens in this process.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from emu_dgl.cli import main
from emu_dgl.training.checkpoint import LAST, PREVIOUS, load_checkpoint

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")

SETTINGS = [
    "model.name=distmult",
    "model.dim=16",
    "sampler.num_negatives=16",
    "train.batch_size=256",
    "train.max_steps=30",
    "train.valid_every=10",
    "train.checkpoint_every=5",
    "train.log_every=5",
    "train.progress=false",
    "train.device=cpu",
    "eval.valid_max_triples=100",
]
ARGS = [arg for s in SETTINGS for arg in ("--set", s)]

# Runs `emu-dgl train` with a checkpoint hook that SIGKILLs the process at the n-th time
# save_checkpoint reaches a stage; "nolink" makes hard links fail (the rename fallback).
HELPER = """
import os, signal, sys
import emu_dgl.training.checkpoint as ck
stage, nth, nolink = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "nolink"
seen = 0
def hook(name):
    global seen
    if name == stage:
        seen += 1
        if seen == nth:
            os.kill(os.getpid(), signal.SIGKILL)
ck.fault_hook = hook
if nolink:
    def no_link(*args, **kwargs):
        raise OSError(1, "hard links not supported")
    os.link = no_link
from emu_dgl.cli import main
main(sys.argv[4:], prog_name="emu-dgl")
"""


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def _curve(run: Path) -> list[tuple[int, float]]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [(r["step"], r["mrr"]) for r in map(json.loads, lines) if r.get("split") == "valid"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[dict, list]:
    run = tmp_path_factory.mktemp("ref") / "run"
    result = CliRunner().invoke(main, ["train", "--out", str(run), *ARGS])
    assert result.exit_code == 0, result.output
    return json.loads((run / "metrics.json").read_text()), _curve(run)


def _resume_and_compare(run: Path, reference: tuple[dict, list]) -> None:
    result = CliRunner().invoke(main, ["train", "--resume", str(run)])
    assert result.exit_code == 0, result.output
    metrics = json.loads((run / "metrics.json").read_text())
    expected, curve = reference
    assert metrics["valid"] == expected["valid"] and metrics["test"] == expected["test"]
    assert metrics["best_step"] == expected["best_step"]
    assert _curve(run) == curve  # the log holds each validation once, as an uninterrupted run's
    assert not list((run / "checkpoints").glob(".*.tmp"))  # leftovers cleaned


@pytest.mark.slow
@pytest.mark.parametrize(
    ("stage", "nth", "link", "left"),
    [
        ("started", 1, "link", "an empty temporary file, no checkpoint yet"),
        ("written", 1, "link", "a complete temporary file, no last.pt yet"),
        ("previous", 2, "link", "previous.pt linked, last.pt not yet replaced"),
        ("replaced", 3, "link", "a finished rotation"),
        ("previous", 3, "nolink", "previous.pt and the new temporary file, no last.pt"),
    ],
    ids=[
        "in-first-write",
        "first-written",
        "between-renames",
        "after-rotation",
        "between-renames-no-hard-links",
    ],
)
def test_kill_inside_checkpoint_writing_then_resume_is_exact(
    tmp_path, reference, stage, nth, link, left
):
    run = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-c", HELPER, stage, str(nth), link, "train", "--out", str(run), *ARGS],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    ckpt = run / "checkpoints"
    if (
        link == "nolink"
    ):  # killed between two renames: no last.pt, previous.pt + a complete tmp file
        assert not (ckpt / LAST).exists() and (ckpt / PREVIOUS).exists()
        assert len(list(ckpt.glob(f".{LAST}.*.tmp"))) == 1
    elif stage == "previous":
        # last.pt is still in place: both names hold the old state
        assert (
            load_checkpoint(ckpt / LAST)["step"] == load_checkpoint(ckpt / PREVIOUS)["step"] == 10
        )
    _resume_and_compare(run, reference)


@pytest.mark.slow
def test_kill_at_random_instants_then_resume_is_exact(tmp_path, reference):
    rng = random.Random(9)
    run = tmp_path / "run"
    kills = 0
    for _ in range(2):
        args = (
            ["train", "--resume", str(run)] if run.exists() else ["train", "--out", str(run), *ARGS]
        )
        proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from emu_dgl.cli import main; main(prog_name='emu-dgl')",
                *args,
            ],
            env=_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        # Wait until training has started (the log exists), then kill at a random moment.
        deadline = time.monotonic() + 60
        while (
            not (run / "metrics.jsonl").exists()
            and proc.poll() is None
            and time.monotonic() < deadline
        ):
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.6))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait(timeout=60)
    _resume_and_compare(run, reference)
    assert kills >= 1


# Kills `emu-dgl train` as the checkpoint after the final validation starts to be written.
FINAL_HELPER = """
import json, os, signal, sys
from pathlib import Path
import emu_dgl.training.checkpoint as ck
run = Path(sys.argv[1])
def hook(name):
    log = run / "metrics.jsonl"
    records = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    if name == "started" and any(r.get("split") == "valid" and r["step"] == 30 for r in records):
        os.kill(os.getpid(), signal.SIGKILL)
ck.fault_hook = hook
from emu_dgl.cli import main
main(sys.argv[2:], prog_name="emu-dgl")
"""


@pytest.mark.slow
def test_a_kill_after_the_final_validation_logs_it_once_after_resume(tmp_path, reference):
    # The last step's checkpoint is written after the final validation only: one written
    # before it would make the resumed run validate (and log) step 30 a second time.
    run = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-c", FINAL_HELPER, str(run), "train", "--out", str(run), *ARGS],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert load_checkpoint(run / "checkpoints" / LAST)["step"] == 25
    _resume_and_compare(run, reference)
