"""Generated power-law graphs: exact sizes, seeded, distinct triples, heavy-tailed, cached."""

from __future__ import annotations

import pytest
import torch

from emu_dgl.data import load_dataset
from emu_dgl.data.synthetic_large import PowerLawSpec, generate_power_law, parse_spec
from emu_dgl.errors import DataError

NAME = "synthetic:entities=3000,triples=40000,relations=20,seed=5"


def test_sizes_ids_and_distinct_triples():
    train, valid, test, spec = generate_power_law(parse_spec(NAME))
    assert (spec.entities, spec.relations, spec.valid, spec.test) == (3000, 20, 400, 400)
    assert len(train) + len(valid) + len(test) == 40000 and len(valid) == len(test) == 400
    every = torch.cat([train, valid, test])
    assert every[:, [0, 2]].min() >= 0 and every[:, [0, 2]].max() < 3000
    assert every[:, 1].min() >= 0 and every[:, 1].max() < 20
    keys = (every[:, 0] * 20 + every[:, 1]) * 3000 + every[:, 2]
    assert len(torch.unique(keys)) == len(keys)  # no triple twice, not even across splits


def test_same_seed_same_graph_other_seed_other_graph():
    a = generate_power_law(parse_spec(NAME))[0]
    assert torch.equal(a, generate_power_law(parse_spec(NAME))[0])
    assert not torch.equal(a, generate_power_law(parse_spec(NAME.replace("seed=5", "seed=6")))[0])


def test_degrees_are_heavy_tailed_and_alpha_zero_is_uniform():
    def top_share(alpha: float) -> float:
        train = generate_power_law(PowerLawSpec(entities=5000, triples=50000, alpha=alpha))[0]
        degree = (
            torch.bincount(torch.cat([train[:, 0], train[:, 2]]), minlength=5000)
            .sort(descending=True)
            .values
        )
        return float(degree[:50].sum() / degree.sum())  # share of the top 1% of entities

    assert top_share(1.0) > 0.3  # Zipf: ~ln(50)/ln(5000) of all endpoints
    assert top_share(0.0) < 0.02  # uniform: ~1%


def test_name_resolves_through_load_dataset_and_is_cached(tmp_path):
    kg = load_dataset(NAME, cache_dir=tmp_path)
    assert kg.num_entities == 3000 and kg.num_relations == 20 and len(kg.test) == 400
    assert kg.name.startswith("synthetic:entities=3000,triples=40000,relations=20")
    cached = list(tmp_path.glob("synthetic-*.store"))
    assert len(cached) == 1
    again = load_dataset(NAME, cache_dir=tmp_path)
    assert again.fingerprint == kg.fingerprint


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("synthetic:entities=10,size=5", "known key"),
        ("synthetic:entities=ten", "whole number"),
        ("synthetic:entities=10,triples=100000", "do not fit"),
        ("synthetic:entities=100,triples=50,valid=30,test=30", "below triples"),
    ],
)
def test_bad_parameters_are_one_line_errors(name, message):
    with pytest.raises(DataError, match=message):
        load_dataset(name, cache=False)
