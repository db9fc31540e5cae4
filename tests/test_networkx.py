"""networkx interop: KnowledgeGraph.to_networkx / from_networkx round trips and errors."""

from __future__ import annotations

import networkx as nx
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from emu_dgl.data import KnowledgeGraph, generate_synthetic
from emu_dgl.errors import DataError


def _same(a: KnowledgeGraph, b: KnowledgeGraph) -> None:
    assert a.entity_names == b.entity_names
    assert a.relation_names == b.relation_names
    for split in ("train", "valid", "test"):
        # the edge order of a MultiDiGraph groups triples by head, so compare as sets
        assert sorted(map(tuple, a.splits[split].tolist())) == sorted(
            map(tuple, b.splits[split].tolist())
        )
    assert a.fingerprint == b.fingerprint


def test_synthetic_round_trip_keeps_names_ids_and_splits():
    kg = generate_synthetic()
    g = kg.to_networkx()
    assert isinstance(g, nx.MultiDiGraph)
    assert g.number_of_nodes() == kg.num_entities
    assert g.number_of_edges() == len(kg.train) + len(kg.valid) + len(kg.test)
    h, r, t = kg.test[0].tolist()
    edges = g.get_edge_data(kg.entity_names[h], kg.entity_names[t])
    assert {"relation": kg.relation_names[r], "split": "test"} in list(edges.values())
    assert g.nodes[kg.entity_names[5]]["id"] == 5
    back = KnowledgeGraph.from_networkx(g)
    _same(kg, back)
    assert back.name == kg.name


triple_lists = st.lists(
    st.tuples(
        st.integers(0, 7),
        st.sampled_from(["likes", "knows", "owns"]),
        st.integers(0, 7),
        st.sampled_from(["train", "valid", "test"]),
    ),
    min_size=1,
    max_size=30,
)


@settings(max_examples=40, deadline=None)
@given(triple_lists)
def test_round_trip_of_random_graphs(rows):
    g = nx.MultiDiGraph()
    for h, r, t, split in rows:
        g.add_edge(f"e{h}", f"e{t}", relation=r, split=split)
    kg = KnowledgeGraph.from_networkx(g, name="random")
    # every distinct (h, r, t) of a split is one triple, in the node order of g
    for split in ("train", "valid", "test"):
        expected = {(f"e{h}", r, f"e{t}") for h, r, t, s in rows if s == split}
        got = {
            (kg.entity_names[a], kg.relation_names[b], kg.entity_names[c])
            for a, b, c in kg.splits[split].tolist()
        }
        assert got == expected
    assert kg.entity_names == list(g.nodes)
    _same(kg, KnowledgeGraph.from_networkx(kg.to_networkx()))


def test_user_graph_with_other_keys_default_split_and_isolated_nodes():
    g = nx.DiGraph()
    g.add_node("lonely")
    g.add_edge("paris", "france", rel="capital_of")
    g.add_edge("berlin", "germany", rel="capital_of", part="test")
    kg = KnowledgeGraph.from_networkx(g, relation_key="rel", split_key="part")
    assert kg.entity_names == ["lonely", "paris", "france", "berlin", "germany"]
    assert kg.relation_names == ["capital_of"]
    assert (
        kg.train.tolist() == [[1, 0, 2]] and kg.test.tolist() == [[3, 0, 4]] and len(kg.valid) == 0
    )
    single = KnowledgeGraph.from_networkx(g, relation_key=None)
    # split_key defaults to 'split', which these edges lack: all of them train
    assert single.relation_names == ["edge"] and single.train.tolist() == [[1, 0, 2], [3, 0, 4]]
    assert len(single.test) == 0


def test_duplicate_edges_are_counted_once():
    g = nx.MultiDiGraph()
    g.add_edge("a", "b", relation="r")
    g.add_edge("a", "b", relation="r")
    g.add_edge("a", "b", relation="s")
    kg = KnowledgeGraph.from_networkx(g)
    assert len(kg.train) == 2 and kg.duplicates["train"] == 1


@pytest.mark.parametrize(
    ("graph", "kwargs", "message"),
    [
        (nx.Graph([("a", "b")]), {}, "undirected"),
        (
            nx.DiGraph([("a", "b", {"label": "r"})]),
            {},
            "no attribute 'relation' (its attributes: label)",
        ),
        (nx.DiGraph([("a", "b", {"relation": "r", "split": "dev"})]), {}, "split='dev'"),
        (nx.DiGraph([(1, "1", {"relation": "r"})]), {}, "same name"),
    ],
)
def test_bad_graphs_fail_with_one_line(graph, kwargs, message):
    with pytest.raises(DataError) as info:
        KnowledgeGraph.from_networkx(graph, **kwargs)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_round_trip_trains(tmp_path):
    """A graph built in networkx trains through the ordinary Trainer."""
    from emu_dgl.config import load_config
    from emu_dgl.training.trainer import Trainer

    kg = KnowledgeGraph.from_networkx(generate_synthetic().to_networkx())
    config = load_config(
        None,
        [
            "train.max_steps=20",
            "train.progress=false",
            "model.dim=8",
            "sampler.num_negatives=8",
            "train.valid_every=0",
            "train.batch_size=64",
        ],
    )
    metrics = Trainer(config, tmp_path / "run", kg=kg).fit()
    assert 0.0 < metrics["test"]["mrr"] <= 1.0
    assert metrics["test"]["num_triples"] == len(kg.test)


def test_random_split_moves_fractions_of_train_deterministically():
    g = generate_synthetic().to_networkx()
    for _, _, data in g.edges(data=True):
        data.pop("split")  # a user graph without splits: everything is train
    kg = KnowledgeGraph.from_networkx(g)
    assert len(kg.valid) == len(kg.test) == 0
    split = kg.random_split(valid=0.1, test=0.2, seed=3)
    n = len(kg.train)
    assert (len(split.valid), len(split.test)) == (round(0.1 * n), round(0.2 * n))
    parts = [set(map(tuple, t.tolist())) for t in (split.train, split.valid, split.test)]
    assert parts[0] | parts[1] | parts[2] == set(map(tuple, kg.train.tolist()))
    assert sum(len(p) for p in parts) == n  # disjoint
    assert split.entity_names == kg.entity_names and split.relation_names == kg.relation_names
    again = kg.random_split(valid=0.1, test=0.2, seed=3)
    assert all(
        torch.equal(a, b) for a, b in zip(split.splits.values(), again.splits.values(), strict=True)
    )
    assert not torch.equal(split.valid, kg.random_split(valid=0.1, test=0.2, seed=4).valid)
    with pytest.raises(DataError, match="valid \\+ test < 1"):
        kg.random_split(valid=0.6, test=0.5)


def test_training_without_a_valid_split_is_one_clear_error(tmp_path):
    from emu_dgl.config import load_config
    from emu_dgl.errors import ConfigError
    from emu_dgl.training.trainer import Trainer

    kg = KnowledgeGraph.from_networkx(nx.MultiDiGraph([("a", "b", {"relation": "r"})]))
    with pytest.raises(
        ConfigError, match=r"no validation triples.*kg.random_split\(valid=0.05, test=0.05\)"
    ):
        Trainer(load_config(None, ["train.progress=false"]), tmp_path / "run", kg=kg)
