"""KnowledgeGraph: id convention, duplicates, DGL conversion both ways, persistence."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from emu_dgl._dgl import dgl
from emu_dgl.data import KnowledgeGraph
from emu_dgl.errors import DataError

TRAIN = [
    ("alice", "/people/person/sibling", "bob"),
    ("bob", "/film/film/genre", "carol"),
    ("alice", "/people/person/sibling", "bob"),  # duplicate
    ("carol", "/people/person/sibling", "dave"),
]
VALID = [("dave", "/film/film/genre", "émile")]  # an entity only valid has, non-ASCII
TEST = [("émile", "r:x", "alice"), ("émile", "r:x", "alice")]  # duplicate in test


def named(kg: KnowledgeGraph, split: str) -> list[tuple[str, str, str]]:
    triples = kg.splits[split].tolist()
    return sorted(
        (kg.entity_names[h], kg.relation_names[r], kg.entity_names[t]) for h, r, t in triples
    )


@pytest.fixture
def kg() -> KnowledgeGraph:
    return KnowledgeGraph.from_labeled_triples(name="toy", train=TRAIN, valid=VALID, test=TEST)


def test_ids_follow_first_appearance_over_train_valid_test(kg: KnowledgeGraph) -> None:
    # heads before tails within a line, train before valid before test
    assert kg.entity_names == ["alice", "bob", "carol", "dave", "émile"]
    assert kg.relation_names == ["/people/person/sibling", "/film/film/genre", "r:x"]
    assert kg.train.tolist() == [[0, 0, 1], [1, 1, 2], [2, 0, 3]]
    assert kg.valid.tolist() == [[3, 1, 4]]
    assert kg.test.tolist() == [[4, 2, 0]]
    assert kg.train.dtype == torch.int64 and kg.train.device.type == "cpu"
    assert (kg.num_entities, kg.num_relations) == (5, 3)


def test_duplicates_are_kept_once_and_counted(kg: KnowledgeGraph) -> None:
    assert kg.duplicates == {"train": 1, "valid": 0, "test": 1}
    assert len(kg.train) == 3 and len(kg.test) == 1


def test_to_dgl_structure(kg: KnowledgeGraph) -> None:
    g = kg.to_dgl(splits="all")
    assert g.ntypes == ["entity"]
    assert g.num_nodes("entity") == 5
    assert sorted(g.canonical_etypes) == sorted(("entity", r, "entity") for r in kg.relation_names)
    assert g.num_edges() == 3 + 1 + 1
    sibling = ("entity", "/people/person/sibling", "entity")
    src, dst = g.edges(etype=sibling, order="eid")
    assert list(zip(src.tolist(), dst.tolist(), strict=True)) == [(0, 1), (2, 3)]
    genre = ("entity", "/film/film/genre", "entity")
    assert g.edges[genre].data["train_mask"].tolist() == [True, False]
    assert g.edges[genre].data["val_mask"].tolist() == [False, True]
    assert g.edges[genre].data["test_mask"].tolist() == [False, False]
    assert g.edges[("entity", "r:x", "entity")].data["test_mask"].tolist() == [True]
    for etype in g.canonical_etypes:
        masks = torch.stack(
            [g.edges[etype].data[m] for m in ("train_mask", "val_mask", "test_mask")]
        )
        assert masks.sum(0).eq(1).all()  # every edge in exactly one split
        assert g.edges[etype].data["etype"].eq(kg.relation_names.index(etype[1])).all()
    assert g.ndata["name"].dtype == torch.uint8


def test_to_dgl_holds_only_the_training_edges_by_default(kg: KnowledgeGraph) -> None:
    g = kg.to_dgl()  # what a GNN passes messages over: no valid or test edge
    assert g.num_nodes("entity") == kg.num_entities  # entities of every split are nodes
    assert g.num_edges() == len(kg.train)
    edges = set()
    for etype in g.canonical_etypes:
        src, dst = g.edges(etype=etype, order="eid")
        rel = kg.relation_names.index(etype[1])
        edges |= {(h, rel, t) for h, t in zip(src.tolist(), dst.tolist(), strict=True)}
        assert g.edges[etype].data["train_mask"].all()
        assert not g.edges[etype].data["val_mask"].any()
    assert edges == {tuple(t) for t in kg.train.tolist()}
    assert edges.isdisjoint({tuple(t) for t in kg.test.tolist()})
    valid_only = kg.to_dgl(splits=("valid",))
    assert valid_only.num_edges() == len(kg.valid)
    assert KnowledgeGraph.from_dgl(kg.to_dgl(splits=["train", "test"])).splits["test"].tolist() == (
        kg.test.tolist()
    )
    with pytest.raises(DataError, match="name splits among train, valid, test, or 'all'"):
        kg.to_dgl(splits=("training",))


def test_round_trip_keeps_names_ids_and_triples(kg: KnowledgeGraph) -> None:
    back = KnowledgeGraph.from_dgl(kg.to_dgl(splits="all"), name="toy")
    assert back.entity_names == kg.entity_names
    assert back.relation_names == kg.relation_names
    for split in ("train", "valid", "test"):
        assert sorted(back.splits[split].tolist()) == sorted(kg.splits[split].tolist())
    assert back.fingerprint == kg.fingerprint


def test_names_survive_dgl_operations(kg: KnowledgeGraph, tmp_path: Path) -> None:
    g = kg.to_dgl(splits="all")
    # save/load: no Python attributes involved
    path = str(tmp_path / "g.bin")
    dgl.save_graphs(path, [g])
    loaded = dgl.load_graphs(path)[0][0]
    assert KnowledgeGraph.from_dgl(loaded).fingerprint == kg.fingerprint
    # a node subgraph slices the names along with the nodes
    sub = dgl.node_subgraph(g, {"entity": torch.tensor([0, 1, 2])})
    sub_kg = KnowledgeGraph.from_dgl(sub)
    assert sub_kg.entity_names == ["alice", "bob", "carol"]
    assert named(sub_kg, "train") == sorted(t for t in set(TRAIN) if "dave" not in t)


def test_from_dgl_of_to_homogeneous(kg: KnowledgeGraph) -> None:
    g = kg.to_dgl(splits="all")
    homo = dgl.to_homogeneous(
        g, ndata=["name"], edata=["etype", "train_mask", "val_mask", "test_mask"]
    )
    back = KnowledgeGraph.from_dgl(homo)
    assert back.entity_names == kg.entity_names
    assert back.relation_names == [str(r) for r in range(kg.num_relations)]  # ids as names
    for split in ("train", "valid", "test"):
        assert sorted(back.splits[split].tolist()) == sorted(kg.splits[split].tolist())


def test_from_dgl_without_masks_counts_all_as_train() -> None:
    g = dgl.heterograph(
        {
            ("n", "likes", "n"): (torch.tensor([0, 1]), torch.tensor([1, 2])),
            ("n", "hates", "n"): (torch.tensor([2]), torch.tensor([0])),
        }
    )
    kg = KnowledgeGraph.from_dgl(g)
    # DGL sorts edge types by name: without edata['etype'] that order gives the ids
    assert kg.relation_names == ["hates", "likes"]
    assert kg.entity_names == ["0", "1", "2"]
    assert sorted(kg.train.tolist()) == [[0, 1, 1], [1, 1, 2], [2, 0, 0]]
    assert len(kg.valid) == 0 and len(kg.test) == 0


def test_from_dgl_of_dgl_fb15k237_dataset_class(tmp_path: Path) -> None:
    """DGL's own FB15k237Dataset (homogeneous, with reverse edges) on a tiny raw folder."""
    from dgl.data import FB15k237Dataset

    class Offline(FB15k237Dataset):
        @property
        def raw_path(self) -> str:
            return os.path.join(self.raw_dir, self.name)

        def download(self) -> None:
            raise AssertionError("the test provides the raw files")

    raw = tmp_path / "FB15k-237"
    raw.mkdir()
    entities, relations = ["a", "b", "c", "d"], ["r1", "r2"]
    train = [("a", "r1", "b"), ("b", "r2", "c"), ("c", "r1", "a")]
    valid = [("a", "r2", "c")]
    test = [("b", "r1", "d")]
    (raw / "entities.dict").write_text("".join(f"{i}\t{e}\n" for i, e in enumerate(entities)))
    (raw / "relations.dict").write_text("".join(f"{i}\t{r}\n" for i, r in enumerate(relations)))
    for split, rows in (("train", train), ("valid", valid), ("test", test)):
        (raw / f"{split}.txt").write_text("".join("\t".join(row) + "\n" for row in rows))
    g = Offline(raw_dir=str(tmp_path), verbose=False)[0]
    assert g.num_edges() == 2 * 5  # DGL adds a reverse edge per triple

    kg = KnowledgeGraph.from_dgl(g)
    assert kg.num_entities == 4 and kg.num_relations == 2
    for split, rows in (("train", train), ("valid", valid), ("test", test)):
        expected = sorted(
            (str(entities.index(h)), str(relations.index(r)), str(entities.index(t)))
            for h, r, t in rows
        )
        assert named(kg, split) == expected


