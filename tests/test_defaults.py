"""Defaults that fit the data (issue 24): the README's nations example and
``configs/own-tsv.yaml`` run in seconds on a small graph without warning about their own
settings; a resumed run's first loss record averages a full window."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from emu_dgl.config import load_config
from tests.conftest import need_data
from tests.run_helpers import invoke

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
OWN_TSV = ROOT / "configs" / "own-tsv.yaml"


def _readme_command(pattern: str) -> list[str]:
    """The README's `emu-dgl ...` line matching ``pattern``, as arguments (comment dropped)."""
    (line,) = [ln for ln in README.splitlines() if re.search(pattern, ln)]
    return shlex.split(line.split("#")[0])[1:]


def _tiny_graph(folder: Path, entities: int = 10) -> Path:
    """A small graph as TSV files: a ring and its chords over ``entities`` entities."""
    triples = [(i, "next", (i + 1) % entities) for i in range(entities)]
    triples += [(i, "skip", (i + 3) % entities) for i in range(entities)]
    triples += [(i, "back", (i - 1) % entities) for i in range(entities)]
    folder.mkdir(parents=True)
    splits = {"train": triples[2:-4], "valid": triples[:2], "test": triples[-4:]}
    for split, rows in splits.items():
        (folder / f"{split}.txt").write_text("".join(f"e{h}\t{r}\te{t}\n" for h, r, t in rows))
    return folder


def _warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("warning:")]


@pytest.mark.slow
def test_own_tsv_fits_a_small_graph_and_warns_about_nothing(tmp_path: Path) -> None:
    graph = _tiny_graph(tmp_path / "mine")
    config = load_config(OWN_TSV)
    assert config.train.max_epochs > 0 and config.sampler.num_negatives > 10
    run = tmp_path / "run"
    args = ["--config", OWN_TSV, "--set", f"dataset.name={graph}", "--set", "train.threads=1"]
    result = invoke("train", *args, "--out", run)
    assert result.exit_code == 0, result.output
    assert not _warnings(result.stderr), result.stderr
    assert "drawing 10 negatives per positive" in result.stderr  # fitted, and said
    metrics = json.loads((run / "metrics.json").read_text())
    epochs, batch = config.train.max_epochs, min(config.train.batch_size, 25)
    assert metrics["steps"] == epochs * (25 // batch)  # 25 training triples: one step an epoch
    saved = load_config(run / "config.yaml")
    assert saved.sampler.num_negatives == config.sampler.num_negatives  # the run's config as given


@pytest.mark.slow
def test_the_readme_nations_example_warns_about_nothing(tmp_path: Path) -> None:
    root = need_data()
    args = _readme_command(r"^emu-dgl train --set dataset.name=nations\b")
    result = invoke(*args, "--data-dir", root, "--out", tmp_path / "n", "--set", "train.threads=1")
    assert result.exit_code == 0, result.output
    assert not _warnings(result.stderr), result.stderr
    assert json.loads((tmp_path / "n" / "metrics.json").read_text())["steps"] == 1000


@pytest.mark.slow
def test_own_tsv_on_nations_warns_about_nothing(tmp_path: Path) -> None:
    root = need_data()
    sets = ["--set", "dataset.name=nations", "--set", "train.threads=1"]
    result = invoke(
        "train", "--config", OWN_TSV, *sets, "--data-dir", root, "--out", tmp_path / "o"
    )
    assert result.exit_code == 0, result.output
    assert not _warnings(result.stderr), result.stderr
    metrics = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert metrics["steps"] == 100 * (1592 // 512)  # 100 epochs of nations' 1,592 triples


def test_a_resumed_runs_first_loss_record_averages_a_full_window(tmp_path: Path) -> None:
    from emu_dgl.training.trainer import Trainer

    sets = [
        "train.max_steps=30",
        "train.log_every=10",
        "train.checkpoint_every=5",
        "train.valid_every=0",
        "train.progress=false",
        "train.threads=1",
        "model.dim=8",
        "sampler.num_negatives=8",
    ]
    Trainer(load_config(None, sets), tmp_path / "whole").fit()
    Trainer(load_config(None, sets), tmp_path / "cut").fit(stop_after=15)  # killed after step 15
    Trainer(load_config(tmp_path / "cut" / "config.yaml"), tmp_path / "cut").fit(resume=True)

    def losses(run: Path) -> list[tuple[int, float]]:
        records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
        return [(r["step"], r["loss"]) for r in records if "loss" in r]

    whole, resumed = losses(tmp_path / "whole"), losses(tmp_path / "cut")
    assert [s for s, _ in whole] == [10, 20, 30]
    assert resumed == whole  # step 20's record averages steps 11-20, as in the unbroken run
