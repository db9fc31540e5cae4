"""Resumes never throw work away (issue 25, item 2 and the run-folder cases).

A checkpoint that exists but cannot be read (permissions, an I/O error, a format from a
newer emu-dgl or torch) stops the resume with one line naming it and the fix, and every
file of the run keeps its bytes and inode: no restart from step 0, no silent roll-back
to ``previous.pt``, no truncated log, no rotation over the only copies. Only a provably
torn file (a zip archive without its end record) is passed over, and it is set aside
as ``*.unreadable``.
"""

from __future__ import annotations

import errno
import io
import os
import zipfile
from pathlib import Path

import pytest
import torch

from tests.run_helpers import assert_one_line, copy_run, finished_tiny_run, invoke, snapshot


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory, real_data_dir: Path) -> tuple[Path, Path]:
    """(a finished tiny run on nations: last.pt at step 20, previous.pt at 10; its data root)."""
    return finished_tiny_run(tmp_path_factory.mktemp("keep"))


@pytest.fixture
def run(base: tuple[Path, Path], tmp_path: Path) -> Path:
    return copy_run(base[0], tmp_path / "run")


def _state(run: Path) -> tuple[dict[str, str], dict[str, int]]:
    """Every file's hash and every file's inode: both must survive a refused resume."""
    files = [p for p in run.rglob("*") if p.is_file() and p.name != ".lock"]
    return snapshot(run), {str(p.relative_to(run)): p.stat().st_ino for p in files}


def _newer_torch(path: Path) -> None:
    """Rewrite a checkpoint as a torch archive of a format version torch cannot read yet."""
    old = zipfile.ZipFile(io.BytesIO(path.read_bytes()))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as new:
        for info in old.infolist():
            data = old.read(info.filename)
            new.writestr(info, b"99\n" if info.filename.endswith("archive/version") else data)
    path.write_bytes(out.getvalue())


def _newer_emu_dgl(path: Path) -> None:
    state = torch.load(path, weights_only=True)
    torch.save({**state, "format": "emu-dgl-checkpoint/2"}, path)


def _refuse_open(monkeypatch: pytest.MonkeyPatch, error: int) -> None:
    """Make reading last.pt fail at the OS as an unreadable file does (tests run as root,
    whom permission bits do not stop)."""
    real = os.open

    def failing(path: object, flags: int, *args: object, **kwargs: object) -> int:
        if os.fspath(path).endswith("last.pt") and not flags & (os.O_WRONLY | os.O_RDWR):  # type: ignore[arg-type]
            raise OSError(error, os.strerror(error), os.fspath(path))  # type: ignore[arg-type]
        return real(path, flags, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", failing)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("damage", "fragment"),
    [
        ("permissions", "Permission denied"),
        ("io-error", "Input/output error"),
        ("newer-emu-dgl", "newer emu-dgl (format emu-dgl-checkpoint/2"),
        ("newer-torch", "version 99"),
    ],
)
@pytest.mark.parametrize("steps", ["30", "5"])  # extending, and a max_steps below step 20
def test_an_unreadable_last_checkpoint_stops_the_resume_and_keeps_every_file(
    run: Path, monkeypatch: pytest.MonkeyPatch, damage: str, fragment: str, steps: str
) -> None:
    last = run / "checkpoints" / "last.pt"
    if damage == "newer-emu-dgl":
        _newer_emu_dgl(last)
    elif damage == "newer-torch":
        _newer_torch(last)
    before = _state(run)
    if damage == "permissions":
        _refuse_open(monkeypatch, errno.EACCES)
    elif damage == "io-error":
        _refuse_open(monkeypatch, errno.EIO)
    line = assert_one_line(
        invoke("train", "--resume", run, "--set", f"train.max_steps={steps}"), fragment
    )
    assert str(last) in line and "neither falls back to an older checkpoint nor starts over" in line
    assert "move it away to resume from previous.pt" in line
    monkeypatch.undo()
    assert _state(run) == before  # no restart, no rotation, no truncated log


@pytest.mark.slow
def test_an_unreadable_previous_checkpoint_is_not_skipped_either(run: Path) -> None:
    checkpoints = run / "checkpoints"
    (checkpoints / "last.pt").unlink()  # a kill between the renames of a rotation...
    _newer_emu_dgl(checkpoints / "previous.pt")  # ...and the one copy left is not readable here
    before = _state(run)
    line = assert_one_line(
        invoke("train", "--resume", run, "--set", "train.max_steps=30"), "newer emu-dgl"
    )
    assert "previous.pt" in line and _state(run) == before


@pytest.mark.slow
def test_a_torn_last_checkpoint_falls_back_and_is_set_aside_never_rotated_over(
    run: Path,
) -> None:
    last = run / "checkpoints" / "last.pt"
    torn = last.read_bytes()[: last.stat().st_size // 2]  # a write cut short by a crash
    last.write_bytes(torn)
    inode = last.stat().st_ino
    log = (run / "metrics.jsonl").read_text()
    refused = invoke("train", "--resume", run, "--set", "train.max_steps=5")
    assert_one_line(refused, "already reached step 10")  # previous.pt's step, never below it
    assert last.read_bytes() == torn  # a refused resume moves nothing
    result = invoke("train", "--resume", run, "--set", "train.max_steps=30")
    assert result.exit_code == 0, result.output
    assert "resuming at step 10 from previous.pt" in result.stderr
    assert "cut short by a crash, set aside as last.pt.unreadable" in result.stderr
    aside = run / "checkpoints" / "last.pt.unreadable"
    assert aside.read_bytes() == torn and aside.stat().st_ino == inode
    assert torch.load(last, weights_only=True)["step"] == 30
    kept = [line for line in log.splitlines() if '"step": 5,' in line or '"step": 10,' in line]
    assert all(line in (run / "metrics.jsonl").read_text() for line in kept)


def test_a_run_stopped_before_its_config_is_started_again_not_called_foreign(
    base: tuple[Path, Path], tmp_path: Path
) -> None:
    folder = tmp_path / "stopped"
    folder.mkdir()
    (folder / ".lock").write_text("4242\n".ljust(24))  # admitted, then killed while building
    (folder / "data.json").write_text("{}\n")  # ...or between its first two records
    line = assert_one_line(invoke("train", "--resume", folder), "stopped before it wrote")
    assert f"'--out {folder}' instead of '--resume'" in line
    result = invoke(
        "train", "--out", folder, "--data-dir", base[1], "--set", "dataset.name=nations",
        "--set", "train.max_steps=4", "--set", "train.valid_every=2",
        "--set", "train.progress=false", "--set", "model.dim=8",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (folder / "config.yaml").is_file() and (folder / "metrics.json").is_file()
    plain = tmp_path / "plain"
    plain.mkdir()
    assert_one_line(invoke("train", "--resume", plain), "not an emu-dgl run directory")
