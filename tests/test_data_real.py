"""Loaders on the real FB15k-237 and WN18RR copies: exact counts, DGL round trips, cache speed."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch

from emu_dgl.data import KnowledgeGraph, load_dataset

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("processed")


@pytest.fixture(scope="module")
def fb15k237(real_data_dir: Path, cache_dir: Path) -> KnowledgeGraph:
    return load_dataset("fb15k-237", data_dir=real_data_dir, cache_dir=cache_dir)


@pytest.fixture(scope="module")
def wn18rr(real_data_dir: Path, cache_dir: Path) -> KnowledgeGraph:
    return load_dataset("wn18rr", data_dir=real_data_dir, cache_dir=cache_dir)


def named_split(kg: KnowledgeGraph, split: str) -> set[tuple[str, str, str]]:
    ent, rel = kg.entity_names, kg.relation_names
    return {(ent[h], rel[r], ent[t]) for h, r, t in kg.splits[split].tolist()}


def same_order(triples: torch.Tensor) -> torch.Tensor:
    """Rows sorted by (head, relation, tail)."""
    array = triples.numpy()
    return torch.from_numpy(array[np.lexsort((array[:, 2], array[:, 1], array[:, 0]))])


def file_triples(path: Path) -> set[tuple[str, ...]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return {tuple(line.split("\t")) for line in lines if line.strip()}


def test_fb15k237_counts(fb15k237: KnowledgeGraph) -> None:
    assert fb15k237.name == "fb15k-237"
    assert fb15k237.num_entities == 14_541
    assert fb15k237.num_relations == 237
    assert (len(fb15k237.train), len(fb15k237.valid), len(fb15k237.test)) == (
        272_115,
        17_535,
        20_466,
    )
    assert "/film/film/genre" in fb15k237.relation_names


def test_fb15k237_matches_files(fb15k237: KnowledgeGraph, real_data_dir: Path) -> None:
    for split in ("train", "valid", "test"):
        assert named_split(fb15k237, split) == file_triples(
            real_data_dir / "fb15k-237" / f"{split}.txt"
        )
    # the first line of train.txt gives ids 0 (head), 0 (relation), 1 (tail)
    first = (real_data_dir / "fb15k-237" / "train.txt").read_text().splitlines()[0].split("\t")
    assert fb15k237.train[0].tolist() == [0, 0, 1]
    assert (fb15k237.entity_names[0], fb15k237.relation_names[0], fb15k237.entity_names[1]) == (
        first[0],
        first[1],
        first[2],
    )


def test_fb15k237_dgl_round_trip(fb15k237: KnowledgeGraph) -> None:
    g = fb15k237.to_dgl(splits="all")
    assert g.num_nodes("entity") == 14_541
    assert len(g.canonical_etypes) == 237
    assert ("entity", "/film/film/genre", "entity") in g.canonical_etypes
    back = KnowledgeGraph.from_dgl(g)
    # same names with the same ids, so equal id triples mean equal named triples
    assert back.relation_names == fb15k237.relation_names
    assert back.entity_names == fb15k237.entity_names
    for split in ("train", "valid", "test"):
        assert torch.equal(same_order(back.splits[split]), same_order(fb15k237.splits[split]))
    assert back.fingerprint == fb15k237.fingerprint


def test_wn18rr_counts_and_graph(wn18rr: KnowledgeGraph) -> None:
    assert (wn18rr.num_entities, wn18rr.num_relations) == (40_943, 11)
    assert (len(wn18rr.train), len(wn18rr.valid), len(wn18rr.test)) == (86_835, 3_034, 3_134)
    assert wn18rr.to_dgl().num_edges() == 86_835  # the training graph, by default
    g = wn18rr.to_dgl(splits="all")
    assert g.num_nodes() == 40_943
    assert len(g.canonical_etypes) == 11
    train_edges = sum(int(g.edges[et].data["train_mask"].sum()) for et in g.canonical_etypes)
    assert train_edges == 86_835
    assert g.num_edges() == 86_835 + 3_034 + 3_134


def test_wn18rr_round_trip_heterograph_and_homogeneous(wn18rr: KnowledgeGraph) -> None:
    from emu_dgl._dgl import dgl

    g = wn18rr.to_dgl(splits="all")
    back = KnowledgeGraph.from_dgl(g)
    for split in ("train", "valid", "test"):
        assert named_split(back, split) == named_split(wn18rr, split)
    homo = dgl.to_homogeneous(
        g, ndata=["name"], edata=["etype", "train_mask", "val_mask", "test_mask"]
    )
    flat = KnowledgeGraph.from_dgl(homo)
    assert flat.entity_names == wn18rr.entity_names
    for split in ("train", "valid", "test"):
        assert torch.equal(same_order(flat.splits[split]), same_order(wn18rr.splits[split]))


def test_wn18rr_has_valid_test_entities_unseen_in_train(wn18rr: KnowledgeGraph) -> None:
    # ids span all splits: entities of valid/test that train lacks still get ids
    seen = torch.zeros(wn18rr.num_entities, dtype=torch.bool)
    seen[wn18rr.train[:, [0, 2]].flatten()] = True
    assert int((~seen).sum()) > 0
    assert int(wn18rr.all_triples()[:, [0, 2]].max()) == wn18rr.num_entities - 1


def test_processed_cache_is_faster(real_data_dir: Path, tmp_path: Path) -> None:
    start = time.perf_counter()
    cold = load_dataset("fb15k-237", data_dir=real_data_dir, cache_dir=tmp_path)
    cold_s = time.perf_counter() - start
    start = time.perf_counter()
    warm = load_dataset("fb15k-237", data_dir=real_data_dir, cache_dir=tmp_path)
    warm_s = time.perf_counter() - start
    assert warm.fingerprint == cold.fingerprint
    assert warm_s < cold_s
    assert len(list(tmp_path.glob("kg-*.store"))) == 1
