"""The synthetic family/organisation graph: deterministic, small, and inferable."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from emu_dgl.data import KnowledgeGraph, generate_synthetic, load_dataset
from emu_dgl.data.synthetic import RELATION_PARTNERS


@pytest.fixture(scope="module")
def kg() -> KnowledgeGraph:
    return load_dataset("synthetic")


def keys(triples: torch.Tensor, kg: KnowledgeGraph) -> np.ndarray:
    t = triples.numpy()
    return (t[:, 0] * kg.num_relations + t[:, 1]) * kg.num_entities + t[:, 2]


def test_deterministic_in_the_seed(kg: KnowledgeGraph) -> None:
    again = generate_synthetic(seed=0)
    assert again.entity_names == kg.entity_names
    for split in ("train", "valid", "test"):
        assert torch.equal(again.splits[split], kg.splits[split])
    other = generate_synthetic(seed=1)
    assert other.fingerprint != kg.fingerprint


def test_size_and_speed(kg: KnowledgeGraph) -> None:
    assert kg.name == "synthetic"
    assert 300 <= kg.num_entities <= 700
    assert 5_000 <= len(kg.all_triples()) <= 10_000
    assert kg.num_relations == len(RELATION_PARTNERS)
    assert 0.07 < len(kg.valid) / len(kg.all_triples()) < 0.11
    assert 0.07 < len(kg.test) / len(kg.all_triples()) < 0.11
    start = time.perf_counter()
    generate_synthetic(seed=3)
    assert time.perf_counter() - start < 0.2


def test_splits_are_disjoint_without_duplicates(kg: KnowledgeGraph) -> None:
    train, valid, test = (keys(t, kg) for t in (kg.train, kg.valid, kg.test))
    assert sum(kg.duplicates.values()) == 0
    assert len(np.unique(np.concatenate([train, valid, test]))) == len(kg.all_triples())


def test_every_held_out_triple_has_its_partner_in_train(kg: KnowledgeGraph) -> None:
    partner = torch.tensor(
        [kg.relation_names.index(RELATION_PARTNERS[name]) for name in kg.relation_names]
    )
    train = keys(kg.train, kg)
    for split in (kg.valid, kg.test):
        flipped = torch.stack([split[:, 2], partner[split[:, 1]], split[:, 0]], dim=1)
        assert np.isin(keys(flipped, kg), train).all()
    # hence every entity occurs in train
    seen = torch.zeros(kg.num_entities, dtype=torch.bool)
    seen[kg.train[:, [0, 2]].flatten()] = True
    assert bool(seen.all())


def test_patterns_hold(kg: KnowledgeGraph) -> None:
    names = kg.relation_names
    everything = kg.all_triples()

    def pairs(relation: str) -> set[tuple[int, int]]:
        rows = everything[everything[:, 1] == names.index(relation)]
        return set(zip(rows[:, 0].tolist(), rows[:, 2].tolist(), strict=True))

    for symmetric in ("married_to", "sibling_of", "colleague_of"):
        edges = pairs(symmetric)
        assert edges and edges == {(b, a) for a, b in edges}
    parent = pairs("parent_of")
    assert pairs("child_of") == {(b, a) for a, b in parent}
    # grandparent_of is exactly parent_of composed with itself
    children: dict[int, set[int]] = {}
    for a, b in parent:
        children.setdefault(a, set()).add(b)
    composed = {(a, c) for a, b in parent for c in children.get(b, ())}
    assert pairs("grandparent_of") == composed
    # every person is married or a grandchild; each married person has one spouse
    spouses = pairs("married_to")
    assert len({a for a, _ in spouses}) == len(spouses)