def test_fingerprint_ignores_line_order_but_not_content(kg: KnowledgeGraph) -> None:
    shuffled = KnowledgeGraph(
        name="other",
        entity_names=kg.entity_names,
        relation_names=kg.relation_names,
        train=kg.train.flip(0),
        valid=kg.valid,
        test=kg.test,
    )
    assert shuffled.fingerprint == kg.fingerprint
    moved = KnowledgeGraph(
        name="toy",
        entity_names=kg.entity_names,
        relation_names=kg.relation_names,
        train=kg.train[1:],
        valid=torch.cat([kg.valid, kg.train[:1]]),
        test=kg.test,
    )
    assert moved.fingerprint != kg.fingerprint
    renamed = KnowledgeGraph(
        name="toy",
        entity_names=[*kg.entity_names[:-1], "emile"],
        relation_names=kg.relation_names,
        train=kg.train,
        valid=kg.valid,
        test=kg.test,
    )
    assert renamed.fingerprint != kg.fingerprint


def test_save_load(kg: KnowledgeGraph, tmp_path: Path) -> None:
    path = tmp_path / "toy.npz"
    kg.save(path)
    back = KnowledgeGraph.load(path)
    assert back.name == "toy"
    assert back.entity_names == kg.entity_names and back.relation_names == kg.relation_names
    for split in ("train", "valid", "test"):
        assert torch.equal(back.splits[split], kg.splits[split])
    assert back.duplicates == kg.duplicates
    assert [p.name for p in tmp_path.iterdir()] == ["toy.npz"]  # no temporary file left
    assert not np.load(path, allow_pickle=False)["train"].dtype.hasobject


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"train": torch.tensor([[0, 0, 9]])}, "outside"),
        ({"train": torch.tensor([[0, 5, 1]])}, "outside"),
        ({"train": torch.tensor([[-1, 0, 1]])}, "outside"),
        ({"train": torch.zeros(2, 4, dtype=torch.long)}, "shape"),
        ({"entity_names": ["a", "a", "c"]}, "not unique"),
        ({"entity_names": ["a", "b\nx", "c"]}, "newline"),
        ({"relation_names": []}, "at least one relation"),
    ],
)
def test_constructor_validates(change: dict[str, object], message: str) -> None:
    args: dict[str, object] = {
        "name": "bad",
        "entity_names": ["a", "b", "c"],
        "relation_names": ["r"],
        "train": torch.tensor([[0, 0, 1]]),
        "valid": torch.zeros(0, 3, dtype=torch.long),
        "test": torch.zeros(0, 3, dtype=torch.long),
    }
    args.update(change)
    with pytest.raises(DataError, match=message):
        KnowledgeGraph(**args)  # type: ignore[arg-type]


def test_from_dgl_rejects_several_node_types() -> None:
    g = dgl.heterograph({("a", "r", "b"): (torch.tensor([0]), torch.tensor([0]))})
    with pytest.raises(DataError, match="one node type"):
        KnowledgeGraph.from_dgl(g)
