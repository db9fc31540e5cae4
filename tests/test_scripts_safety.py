"""The benchmark scripts behave wherever they run (issue 25, the script cases).

``gpu_check.sh`` runs here with a stand-in for Python (``PYTHON``) that ends at once, or
sleeps where the test phase would run, so the script's own logic is tested in seconds:
where OUT lands, its options, the files it writes, and that nothing it started outlives
it. ``paper_protocol.sh`` runs one tiny arm on the built-in graph from outside the checkout.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.run_helpers import file_state

REPO = Path(__file__).resolve().parents[1]
GPU_CHECK = REPO / "benchmarks" / "gpu_check.sh"
PROTOCOL = REPO / "benchmarks" / "paper_protocol.sh"

STUB = """#!/usr/bin/env bash
# stands in for python: the pytest phase records its pid and sleeps; the rest ends at once
if [ "$1 $2" = "-m pytest" ] && [ -n "${STUB_PIDFILE:-}" ]; then
    echo $$ > "$STUB_PIDFILE"
    exec sleep 300
fi
exit 0
"""


@pytest.fixture
def stub(tmp_path: Path) -> Path:
    path = tmp_path / "python-stub"
    path.write_text(STUB)
    path.chmod(0o755)
    return path


def _env(stub: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHON": str(stub), **extra}


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def test_gpu_check_puts_a_relative_out_where_it_runs(tmp_path: Path, stub: Path) -> None:
    name = f"gpu-check-{uuid.uuid4().hex[:8]}"
    try:
        done = subprocess.run(
            ["bash", str(GPU_CHECK), name, "--device", "cpu", "--quick"],
            cwd=tmp_path, env=_env(stub), capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        assert (tmp_path / name / "phases.txt").is_file()
        assert "tests rc=0" in (tmp_path / name / "phases.txt").read_text()
        assert not (REPO / name).exists()  # never inside the checkout
    finally:
        if (REPO / name).exists():
            import shutil

            shutil.rmtree(REPO / name)


def test_gpu_check_refuses_a_bare_device_in_one_line(tmp_path: Path, stub: Path) -> None:
    done = subprocess.run(
        ["bash", str(GPU_CHECK), str(tmp_path / "out"), "--device"],
        env=_env(stub), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip() == "error: --device needs a value (cpu or cuda)"
    assert not (tmp_path / "out").exists()


def test_gpu_check_never_writes_through_a_planted_link(tmp_path: Path, stub: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    target = file_state(victim)
    (out / "phases.txt").symlink_to(victim)
    (out / "env.txt").symlink_to(victim)
    os.link(victim, out / "summary.md")
    done = subprocess.run(
        ["bash", str(GPU_CHECK), str(out), "--device", "cpu", "--quick"],
        env=_env(stub), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert file_state(victim) == target
    for name in ("phases.txt", "env.txt", "summary.md"):
        path = out / name
        assert path.is_file() and not path.is_symlink() and path.stat().st_nlink == 1, name


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGINT])
def test_gpu_checks_test_phase_stops_with_the_script(
    tmp_path: Path, stub: Path, how: signal.Signals
) -> None:
    pidfile = tmp_path / "pytest.pid"
    script = subprocess.Popen(
        ["bash", str(GPU_CHECK), str(tmp_path / "out"), "--device", "cpu", "--quick"],
        env=_env(stub, STUB_PIDFILE=str(pidfile)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while not (pidfile.is_file() and pidfile.read_text().strip()):
        assert time.monotonic() < deadline and script.poll() is None, "the test phase did not start"
        time.sleep(0.1)
    phase = int(pidfile.read_text())
    try:
        script.send_signal(how)
        script.wait(timeout=30)
        deadline = time.monotonic() + 15
        while _alive(phase) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(phase), "the test phase outlived the script"
    finally:
        if _alive(phase):
            os.kill(phase, signal.SIGKILL)


def _protocol(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(REPO),
    }
    return subprocess.run(
        ["bash", str(PROTOCOL), *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip


@pytest.mark.slow
def test_paper_protocol_runs_from_outside_the_checkout(tmp_path: Path) -> None:
    done = _protocol(
        tmp_path, "out", "--budget", "gpu", "--steps", "4", "--batch", "16", "--negatives", "2",
        "--valid-every", "2", "--datasets", "wn18rr", "--decoders", "distmult",
        "--arms", "uniform-base", "--device", "cpu",
        "--set", "dataset.name=synthetic", "--set", "train.threads=1",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "out" / "wn18rr-distmult" / "results.json").is_file()
    assert (tmp_path / "out" / "summary" / "SUMMARY.md").is_file()


@pytest.mark.parametrize("option", ["--arms", "--datasets", "--decoders", "--seeds"])
@pytest.mark.parametrize("value", ["", "uniform-base,", ",,"])
def test_paper_protocol_refuses_an_empty_list(tmp_path: Path, option: str, value: str) -> None:
    done = _protocol(
        REPO, str(tmp_path / "out"), option, value, "--steps", "2", "--batch", "8", "--negatives", "2",
        "--valid-every", "2", "--set", "dataset.name=synthetic", "--device", "cpu",
    )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"error: {option} '{value}' holds an empty item" in done.stderr
    assert not (tmp_path / "out").exists()  # nothing ran
