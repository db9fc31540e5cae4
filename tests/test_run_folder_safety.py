"""Run folders cannot be turned against their owner (issue 16, items 1-3).

Each test plants what an attacker with write access to a run folder (or a careless
config) could plant, a link, a FIFO, a hard link, a name that climbs out of the output
folder, and proves two things: the command stops with one clear line, and the planted
link's target (and every finished file of the run) is byte for byte what it was.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from emu_dgl.config import load_config
from emu_dgl.errors import RunError
from emu_dgl.training.run import open_run
from emu_dgl.training.start import run_directory
from emu_dgl.training.trainer import Trainer
from tests.run_helpers import (
    SET,
    TINY,
    assert_one_line,
    copy_run,
    file_state,
    finished_tiny_run,
    invoke,
    snapshot,
    train_tiny,
)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(a finished tiny run on nations, its writable data root)."""
    return finished_tiny_run(tmp_path_factory.mktemp("safety"))


@pytest.fixture
def run(base: tuple[Path, Path], tmp_path: Path) -> Path:
    return copy_run(base[0], tmp_path / "run")


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A file of the user's outside the run, which no planted link may reach."""
    path = tmp_path / "victim.txt"
    path.write_text("precious, and not emu-dgl's\n")
    return path


# ----------------------------------------------------------------------------- 1. links


def test_a_lock_link_is_refused_and_its_target_is_neither_truncated_nor_written(
    run: Path, victim: Path, tmp_path: Path
) -> None:
    before, target = snapshot(run), file_state(victim)
    (run / ".lock").symlink_to(victim)
    line = assert_one_line(
        invoke("train", "--resume", run, "--set", "train.max_steps=30"), "is a symbolic link"
    )
    assert ".lock" in line
    assert file_state(victim) == target and snapshot(run) == before
    fresh = tmp_path / "fresh"  # a new run into a folder holding only a planted lock link
    fresh.mkdir()
    (fresh / ".lock").symlink_to(victim)
    assert_one_line(invoke("train", "--out", fresh, *SET), "is a symbolic link")
    assert file_state(victim) == target and sorted(os.listdir(fresh)) == [".lock"]


@pytest.mark.parametrize("name", [".lock", "metrics.jsonl"])
def test_a_hard_link_to_a_file_written_in_place_is_refused(
    run: Path, victim: Path, name: str
) -> None:
    (run / name).unlink(missing_ok=True)
    os.link(victim, run / name)
    before, target = snapshot(run), file_state(victim)
    assert_one_line(invoke("train", "--resume", run, "--set", "train.max_steps=30"), "2 names")
    assert file_state(victim) == target and snapshot(run) == before


def test_links_at_the_old_predictable_temporary_names_are_never_written(
    run: Path, victim: Path
) -> None:
    target = file_state(victim)
    planted = [
        run / ".config.yaml.tmp",
        run / ".data.json.tmp",
        run / ".metrics.json.tmp",
        run / ".metrics.jsonl.tmp",
        run / "checkpoints" / ".last.pt.tmp",
    ]
    for path in planted:
        path.symlink_to(victim)
    result = invoke("train", "--resume", run, "--set", "train.max_steps=30")
    assert result.exit_code == 0, result.output
    assert file_state(victim) == target
    for name in ("config.yaml", "data.json", "metrics.json", "metrics.jsonl"):
        assert (run / name).is_file() and not (run / name).is_symlink(), name
    assert "max_steps: 30" in (run / "config.yaml").read_text()


RUN_FILES = [
    "config.yaml",
    "data.json",
    "metrics.jsonl",
    "metrics.json",
    "checkpoints/last.pt",
    "checkpoints/best.pt",
    "checkpoints",
]


@pytest.mark.parametrize("name", RUN_FILES)
def test_a_link_planted_as_a_run_file_is_refused_by_every_command_that_reads_the_run(
    run: Path, victim: Path, tmp_path: Path, name: str
) -> None:
    path = run / name
    if name == "checkpoints":  # a folder of someone else's, holding files of the same names
        elsewhere = tmp_path / "elsewhere"
        os.rename(path, elsewhere)
        path.symlink_to(elsewhere, target_is_directory=True)
        watched = elsewhere / "last.pt"
    else:
        os.replace(path, tmp_path / "moved")
        path.symlink_to(victim)
        watched = victim
    before, target = snapshot(run), file_state(watched)
    assert_one_line(invoke("train", "--resume", run, "--set", "train.max_steps=30"), name)
    assert snapshot(run) == before and file_state(watched) == target
    if name in ("config.yaml", "data.json", "checkpoints/best.pt", "checkpoints"):
        # evaluate, predict and export read these: a link is refused there too
        result = invoke("export", run, "--out", tmp_path / "exported")
        assert_one_line(result, "symbolic link")
        assert snapshot(run) == before and file_state(watched) == target


def test_a_fifo_among_the_run_files_is_refused_without_waiting(run: Path) -> None:
    log = run / "metrics.jsonl"
    log.unlink()
    os.mkfifo(log)
    before = snapshot(run)
    assert_one_line(invoke("train", "--resume", run, "--set", "train.max_steps=30"), "is a FIFO")
    assert snapshot(run) == before


def test_allow_nonempty_still_refuses_a_planted_link(tmp_path: Path, victim: Path) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine\n")
    (folder / "metrics.json").symlink_to(victim)
    target = file_state(victim)
    assert_one_line(invoke("train", "--out", folder, "--allow-nonempty", *SET), "metrics.json")
    assert file_state(victim) == target and (folder / "notes.txt").read_text() == "mine\n"


