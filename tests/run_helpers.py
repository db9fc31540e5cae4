"""Shared pieces of the run-folder and bad-input tests: tiny runs on nations, one-line checks,
and file snapshots that prove a finished run (or a planted link's target) is untouched."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from click.testing import CliRunner, Result

from emu_dgl.cli import main
from emu_dgl.data.synthetic import generate_synthetic
from tests.conftest import need_data

#: A run that takes about a second on nations: 20 steps, validation at 10.
TINY = [
    "dataset.name=nations",
    "model.name=distmult",
    "model.dim=16",
    "sampler.num_negatives=8",
    "train.batch_size=256",
    "train.max_steps=20",
    "train.valid_every=10",
    "train.checkpoint_every=10",
    "train.log_every=5",
    "train.progress=false",
    "train.device=cpu",
    "train.threads=1",
]
SET = [arg for s in TINY for arg in ("--set", s)]


def invoke(*args: object, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args], env=env)


def assert_one_line(
    result: Result, fragment: str, *, code: int = 2, only: bool = True, prefix: str = "error:"
) -> str:
    """Exit ``code``, no traceback, and stderr ends in one ``prefix`` line holding ``fragment``
    (with ``only``, that line is all of stderr). Returns the line."""
    assert result.exit_code == code, (result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output, result.output
    if code:
        assert isinstance(result.exception, SystemExit), repr(result.exception)
    lines = result.stderr.strip().splitlines()
    assert lines, result.output
    flagged = [line for line in lines if line.startswith(prefix)]
    assert len(flagged) == 1 and flagged[0] == lines[-1], lines
    if only:
        assert len(lines) == 1, lines
    assert fragment in lines[-1], lines[-1]
    assert len(lines[-1]) < 700, len(lines[-1])
    return lines[-1]


def snapshot(folder: Path) -> dict[str, str]:
    """Every entry under ``folder`` (the lock aside): a file's sha256, a link's target."""
    state = {}
    for path in sorted(folder.rglob("*")):
        key = str(path.relative_to(folder))
        if path.name == ".lock":
            continue
        if path.is_symlink():
            state[key] = "link -> " + os.readlink(path)
        elif path.is_file():
            state[key] = hashlib.sha256(path.read_bytes()).hexdigest()
    return state


def file_state(path: Path) -> tuple[bytes, int]:
    """A victim file's bytes and inode: both must be unchanged after an attack."""
    return path.read_bytes(), path.stat().st_ino


def nations_root(folder: Path) -> Path:
    """A writable data root holding a copy of nations (the test skips without the data)."""
    source = need_data()
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copytree(source / "nations", folder / "nations")
    return folder


def train_tiny(run: Path, root: Path, *extra: str) -> Result:
    result = invoke("train", "--out", run, "--data-dir", root, *SET, *extra)
    assert result.exit_code == 0, result.output
    return result


def copy_run(run: Path, to: Path) -> Path:
    shutil.copytree(run, to, symlinks=True)
    (to / ".lock").unlink(missing_ok=True)
    return to


def finished_tiny_run(folder: Path) -> tuple[Path, Path]:
    """(a finished tiny run on nations, its writable data root), both under ``folder``."""
    root = nations_root(folder / "data")
    run = folder / "base0"
    train_tiny(run, root)
    return run, root


def write_dataset(folder: Path) -> Path:
    """The synthetic graph as a folder of TSV files (names, not ids)."""
    kg = generate_synthetic()
    folder.mkdir(parents=True)
    for split, triples in kg.splits.items():
        lines = (
            f"{kg.entity_names[h]}\t{kg.relation_names[r]}\t{kg.entity_names[t]}\n"
            for h, r, t in triples.tolist()
        )
        (folder / f"{split}.txt").write_text("".join(lines))
    return folder
