"""CLI habits: --data-dir everywhere, run folders named after the dataset, threads,
per-relation tables, entity discovery, compare labels and help texts."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from emu_dgl.cli import main
from emu_dgl.data import generate_synthetic
from tests.run_helpers import write_dataset

FAST = [
    "--set",
    "train.max_steps=20",
    "--set",
    "train.valid_every=10",
    "--set",
    "train.checkpoint_every=10",
    "--set",
    "train.progress=false",
    "--set",
    "train.device=cpu",
    "--set",
    "model.dim=16",
    "--set",
    "dataset.name=mini",
]


@pytest.fixture(scope="module")
def moved_run(tmp_path_factory):
    """A run trained with --data-dir A whose data then moved to B (A is gone)."""
    base = tmp_path_factory.mktemp("habits")
    write_dataset(base / "a" / "mini")
    cwd = base / "cwd"
    cwd.mkdir()
    with pytest.MonkeyPatch.context() as patch:  # the default output.dir is relative: runs/...
        patch.chdir(cwd)
        result = CliRunner().invoke(
            main, ["train", "--data-dir", str(base / "a"), *FAST, "--set", "eval.per_relation=true"]
        )
        assert result.exit_code == 0, result.output
        (run,) = (cwd / "runs").iterdir()
    shutil.move(base / "a", base / "b")
    return run, base / "b", result.output


def test_run_folder_is_named_after_the_dataset_and_threads_are_printed(moved_run):
    run, _, output = moved_run
    assert run.name.startswith("mini-distmult-")
    assert "threads: " in output and "train.threads" in output
    # eval.per_relation: metrics.json and the printed table hold every relation of the split
    metrics = json.loads((run / "metrics.json").read_text())
    per_rel = metrics["test"]["per_relation"]
    assert sum(v["count"] for v in per_rel.values()) == metrics["test"]["num_triples"]
    assert "test: per relation" in output and next(iter(per_rel)) in output


def test_evaluate_predict_export_take_data_dir(moved_run, tmp_path):
    run, root, _ = moved_run
    runner = CliRunner()
    missing = runner.invoke(main, ["evaluate", str(run), "--device", "cpu"])
    assert missing.exit_code == 2 and missing.output.startswith("error:")
    result = runner.invoke(
        main, ["evaluate", str(run), "--device", "cpu", "--data-dir", str(root), "--json"]
    )
    assert result.exit_code == 0, result.output
    saved = json.loads((run / "metrics.json").read_text())["test"]
    assert json.loads(result.output)["test"]["mrr"] == pytest.approx(saved["mrr"], abs=1e-6)
    kg = generate_synthetic()
    head, relation = kg.entity_names[kg.train[0, 0]], kg.relation_names[kg.train[0, 1]]
    result = runner.invoke(
        main,
        [
            "predict",
            str(run),
            "--head",
            head,
            "--relation",
            relation,
            "--device",
            "cpu",
            "--data-dir",
            str(root),
        ],
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        main, ["export", str(run), "--out", str(tmp_path / "emb"), "--data-dir", str(root)]
    )
    assert result.exit_code == 0, result.output
    assert "best.pt" in result.output and (tmp_path / "emb" / "entities.npy").is_file()


def test_evaluate_per_relation_table(moved_run):
    run, root, _ = moved_run
    result = CliRunner().invoke(
        main,
        [
            "evaluate",
            str(run),
            "--device",
            "cpu",
            "--data-dir",
            str(root),
            "--per-relation",
            "--split",
            "valid",
        ],
    )
    assert result.exit_code == 0, result.output
    saved = json.loads((run / "metrics.json").read_text())["valid"]["per_relation"]
    for name, row in saved.items():
        line = next(ln for ln in result.output.splitlines() if ln.startswith(name + " "))
        assert f"{row['mrr']:.4f}" in line and f"{row['head']['mrr']:.4f}" in line


def test_datasets_entities_and_predict_suggestions(moved_run):
    run, root, _ = moved_run
    kg = generate_synthetic()
    runner = CliRunner()
    name = kg.entity_names[3]
    needle = name[1:4].upper()
    result = runner.invoke(
        main,
        ["datasets", "entities", "mini", "--data-dir", str(root), "--grep", needle, "--limit", "0"],
    )
    assert result.exit_code == 0, result.output
    listed = [ln for ln in result.output.splitlines() if not ln.startswith(tuple("0123456789"))]
    assert listed == [n for n in kg.entity_names if needle.lower() in n.lower()]
    relations = runner.invoke(
        main, ["datasets", "entities", "mini", "--data-dir", str(root), "--relations"]
    )
    assert set(kg.relation_names) <= set(relations.output.splitlines())
    # a name in the wrong case: predict fails in one line and offers the right spelling
    result = runner.invoke(
        main,
        [
            "predict",
            str(run),
            "--head",
            name.upper(),
            "--relation",
            kg.relation_names[0],
            "--device",
            "cpu",
            "--data-dir",
            str(root),
        ],
    )
    assert result.exit_code == 2
    assert (
        f"did you mean: {name}" in result.output
        and "emu-dgl datasets entities mini" in result.output
    )
    assert len(result.output.strip().splitlines()) == 1


def test_suggest_names_orders_case_then_substring_then_spelling():
    from emu_dgl.data.lookup import grep_names, suggest_names

    names = ["Barack_Obama", "barack_obama_sr", "Michelle_Obama", "Obamacare", "usa"]
    assert suggest_names("barack_obama", names)[:2] == ["Barack_Obama", "barack_obama_sr"]
    assert suggest_names("obama", names, n=3) == [
        "Barack_Obama",
        "barack_obama_sr",
        "Michelle_Obama",
    ]
    assert suggest_names("USA", names) == ["usa"]
    assert suggest_names("zzz", names) == []
    assert grep_names(names, "OBAMA") == names[:4] and grep_names(names, None) == names


@pytest.mark.slow
def test_compare_labels_bars_and_says_when_the_plot_is_skipped(tmp_path, monkeypatch):
    import builtins

    from emu_dgl.training import trainer as trainer_module

    labels = []

    original = trainer_module.Trainer.fit

    def spy(self, **kwargs):
        labels.append(self.progress_label)
        return original(self, **kwargs)

    monkeypatch.setattr(trainer_module.Trainer, "fit", spy)
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError("No module named 'matplotlib'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    result = CliRunner().invoke(
        main,
        [
            "compare",
            "--seeds",
            "0,1",
            "--out",
            str(tmp_path / "cmp"),
            "--set",
            "train.max_steps=10",
            "--set",
            "train.valid_every=0",
            "--set",
            "train.progress=false",
            "--set",
            "model.dim=8",
        ],
    )
    assert result.exit_code == 0, result.output
    assert labels == ["base seed 0", "base seed 1", "emu seed 0", "emu seed 1"]
    assert (
        'plot skipped: matplotlib is not installed (pip install "emu-dgl[plot]")' in result.output
    )
    assert not (tmp_path / "cmp" / "valid_mrr.png").exists()
    assert "plotted" not in json.loads((tmp_path / "cmp" / "results.json").read_text())


def test_help_texts():
    runner = CliRunner()
    texts = {
        cmd: runner.invoke(main, [*cmd.split(), "--help"]).output
        for cmd in ("train", "evaluate", "predict", "export", "datasets entities")
    }
    assert "emu_dgl/config.py" in texts["train"] and "emu-dgl datasets list" in texts["train"]
    assert "Which split" in texts["evaluate"] and "auto, cpu, cuda" in texts["evaluate"]
    assert "How many completions" in texts["predict"] and "auto, cpu, cuda" in texts["predict"]
    assert "Folder to write" in texts["export"] and "best.pt" in texts["export"]
    for cmd in ("evaluate", "predict", "export"):
        assert "--data-dir" in texts[cmd]
    # every option of every command says what it does
    import click

    def commands(group, prefix=""):
        for name, cmd in group.commands.items():
            if isinstance(cmd, click.Group):
                yield from commands(cmd, f"{prefix}{name} ")
            else:
                yield f"{prefix}{name}", cmd

    for name, cmd in commands(main):
        for param in cmd.params:
            if isinstance(param, click.Option):
                assert param.help, f"emu-dgl {name} {param.opts[0]} has no help text"


def test_threads_setting(tmp_path):
    import torch

    from emu_dgl.config import load_config
    from emu_dgl.device import resolve_threads
    from emu_dgl.errors import ConfigError
    from emu_dgl.training.trainer import Trainer

    assert resolve_threads(3) == (3, "train.threads")
    auto, why = resolve_threads(0)
    assert 1 <= auto <= 8 and why.startswith("auto")
    before = torch.get_num_threads()
    try:
        trainer = Trainer(load_config(None, ["train.threads=1", "train.max_steps=1"]), tmp_path)
        assert trainer.threads == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    with pytest.raises(ConfigError, match="train.threads"):
        load_config(None, ["train.threads=-1"])


def test_quickstart_copies_are_one_real_file():
    from emu_dgl.config import QUICKSTART

    repo_copy = Path(__file__).resolve().parents[1] / "configs" / "quickstart.yaml"
    assert not repo_copy.is_symlink()
    assert repo_copy.read_text() == QUICKSTART.read_text()
    assert "DistMult" in QUICKSTART.read_text() and "TransE" not in QUICKSTART.read_text()
