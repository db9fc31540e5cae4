"""The emu-dgl command: train, evaluate, predict, export, and one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from emu_dgl.cli import main
from emu_dgl.data import load_dataset

FAST = [
    "--set",
    "train.max_steps=30",
    "--set",
    "train.valid_every=15",
    "--set",
    "train.checkpoint_every=15",
    "--set",
    "train.progress=false",
    "--set",
    "train.device=cpu",
]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    result = CliRunner().invoke(main, ["train", "--out", str(out), *FAST])
    assert result.exit_code == 0, result.output
    assert "mrr" in result.output and "test" in result.output
    return out


def test_train_writes_a_run(run_dir):
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["steps"] == 30
    assert (run_dir / "checkpoints" / "best.pt").is_file()


def test_train_refuses_to_overwrite_and_resume_finishes(run_dir):
    runner = CliRunner()
    again = runner.invoke(main, ["train", "--out", str(run_dir), *FAST])
    assert again.exit_code == 2 and "--resume" in again.output
    resumed = runner.invoke(
        main, ["train", "--resume", str(run_dir), "--set", "train.max_steps=45"]
    )
    assert resumed.exit_code == 0, resumed.output
    assert json.loads((run_dir / "metrics.json").read_text())["steps"] == 45


def test_evaluate_reports_json(run_dir):
    result = CliRunner().invoke(
        main, ["evaluate", str(run_dir), "--split", "valid", "--json", "--device", "cpu"]
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.output)["valid"]
    assert 0 < metrics["mrr"] <= 1 and metrics["head"]["mr"] >= 1


def test_predict_marks_known_triples(run_dir):
    kg = load_dataset("synthetic")
    h, r, _ = kg.train[0].tolist()
    head, relation = kg.entity_names[h], kg.relation_names[r]
    result = CliRunner().invoke(
        main,
        [
            "predict",
            str(run_dir),
            "--head",
            head,
            "--relation",
            relation,
            "--top",
            "5",
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 0, result.output
    rows = result.output.strip().splitlines()[1:]
    assert len(rows) == 5
    bad = CliRunner().invoke(
        main, ["predict", str(run_dir), "--head", "no-such-entity", "--relation", relation]
    )
    assert bad.exit_code == 2 and "unknown entity" in bad.output


def test_export_writes_arrays_and_tables(run_dir, tmp_path):
    result = CliRunner().invoke(main, ["export", str(run_dir), "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    kg = load_dataset("synthetic")
    entities = np.load(tmp_path / "entities.npy")
    assert entities.shape[0] == kg.num_entities
    lines = (tmp_path / "entities.tsv").read_text().splitlines()
    assert lines[0] == f"0\t{kg.entity_names[0]}" and len(lines) == kg.num_entities
    assert np.load(tmp_path / "relations.npy").shape[0] == kg.num_relations


@pytest.mark.parametrize("model", ["complex", "hake", "distmult"])
def test_export_meta_describes_the_columns(model, tmp_path):
    import torch

    from emu_dgl.training.results import load_run

    run = tmp_path / "run"
    args = ["train", "--out", str(run), "--set", f"model.name={model}", "--set", "model.dim=8"]
    args += ["--set", "train.max_steps=3", *FAST[4:]]
    assert CliRunner().invoke(main, args).exit_code == 0
    out = tmp_path / "export"
    assert CliRunner().invoke(main, ["export", str(run), "--out", str(out)]).exit_code == 0
    meta = json.loads((out / "meta.json").read_text(encoding="utf-8"))
    entities, relations = np.load(out / "entities.npy"), np.load(out / "relations.npy")
    assert meta["model"] == model and meta["dim"] == 8
    assert meta["entities"]["shape"] == list(entities.shape)
    assert meta["relations"]["shape"] == list(relations.shape)
    _, _, trained = load_run(run)
    triples = torch.tensor([[0, 0, 1], [2, 1, 3], [4, 2, 0]])
    expected = trained.score_hrt(triples).detach().numpy()

    def part(table, name, block):
        lo, hi = meta[name]["blocks"][block]
        return table[:, lo:hi]

    h, r, t = triples.numpy().T
    if model == "complex":  # Re<h, r, conj t> from the columns meta.json names
        e_re, e_im = part(entities, "entities", "re"), part(entities, "entities", "im")
        r_re, r_im = part(relations, "relations", "re"), part(relations, "relations", "im")
        score = (
            e_re[h] * r_re[r] * e_re[t]
            + e_im[h] * r_re[r] * e_im[t]
            + e_re[h] * r_im[r] * e_im[t]
            - e_im[h] * r_im[r] * e_re[t]
        ).sum(1)
        np.testing.assert_allclose(score, expected, rtol=1e-5, atol=1e-6)
    elif model == "distmult":
        e = part(entities, "entities", "embedding")
        score = (e[h] * part(relations, "relations", "embedding")[r] * e[t]).sum(1)
        np.testing.assert_allclose(score, expected, rtol=1e-5, atol=1e-6)
        assert "phase_blocks" not in meta
    else:
        assert list(meta["entities"]["blocks"]) == ["phase", "modulus"]
        assert meta["relations"]["blocks"] == {
            "phase": [0, 8],
            "modulus": [8, 16],
            "bias": [16, 24],
        }
        assert meta["phase_blocks"] == ["phase"] and meta["phase_radians_per_unit"] > 0
        assert set(meta["decoder_parameters"]) == {"modulus_weight", "phase_weight"}


def test_every_decoder_names_its_column_blocks():
    from emu_dgl.models import DECODERS

    for name in DECODERS.names():
        decoder = DECODERS.get(name)
        assert len(decoder.entity_blocks) == decoder.entity_factor, name
        assert len(decoder.relation_blocks) == decoder.relation_factor, name
        assert set(decoder.phase_blocks) <= set(decoder.entity_blocks + decoder.relation_blocks)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["train", "--set", "train.lrr=1"], "did you mean 'train.lr'"),
        (["train", "--set", "model.name=transx"], "model.name"),
        (["train", "--config", "missing.yaml"], "does not exist"),
        (["evaluate", "not-a-run"], "not an emu-dgl run directory"),
    ],
)
def test_bad_input_is_one_line(args, fragment):
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    assert fragment in result.output
    assert "Traceback" not in result.output


@pytest.mark.slow
def test_compare_runs_every_arm_and_seed(tmp_path):
    out = tmp_path / "cmp"
    args = [
        "compare",
        "--out",
        str(out),
        "--seeds",
        "0,1",
        "--set",
        "train.max_steps=20",
        "--set",
        "train.valid_every=10",
        "--set",
        "train.checkpoint_every=0",
        "--set",
        "train.device=cpu",
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    data = json.loads((out / "results.json").read_text())
    assert sorted((r["arm"], r["seed"]) for r in data["runs"]) == [
        ("base", 0),
        ("base", 1),
        ("emu", 0),
        ("emu", 1),
    ]
    assert all(len(r["curve"]) == 2 for r in data["runs"])  # steps 10 and 20
    table = (out / "table.md").read_text()
    assert "| base |" in table and "| emu |" in table and "±" in table
    # the arms really differ: EMU on in one, off in the other
    import yaml

    assert (
        yaml.safe_load((out / "emu" / "seed0" / "config.yaml").read_text())["emu"]["enabled"]
        is True
    )
    assert (
        yaml.safe_load((out / "base" / "seed0" / "config.yaml").read_text())["emu"]["enabled"]
        is False
    )
    # a finished comparison is not run again
    again = CliRunner().invoke(main, args)
    assert (
        again.exit_code == 0
        and json.loads((out / "results.json").read_text())["runs"] == data["runs"]
    )


def test_arm_names_are_folder_safe():
    from emu_dgl.errors import ConfigError
    from emu_dgl.experiments.compare import parse_arm

    assert parse_arm("emu-lr0.3:emu.enabled=true,train.lr=0.3").overrides == (
        "emu.enabled=true",
        "train.lr=0.3",
    )
    assert parse_arm("base:").overrides == ()
    assert parse_arm("sans-base").preset == "sans-base"  # a named arm of the config file
    for bad in ("../up:emu.enabled=true", "a/b:train.lr=1", ":train.lr=1", "../up"):
        with pytest.raises(ConfigError):
            parse_arm(bad)


@pytest.mark.slow
def test_a_run_trained_on_a_graph_from_python_opens_in_the_cli_even_when_moved(tmp_path):
    from emu_dgl import KnowledgeGraph
    from emu_dgl.config import QUICKSTART, load_config
    from emu_dgl.training.trainer import Trainer

    base = load_dataset("synthetic")
    # names that the synthetic dataset (the config's dataset.name) does not have
    kg = KnowledgeGraph(
        name="mine",
        entity_names=[f"my-{n}" for n in base.entity_names],
        relation_names=base.relation_names,
        train=base.train,
        valid=base.valid,
        test=base.test,
    )
    config = load_config(QUICKSTART, ["train.max_steps=10", "train.progress=false"])
    metrics = Trainer(config, tmp_path / "run", kg=kg).fit()
    (tmp_path / "run").rename(tmp_path / "moved")
    run = str(tmp_path / "moved")
    shown = CliRunner().invoke(main, ["evaluate", run, "--json", "--device", "cpu"])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout)["test"]["mrr"] == metrics["test"]["mrr"]
    name = kg.entity_names[int(kg.train[0, 0])]
    relation = kg.relation_names[int(kg.train[0, 1])]
    predicted = CliRunner().invoke(main, ["predict", run, "--head", name, "--relation", relation])
    assert predicted.exit_code == 0, predicted.output
    assert "my-" in predicted.stdout
    resumed = CliRunner().invoke(
        main, ["train", "--resume", run, "--set", "train.max_steps=12", *FAST[-4:]]
    )
    assert resumed.exit_code == 0, resumed.output
    assert json.loads((tmp_path / "moved" / "metrics.json").read_text())["steps"] == 12


def test_long_phases_say_what_they_do(tmp_path):
    # A SANS build and each final evaluation print one line before they start (with the
    # progress bar on), so a run never sits silent after its bar reaches 100%.
    args = ["train", "--out", str(tmp_path / "run"), "--set", "train.max_steps=2"]
    args += ["--set", "sampler.name=sans", "--set", "sampler.walks=7", "--set", "train.threads=1"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    err = result.stderr
    assert "building SANS candidates (continue walks, k=3, w=7) for 605 entities ..." in err
    assert "SANS candidates built in " in err and "; cached at " in err
    assert "evaluating valid (463 triples, full ranking against 605 entities)" in err
    assert "evaluating test (422 triples, full ranking against 605 entities)" in err
    assert err.index("evaluating valid") < err.index("evaluating test")