# ----------------------------------------------------------------------------- 2. names


@pytest.mark.parametrize("arm", ["../../escaped", "ABSOLUTE", "..", "a/b", ".hidden", " pad"])
def test_arm_names_from_a_config_file_cannot_leave_the_output_folder(
    tmp_path: Path, arm: str
) -> None:
    name = str(tmp_path / "absolute") if arm == "ABSOLUTE" else arm
    config = tmp_path / "arms.yaml"
    config.write_text(f'arms:\n  "{name}": {{emu.enabled: false}}\n')
    out = tmp_path / "deep" / "cmp"
    assert_one_line(
        invoke("compare", "--config", config, "--out", out, *SET), "cannot be a folder name"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["arms.yaml"]  # nothing made anywhere


def test_an_arm_given_on_the_command_line_follows_the_same_rule(tmp_path: Path) -> None:
    line = assert_one_line(
        invoke("compare", "--arm", "../up:emu.enabled=false", "--out", tmp_path / "c", *SET),
        "cannot be a folder name",
    )
    assert "path separator" in line and not (tmp_path / "c").exists()


def test_the_dataset_placeholder_cannot_climb_out_of_output_dir(
    base: tuple[Path, Path], tmp_path: Path
) -> None:
    root = base[1]
    args = ["--set", f"output.dir={tmp_path}/runs/{{dataset}}"]
    assert_one_line(
        invoke("train", *SET, "--set", f"dataset.name={root}/nations/..", *args),
        "the dataset name for {dataset} in output.dir '..' cannot be a folder name",
    )
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--set", "output.dir="], "output.dir: is empty"),
        (["--set", "output.dir=   "], "output.dir: is empty"),
        (["--out", "/"], "is the root of the file system"),
        (["--out", "//"], "is the root of the file system"),
    ],
)
def test_an_empty_output_dir_or_the_root_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], fragment: str
) -> None:
    monkeypatch.chdir(tmp_path)
    assert_one_line(invoke("train", *SET, *args), fragment)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(RunError, match="root of the file system"):
        Trainer(load_config(None, TINY), "/")


def test_tilde_is_expanded_for_the_lock_and_the_writes_alike(
    base: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    train_tiny(Path("~/r1"), base[1])
    assert (home / "r1" / "metrics.json").is_file() and (home / "r1" / ".lock").is_file()
    assert list(work.iterdir()) == []  # no folder literally named '~'
    config = load_config(None, [*TINY, "output.dir=~/runs/{dataset}-{model}"])
    assert run_directory(config) == home / "runs" / "nations-distmult"


# ------------------------------------------------------------------- 3. non-empty folders


def test_out_into_a_folder_of_the_users_is_refused_unless_allowed(
    base: tuple[Path, Path], tmp_path: Path
) -> None:
    folder = tmp_path / "results"
    folder.mkdir()
    for name in ("data.json", "metrics.json", "metrics.jsonl"):
        (folder / name).write_text(f"the user's own {name}\n")
    before = snapshot(folder)
    line = assert_one_line(
        invoke("train", "--out", folder, "--data-dir", base[1], *SET), "is not empty"
    )
    assert "--allow-nonempty" in line and "data.json" in line
    assert snapshot(folder) == before
    for command in (
        ["compare", "--out", folder, "--arm", "base:emu.enabled=false", *SET],
        ["tune", "--out", folder, "--trials", "1", *SET],
        ["train", "--out", folder, "--nproc", "2", *SET],  # the distributed launcher admits too
    ):
        assert_one_line(invoke(*command), "is not empty")
        assert snapshot(folder) == before
    train_tiny(folder, base[1], "--allow-nonempty")  # the user said so: the run's files land
    assert "best_step" in (folder / "metrics.json").read_text()


@pytest.mark.slow
def test_a_folder_holding_an_earlier_comparison_is_not_a_users_folder(
    base: tuple[Path, Path], tmp_path: Path
) -> None:
    out = tmp_path / "cmp"
    args = ["compare", "--out", out, "--arm", "base:emu.enabled=false", *SET]
    first = invoke(*args, "--set", f"dataset.data_dir={base[1]}")
    assert first.exit_code == 0, first.output
    runs = snapshot(out / "base")
    again = invoke(*args, "--set", f"dataset.data_dir={base[1]}")  # reused, not refused
    assert again.exit_code == 0, again.output
    assert snapshot(out / "base") == runs


# ---------------------------------------------------------------------------- admission


def test_one_admission_serves_fit_and_its_caller(base: tuple[Path, Path], tmp_path: Path) -> None:
    config = load_config(None, [*TINY, f"dataset.data_dir={base[1]}"])
    run_dir = tmp_path / "api"
    with open_run(run_dir, config) as admitted:
        assert not admitted.resumed
        with pytest.raises(RunError, match="already open as a new run"):
            with open_run(run_dir, config, resume=True):
                pass
        metrics = Trainer(config, run_dir).fit()  # no second lock, no second set of rules
    assert metrics["steps"] == 20
    with pytest.raises(RunError, match="already holds a run"):
        Trainer(config, run_dir).fit()
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("x")
    with pytest.raises(RunError, match="is not empty"):
        Trainer(config, mine).fit()
    assert Trainer(config, mine).fit(allow_nonempty=True)["steps"] == 20
