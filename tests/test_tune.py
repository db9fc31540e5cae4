"""emu-dgl tune: Optuna search on the synthetic graph with a few tiny trials."""

from __future__ import annotations

import csv
import json
import sys

import pytest
import yaml
from click.testing import CliRunner

from emu_dgl.cli import main
from emu_dgl.config import load_config
from emu_dgl.errors import ConfigError
from emu_dgl.experiments.tune import DEFAULT_SPACE, load_space, run_study

TINY = [
    "train.max_steps=40",
    "train.log_every=20",
    "train.valid_every=10",
    "model.dim=8",
    "sampler.num_negatives=8",
    "train.batch_size=64",
    "train.checkpoint_every=0",
]


@pytest.mark.slow
def test_cli_study_writes_best_yaml_tables_and_resumes(tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text(
        "emu.p: {type: float, low: 0.2, high: 0.8}\ntrain.lr: {type: float, low: 0.05, high: 0.5, log: true}\n"
    )
    out = tmp_path / "study"
    args = [
        "tune",
        "--trials",
        "2",
        "--space",
        str(space),
        "--out",
        str(out),
        "--study",
        "s1",
        "--pruner",
        "none",
    ]
    for arg in TINY:
        args += ["--set", arg]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "best trial" in result.output and (out / "study.db").is_file()
    rows = list(csv.DictReader((out / "trials.csv").open()))
    assert [r["state"] for r in rows] == ["complete", "complete"]
    best_row = max(rows, key=lambda r: float(r["value"]))
    # best.yaml is the base config plus the best trial's values, and trains as is
    best = load_config(out / "best.yaml")
    assert best.emu.p == pytest.approx(float(best_row["emu.p"]))
    assert best.train.lr == pytest.approx(float(best_row["train.lr"]))
    assert best.model.dim == 8 and best.train.max_steps == 40 and best.train.progress is True
    # each trial is an ordinary run whose final validation metric is the trial's value
    trial = json.loads(
        (out / "trials" / f"trial-{int(best_row['trial']):04d}" / "metrics.json").read_text()
    )
    assert trial["valid"]["mrr"] == pytest.approx(float(best_row["value"]))
    assert (out / "trials.md").read_text().startswith("| trial | state | value |")
    assert (out / "trials.png").read_bytes()[
        :8
    ] == b"\x89PNG\r\n\x1a\n"  # matplotlib: the [plot] extra

    # the same command again adds trials to the same study, with new values
    result = CliRunner().invoke(main, [*args[:2], "1", *args[3:]])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader((out / "trials.csv").open()))
    assert [int(r["trial"]) for r in rows] == [0, 1, 2]
    assert len({r["emu.p"] for r in rows}) == 3


@pytest.mark.slow
def test_pruning_uses_intermediate_validation_mrr(tmp_path):
    import optuna

    # trial 0 learns (lr 0.3); later trials barely move (lr 1e-4) and fall below its
    # validation MRR at the first report: the median pruner stops them there.
    space = load_space(None)
    space = [p for p in space if p.key != "train.lr"]
    out = tmp_path / "s"
    storage = f"sqlite:///{out / 'study.db'}"
    out.mkdir()
    study = optuna.create_study(storage=storage, study_name="p", direction="maximize")
    study.enqueue_trial({"train.lr": 0.3})
    for _ in range(2):
        study.enqueue_trial({"train.lr": 1e-4})
    from emu_dgl.experiments.tune import Param

    lr = Param("train.lr", "float", 1e-4, 0.5, log=True)
    result = run_study(
        None,
        trials=3,
        out=out,
        study_name="p",
        storage=storage,
        space=[lr, *space],
        overrides=[*TINY, "train.max_steps=60"],
    )
    states = [r["state"] for r in result.trials]
    assert states[0] == "complete" and "pruned" in states[1:]
    pruned = next(r for r in result.trials if r["state"] == "pruned")
    assert pruned["last_step"] < 60  # stopped before the end of training
    assert result.best_trial == 0
    reported = optuna.load_study(study_name="p", storage=storage).trials[0].intermediate_values
    log = [
        json.loads(line)
        for line in (out / "trials" / "trial-0000" / "metrics.jsonl").read_text().splitlines()
    ]
    assert reported == {
        r["step"]: pytest.approx(r["mrr"]) for r in log if r.get("split") == "valid"
    }


def test_space_files_are_checked_before_any_trial(tmp_path):
    bad = tmp_path / "space.yaml"
    bad.write_text("emu.q: {type: float, low: 0.1, high: 0.9}\n")
    with pytest.raises(
        ConfigError, match="search space, 'emu.q' = 0.1: unknown config key 'emu.q'"
    ):
        run_study(None, trials=1, out=tmp_path / "o", space=load_space(bad), overrides=TINY)
    assert not (tmp_path / "o" / "trials").exists()
    bad.write_text("emu.p: {type: float, low: 0.0, high: 0.9}\n")  # p = 0 is invalid
    with pytest.raises(ConfigError, match=r"emu.p' = 0.0: emu.p: must be in \(0, 1\]"):
        run_study(None, trials=1, out=tmp_path / "o", space=load_space(bad), overrides=TINY)
    for text, message in [
        ("emu.p: {type: float, low: 0.9, high: 0.1}", "needs low < high"),
        ("emu.p: {type: real, low: 0.1, high: 0.9}", "valid: float, int, categorical"),
        ("emu.p: {type: float, low: 0.1, high: 0.9, lgo: true}", "unknown field(s) lgo"),
        ("train.lr: {type: float, low: 0, high: 0.9, log: true}", "log: true needs low > 0"),
        ("model.dim: {type: categorical}", "non-empty list 'choices'"),
    ]:
        bad.write_text(text + "\n")
        with pytest.raises(ConfigError) as info:
            load_space(bad)
        assert message in str(info.value)


def test_default_space_and_dims():
    keys = [p.key for p in load_space(None, dims=[16, 32])]
    assert keys == [*DEFAULT_SPACE, "model.dim"]
    assert load_space(None, dims=[16, 32])[-1].choices == (16, 32)


def test_missing_optuna_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)  # `import optuna` now raises ImportError
    result = CliRunner().invoke(main, ["tune", "--trials", "1", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert (
        result.output.strip()
        == 'error: emu-dgl tune needs the optuna package; install it with: pip install "emu-dgl[tune]"'
    )


def test_best_yaml_round_trips_as_a_config(tmp_path):
    """best.yaml values written through --set survive YAML (floats, ints, lists)."""
    from emu_dgl.experiments.tune import _yaml_value

    for value in (1e-05, 0.39, 100, True, "distmult", [16, 32]):
        config_line = f"x: {_yaml_value(value)}"
        assert yaml.safe_load(config_line)["x"] == value
