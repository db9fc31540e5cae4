"""One writer per run folder, for real (issue 25, item 1 and the run-folder cases).

The lock is taken on the folder a path resolved to at admission; these tests move the
path afterwards (a ``runs/current`` link re-pointed mid-run) or plant what a careless
script or another user could plant (a hard link, a FIFO), and prove the run's writes
reach only the locked folder: the other folder's files keep their bytes and inodes.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from emu_dgl.config import load_config
from emu_dgl.training.trainer import Trainer
from tests.run_helpers import (
    TINY,
    assert_one_line,
    copy_run,
    file_state,
    finished_tiny_run,
    invoke,
    snapshot,
)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory, real_data_dir: Path) -> tuple[Path, Path]:
    """(a finished tiny run on nations, its writable data root)."""
    return finished_tiny_run(tmp_path_factory.mktemp("writer"))


def _inodes(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_ino for p in folder.rglob("*") if p.is_file()}


def _repoint(link: Path, target: str) -> None:
    """Atomically make ``link`` point at ``target`` (as `ln -sfn` scripts do)."""
    tmp = link.with_name(link.name + ".new")
    tmp.symlink_to(target)
    os.replace(tmp, link)


@pytest.mark.slow
def test_a_run_folder_link_re_pointed_mid_run_keeps_the_writes_in_the_locked_folder(
    base: tuple[Path, Path], tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    finished = copy_run(base[0], runs / "finished")  # another run's finished work
    before, inodes = snapshot(finished), _inodes(finished)
    assert {"checkpoints/last.pt", "checkpoints/previous.pt"} <= set(before)
    (runs / "new").mkdir()
    current = runs / "current"
    current.symlink_to("new")
    config = load_config(None, [*TINY, f"dataset.data_dir={base[1]}"])
    trainer = Trainer(config, current)
    moved = []

    def repoint(record: dict) -> None:  # at step 5: before any checkpoint or validation
        if not moved and record.get("step") == 5:
            _repoint(current, "finished")
            moved.append(record["step"])

    trainer.log_hooks.append(repoint)
    metrics = trainer.fit()
    assert moved == [5] and metrics["steps"] == 20
    assert snapshot(finished) == before and _inodes(finished) == inodes
    new = runs / "new"
    steps = [line for line in (new / "metrics.jsonl").read_text().splitlines() if '"loss"' in line]
    assert len(steps) == 4  # steps 5, 10, 15, 20: all of them in the run's own folder
    assert (new / "metrics.json").is_file() and (new / "checkpoints" / "last.pt").is_file()


def test_an_anchored_folder_is_written_through_its_descriptor(tmp_path: Path) -> None:
    """The mechanism itself: once anchored, a path under the folder's old name reaches the
    folder, whatever the name points at now, and a link inside it is never followed."""
    from emu_dgl.files import anchored, open_read, write_atomic

    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (b / "keep.txt").write_text("b's own\n")
    link = tmp_path / "current"
    link.symlink_to("a")
    with anchored(link, "run directory") as real:
        assert real == a.resolve()
        _repoint(link, "b")
        write_atomic(link / "keep.txt", "the run's\n", "record")
        with open_read(link / "keep.txt", "record") as handle:
            assert handle.read() == b"the run's\n"
        (a / "sub").symlink_to(b, target_is_directory=True)
        with pytest.raises(Exception, match="not a real folder|symbolic link"):
            write_atomic(link / "sub" / "keep.txt", "x", "record")
    assert (a / "keep.txt").read_text() == "the run's\n"
    assert (b / "keep.txt").read_text() == "b's own\n" and sorted(os.listdir(b)) == ["keep.txt"]
    write_atomic(link / "new.txt", "after\n", "record")  # the anchor is gone: the name rules
    assert (b / "new.txt").is_file()


def test_a_hard_linked_config_yaml_is_never_read(base: tuple[Path, Path], tmp_path: Path) -> None:
    run = copy_run(base[0], tmp_path / "run")
    victim = tmp_path / "victim.yaml"
    victim.write_bytes((run / "config.yaml").read_bytes())  # looks like a config: still not ours
    (run / "config.yaml").unlink()
    os.link(victim, run / "config.yaml")
    before, target = snapshot(run), file_state(victim)
    for command in (
        ["train", "--resume", run, "--set", "train.max_steps=30"],
        ["evaluate", run],
        ["export", run, "--out", tmp_path / "exported"],
    ):
        line = assert_one_line(invoke(*command), "2 names (hard links)")
        assert "config.yaml" in line
    assert snapshot(run) == before and file_state(victim) == target
    assert not (tmp_path / "exported").exists()
