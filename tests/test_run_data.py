"""Runs remember their data, and say their folder first (issue 24).

A run records the absolute data root its dataset was found in and the data's fingerprint;
``evaluate``, ``predict``, ``export``, ``--resume`` and ``load_run`` look there first, never
download, and name ``--data-dir`` and the fingerprint when the data is gone. Every command
that makes a run folder says it before it trains or writes anything: ``train``, each run of
``compare`` (one job or several) and each trial of ``tune``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

import emu_dgl
from emu_dgl.data import load_dataset
from emu_dgl.errors import DataError
from tests.run_helpers import assert_one_line, invoke, write_dataset

SMALL = [
    "train.max_steps=20",
    "train.valid_every=10",
    "train.checkpoint_every=10",
    "train.progress=false",
    "train.threads=1",
    "train.device=cpu",
    "model.dim=8",
    "sampler.num_negatives=8",
    "train.batch_size=128",
]
SET = [arg for s in SMALL for arg in ("--set", s)]
CHECKOUT_DATA = Path(__file__).resolve().parents[1] / "datasets"


def _listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.is_dir() else []


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mygraph", "nations"])  # a folder name; a catalogue name
def test_a_run_finds_its_data_where_it_was_trained_without_the_environment(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = write_dataset(tmp_path / "root" / name).parent
    monkeypatch.setenv("EMU_DGL_DATA", str(root))
    # no download can succeed: a fetch attempt would show as an error about this mirror
    monkeypatch.setenv("EMU_DGL_MIRROR", (tmp_path / "no-mirror").as_uri())
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "run"
    result = invoke("train", "--out", run, "--set", f"dataset.name={name}", *SET)
    assert result.exit_code == 0, result.output
    saved = yaml.safe_load((run / "config.yaml").read_text())["dataset"]
    assert (saved["name"], saved["data_dir"]) == (name, str(root.absolute()))
    fingerprint = json.loads((run / "data.json").read_text())["fingerprint"]
    assert fingerprint == load_dataset(name, root).fingerprint

    monkeypatch.delenv("EMU_DGL_DATA")  # a later shell, without the variable
    monkeypatch.chdir(tmp_path.parent)
    assert invoke("evaluate", run).exit_code == 0
    entity = emu_dgl.load_dataset(name, root).entity_names[0]
    assert invoke("predict", run, "--head", entity, "--relation", "works_for").exit_code == 0
    assert invoke("export", run, "--out", tmp_path / "emb").exit_code == 0
    assert emu_dgl.load_run(run).kg.fingerprint == fingerprint
    more = invoke("train", "--resume", run, "--set", "train.max_steps=30")
    assert more.exit_code == 0, more.output

    before = _listing(CHECKOUT_DATA)
    moved = tmp_path / "moved"
    root.rename(moved)  # the data is gone from where the run was trained
    for args in (("evaluate", run), ("export", run, "--out", tmp_path / "e2")):
        line = assert_one_line(invoke(*args), "--data-dir")
        assert fingerprint[:16] in line and str(root.absolute()) in line
        assert "download" not in line
    line = assert_one_line(  # after the run folder and what resuming would do
        invoke("train", "--resume", run, "--set", "train.max_steps=40"), "--data-dir", only=False
    )
    assert fingerprint[:16] in line
    with pytest.raises(DataError, match="data_dir=DIR"):
        emu_dgl.load_run(run)
    assert _listing(CHECKOUT_DATA) == before  # nothing downloaded into the source checkout

    assert invoke("evaluate", run, "--data-dir", moved).exit_code == 0
    assert emu_dgl.load_run(run, data_dir=str(moved)).kg.fingerprint == fingerprint
    resumed = invoke("train", "--resume", run, "--data-dir", moved, "--set", "train.max_steps=40")
    assert resumed.exit_code == 0, resumed.output
    # the resumed run records where its data is now
    assert yaml.safe_load((run / "config.yaml").read_text())["dataset"]["data_dir"] == str(moved)
    assert invoke("evaluate", run).exit_code == 0


@pytest.mark.slow
def test_a_copy_with_other_content_is_passed_over_for_the_runs_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The recorded root holds a changed copy, $EMU_DGL_DATA the original: the original is used."""
    root = write_dataset(tmp_path / "root" / "g").parent
    run = tmp_path / "run"
    assert (
        invoke("train", "--out", run, "--data-dir", root, "--set", "dataset.name=g", *SET).exit_code
        == 0
    )
    original = tmp_path / "original"
    write_dataset(original / "g")
    train = root / "g" / "train.txt"
    train.write_text("\n".join(train.read_text().splitlines()[:-5]) + "\n")  # edited in place
    monkeypatch.setenv("EMU_DGL_DATA", str(original))
    assert invoke("evaluate", run).exit_code == 0
    monkeypatch.delenv("EMU_DGL_DATA")
    assert_one_line(invoke("evaluate", run), "the triples of train (")  # only the edited copy


@pytest.mark.slow
def test_train_says_its_run_folder_first(tmp_path: Path) -> None:
    result = invoke("train", "--out", tmp_path / "r", *SET)
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines()[0] == f"run folder: {tmp_path / 'r'}"
    resumed = invoke("train", "--resume", tmp_path / "r", "--set", "train.max_steps=30")
    assert resumed.stderr.splitlines()[0] == f"run folder: {tmp_path / 'r'}"
    # a refused run (no run folder made) stays one error line
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine")
    assert_one_line(invoke("train", "--out", tmp_path / "full", *SET), "is not empty")


@pytest.mark.slow
@pytest.mark.parametrize("jobs", [1, 2])
def test_compare_says_each_run_folder_first_and_estimates_its_time(
    jobs: int, tmp_path: Path
) -> None:
    out = tmp_path / "cmp"
    result = invoke("compare", "--out", out, "--seeds", "0,1", "--jobs", jobs, *SET)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "planned: 80 training steps in 4 run(s)" + (
        ", 2 at a time" if jobs > 1 else ""
    )
    estimate = [i for i, line in enumerate(lines) if line.startswith("estimate: about ")]
    assert len(estimate) == 1 and "for all 80 steps" in lines[estimate[0]]
    for arm in ("base", "emu"):
        for seed in (0, 1):
            label, folder = f"{arm} seed {seed}", out / arm / f"seed{seed}"
            said = [i for i, line in enumerate(lines) if line.startswith(f"{label}: run folder")]
            done = [i for i, line in enumerate(lines) if line.startswith(f"{label}: finished")]
            assert len(said) == 1 and str(folder) in lines[said[0]], lines
            assert done and said[0] < done[0], lines


@pytest.mark.slow
def test_tune_says_each_trial_folder_first(tmp_path: Path) -> None:
    pytest.importorskip("optuna")
    from emu_dgl.experiments.tune import load_space, run_study

    lines: list[str] = []
    run_study(
        None,
        trials=2,
        out=tmp_path / "study",
        overrides=SMALL,
        space=load_space(None)[:1],
        pruner="none",
        echo=lines.append,
    )
    for number in (0, 1):
        folder = [
            i for i, line in enumerate(lines) if line.startswith(f"trial {number}: run folder")
        ]
        outcome = [i for i, line in enumerate(lines) if line.startswith(f"trial {number}: valid")]
        assert len(folder) == 1 and outcome and folder[0] < outcome[0], lines
