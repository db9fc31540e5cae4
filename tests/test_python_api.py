"""The Python API a PyKEEN user recognises (issue 24): ``emu_dgl.train`` with a path, a Config
or a dict, ``resume=``, a :class:`RunResult` with ``predict`` by name (against brute force),
``evaluate`` and ``export``; ``load_run`` giving the same object; the name maps."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import emu_dgl
from emu_dgl.config import QUICKSTART, load_config
from emu_dgl.errors import ConfigError, EmuDglError, RunError

#: A few-second run on the built-in graph.
QUICK = {
    "train__max_steps": 20,
    "train__valid_every": 10,
    "train__checkpoint_every": 10,
    "train__threads": 1,
    "train__progress": False,
    "train__device": "cpu",
    "model__dim": 16,
}


def quiet(line: str) -> None:
    pass


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> emu_dgl.RunResult:
    return emu_dgl.train(QUICKSTART, out=tmp_path_factory.mktemp("api") / "run", say=quiet, **QUICK)


def test_train_returns_the_run_with_its_metrics(result: emu_dgl.RunResult) -> None:
    assert isinstance(result, emu_dgl.RunResult)
    on_disk = json.loads((result.run_dir / "metrics.json").read_text())
    assert result.metrics == on_disk and result.metrics["steps"] == 20
    assert result.kg.num_entities == result.model.entity.weight.shape[0]
    assert result.config.model.dim == 16 and not result.model.training


def test_a_config_object_and_a_dict_train_like_the_path(tmp_path: Path) -> None:
    sets = [f"{k.replace('__', '.')}={v}" for k, v in QUICK.items()]
    config = load_config(QUICKSTART, sets)
    from_object = emu_dgl.train(config, out=tmp_path / "object", say=quiet)
    from_dict = emu_dgl.train(config.to_dict(), out=tmp_path / "dict", say=quiet)
    assert config.dataset.name == "synthetic" and config.dataset.data_dir is None  # untouched
    assert from_object.metrics["test"] == from_dict.metrics["test"]  # same seed, same run
    overridden = emu_dgl.train(config, out=tmp_path / "o", say=quiet, model__dim=8)
    assert overridden.config.model.dim == 8 and config.model.dim == 16


def test_bad_arguments_are_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config must be a Config, a dict or the path"):
        emu_dgl.train(42, out=tmp_path / "a", say=quiet)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="section__key, e.g. train__max_steps"):
        emu_dgl.train(out=tmp_path / "b", say=quiet, max_steps=5)
    with pytest.raises(ConfigError, match="resume=True needs out="):
        emu_dgl.train(resume=True, say=quiet)
    with pytest.raises(ConfigError, match="arm 'x' needs a config file"):
        emu_dgl.train({}, arm="x", out=tmp_path / "c", say=quiet)
    assert not any(tmp_path.iterdir())  # nothing written


def test_the_same_call_twice_with_resume_trains_once(tmp_path: Path) -> None:
    lines: list[str] = []
    first = emu_dgl.train(out=tmp_path / "r", resume=True, say=lines.append, **QUICK)
    assert lines[0] == f"run folder: {tmp_path / 'r'}"
    before = (tmp_path / "r" / "metrics.json").read_bytes()
    lines.clear()
    second = emu_dgl.train(out=tmp_path / "r", resume=True, say=lines.append, **QUICK)
    assert second.metrics == first.metrics
    assert (tmp_path / "r" / "metrics.json").read_bytes() == before
    assert any("already finished at step 20" in line for line in lines), lines
    longer = emu_dgl.train(
        out=tmp_path / "r", resume=True, say=quiet, **{**QUICK, "train__max_steps": 30}
    )
    assert longer.metrics["steps"] == 30
    with pytest.raises(RunError, match="already holds a run"):  # without resume: refused
        emu_dgl.train(out=tmp_path / "r", say=quiet, **QUICK)
    with pytest.raises(RunError, match="model.dim"):  # resume never changes the model
        emu_dgl.train(out=tmp_path / "r", resume=True, say=quiet, **{**QUICK, "model__dim": 8})


def test_predict_by_name_is_the_brute_force_top_k(result: emu_dgl.RunResult) -> None:
    kg, model = result.kg, result.model
    known = {tuple(t) for t in kg.all_triples().tolist()}
    # a query with known answers, so that filtering changes the table
    h, r, _ = kg.train[0].tolist()
    with torch.no_grad():
        scores = model.score_t(torch.tensor([[h, r]]))[0]
    order = sorted(range(kg.num_entities), key=lambda e: -float(scores[e]))
    table = result.predict(head=kg.entity_names[h], relation=kg.relation_names[r], top=5)
    expected = [e for e in order if (h, r, e) not in known][:5]
    assert table["id"].tolist() == expected
    assert table["entity"].tolist() == [kg.entity_names[e] for e in expected]
    assert np.allclose(table["score"], [float(scores[e]) for e in expected])
    assert table["rank"].tolist() == [1, 2, 3, 4, 5] and not table["known"].any()

    everything = result.predict(
        head=kg.entity_names[h], relation=kg.relation_names[r], top=kg.num_entities, filtered=False
    )
    assert everything["id"].tolist() == order
    assert everything["known"].tolist() == [(h, r, e) in known for e in order]


def test_predict_heads_by_name(result: emu_dgl.RunResult) -> None:
    kg, model = result.kg, result.model
    _, r, t = kg.test[0].tolist()
    with torch.no_grad():
        scores = model.score_h(torch.tensor([[r, t]]))[0]
    table = result.predict(tail=kg.entity_names[t], relation=kg.relation_names[r], top=3)
    known = {tuple(x) for x in kg.all_triples().tolist()}
    expected = [e for e in scores.argsort(descending=True).tolist() if (e, r, t) not in known][:3]
    assert table["id"].tolist() == expected


def test_predict_refuses_unknown_names_and_ambiguous_queries(result: emu_dgl.RunResult) -> None:
    name = result.kg.entity_names[0]
    with pytest.raises(EmuDglError, match=r"unknown entity 'persn_0126'.*did you mean"):
        result.predict(head="persn_0126", relation=result.kg.relation_names[0])
    with pytest.raises(EmuDglError, match="unknown relation 'nope'"):
        result.predict(head=name, relation="nope")
    with pytest.raises(ConfigError, match="exactly one of head= .* or tail="):
        result.predict(head=name, tail=name, relation=result.kg.relation_names[0])


def test_evaluate_gives_the_runs_own_final_metrics(result: emu_dgl.RunResult) -> None:
    for split in ("valid", "test"):
        again = result.evaluate(split)
        for key in ("mrr", "mr", "hits@1", "hits@10"):
            assert again[key] == pytest.approx(result.metrics[split][key], abs=1e-6)
    sampled = result.evaluate("test", protocol="sampled")
    assert sampled["protocol"] != result.metrics["test"]["protocol"]


def test_load_run_is_the_same_object_and_still_unpacks(result: emu_dgl.RunResult) -> None:
    loaded = emu_dgl.load_run(result.run_dir)
    assert isinstance(loaded, emu_dgl.RunResult) and loaded.metrics == result.metrics
    config, kg, model = loaded  # what load_run returned before
    assert kg.fingerprint == result.kg.fingerprint and config.model.dim == 16
    for name, value in model.state_dict().items():
        assert torch.equal(value, result.model.state_dict()[name])


def test_export_writes_the_tables(result: emu_dgl.RunResult, tmp_path: Path) -> None:
    folder = result.export(tmp_path / "emb")
    entities = np.load(folder / "entities.npy")
    assert np.array_equal(entities, result.model.entity.weight.detach().numpy())
    rows = (folder / "entities.tsv").read_text(encoding="utf-8").splitlines()
    assert rows[5] == f"5\t{result.kg.entity_names[5]}"
    assert json.loads((folder / "meta.json").read_text())["dim"] == 16


def test_knowledge_graph_name_maps_invert_the_name_lists() -> None:
    kg = emu_dgl.load_dataset("synthetic")
    assert [kg.entity_names[i] for i in kg.entity_to_id.values()] == list(kg.entity_to_id)
    assert len(kg.entity_to_id) == kg.num_entities
    assert {kg.relation_to_id[n]: n for n in kg.relation_names} == dict(
        enumerate(kg.relation_names)
    )
