from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import networkx as nx
import pytest
import torch

import emu_dgl.graph.neighbourhood as nbmod
from emu_dgl._dgl import dgl
from emu_dgl.data import load_dataset
from emu_dgl.graph import (
    Neighbourhood,
    build_neighbourhood,
    exact_khop,
    neighbourhood_cache_key,
    random_walk_neighbourhood,
    training_graph,
)


def random_kg(
    num_entities: int = 40,
    num_triples: int = 60,
    num_relations: int = 3,
    isolated: int = 5,
    seed: int = 0,
) -> tuple[torch.Tensor, int]:
    """Random triples over the first ``num_entities - isolated`` ids, with a self loop and a duplicate."""
    gen = torch.Generator().manual_seed(seed)
    live = num_entities - isolated
    h = torch.randint(0, live, (num_triples,), generator=gen)
    t = torch.randint(0, live, (num_triples,), generator=gen)
    r = torch.randint(0, num_relations, (num_triples,), generator=gen)
    train = torch.stack([h, r, t], dim=1)
    # a self loop and the reverse of the first triple under another relation
    extra = torch.tensor([[3, 0, 3], [train[0, 2], 1, train[0, 0]]])
    return torch.cat([train, extra]), num_entities


def random_tree(
    num_entities: int = 60, isolated: int = 4, seed: int = 1
) -> tuple[torch.Tensor, int]:
    """A random tree (bipartite: no closed walk of odd length) plus isolated nodes."""
    gen = torch.Generator().manual_seed(seed)
    live = num_entities - isolated
    child = torch.arange(1, live)
    parent = (torch.rand(live - 1, generator=gen) * child).long()
    train = torch.stack([parent, torch.zeros_like(child), child], dim=1)
    return train, num_entities


def nx_graph(train: torch.Tensor, num_entities: int) -> nx.Graph:
    g = nx.Graph()
    g.add_nodes_from(range(num_entities))
    g.add_edges_from((int(h), int(t)) for h, _, t in train.tolist() if h != t)
    return g


def bfs_sets(train: torch.Tensor, num_entities: int, k: int) -> list[set[int]]:
    g = nx_graph(train, num_entities)
    return [
        set(nx.single_source_shortest_path_length(g, a, cutoff=k)) - {a}
        for a in range(num_entities)
    ]


def read_split_triples(folder: Path) -> tuple[torch.Tensor, int]:
    """Training triples of a TSV dataset with ids over train+valid+test."""
    kg = load_dataset(folder, cache=False)
    return kg.train, kg.num_entities


# ---------------------------------------------------------------------------- graph


def test_training_graph_is_undirected_simple_relation_blind() -> None:
    train, n = random_kg()
    g = training_graph(train, n)
    src, dst = (x.tolist() for x in g.edges())
    edges = set(zip(src, dst, strict=True))
    assert g.num_nodes() == n
    assert len(edges) == len(src), "parallel edges must be merged"
    assert all(u != v for u, v in edges), "self loops must be dropped"
    assert all((v, u) in edges for u, v in edges), "both directions must be present"
    expected = {(h, t) for h, _, t in train.tolist() if h != t}
    expected |= {(t, h) for h, t in expected}
    assert edges == expected


def test_every_step_of_a_walk_trace_is_an_edge() -> None:
    train, n = random_kg()
    g = training_graph(train, n)
    src, dst = g.edges()
    edges = set(zip(src.tolist(), dst.tolist(), strict=True))
    dgl.seed(3)
    seeds = torch.arange(n).repeat_interleave(20)
    trace, _ = dgl.sampling.random_walk(g, seeds, length=4)
    assert torch.equal(trace[:, 0], seeds)
    steps = 0
    for row in trace.tolist():
        for u, v in zip(row[:-1], row[1:], strict=True):
            if v == -1:  # a dead walk stays dead
                assert all(x == -1 for x in row[row.index(-1) :])
                break
            assert (u, v) in edges
            steps += 1
    assert steps > 0.8 * seeds.numel() * 4
    isolated = torch.tensor([a for a in range(n) if g.in_degrees(a) == 0])
    assert (trace[torch.isin(seeds, isolated), 1:] == -1).all()


# ---------------------------------------------------------------------------- exact


@pytest.mark.parametrize("k", [1, 2, 3])
def test_exact_khop_equals_bfs(k: int) -> None:
    train, n = random_kg()
    nb = exact_khop(train, n, k=k)
    assert nb.indptr.dtype == torch.int64 and nb.indices.dtype == torch.int32
    assert nb.counts is None and nb.walks == 0 and nb.k == k
    for a, expected in enumerate(bfs_sets(train, n, k)):
        row = nb.row(a)
        assert row.tolist() == sorted(expected), f"anchor {a}"


def test_exact_khop_row_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    train, n = random_kg(num_entities=80, num_triples=120)
    whole = exact_khop(train, n, k=2)
    monkeypatch.setattr(nbmod, "_EXACT_ROW_BLOCK", 7)
    blocked = exact_khop(train, n, k=2)
    assert torch.equal(whole.indptr, blocked.indptr) and torch.equal(whole.indices, blocked.indices)


# ---------------------------------------------------------------------------- walks


def test_walk_csr_equals_bruteforce_count_of_endpoints() -> None:
    train, n = random_kg()
    walks, k, seed = 30, 3, 11
    nb = build_neighbourhood(train, n, k=k, walks=walks, seed=seed)
    # the same walks by hand: one chunk, same seed
    g = training_graph(train, n)
    dgl.seed(seed)
    seeds = torch.arange(n).repeat_interleave(walks)
    trace, _ = dgl.sampling.random_walk(g, seeds, length=k)
    end = trace[:, -1]
    survive = (end >= 0) & (end != seeds)
    reference = Counter(zip(seeds[survive].tolist(), end[survive].tolist(), strict=True))
    got = {}
    for a in range(n):
        lo, hi = int(nb.indptr[a]), int(nb.indptr[a + 1])
        cols = nb.indices[lo:hi].tolist()
        assert cols == sorted(set(cols)) and a not in cols
        got.update({(a, c): int(w) for c, w in zip(cols, nb.counts[lo:hi].tolist(), strict=True)})
    assert got == dict(reference)
    assert int(nb.counts.sum()) == int(survive.sum())


def test_walk_counts_sum_to_surviving_walks_on_a_tree_chunked() -> None:
    # On a tree no walk of odd length returns to its anchor, so every walk from a
    # non-isolated anchor survives: the row sums are exactly `walks`.
    train, n = random_tree()
    walks = 25
    nb = random_walk_neighbourhood(
        training_graph(train, n), k=3, walks=walks, seed=0, chunk_walks=100
    )
    rows = torch.repeat_interleave(torch.arange(n), nb.degrees())
    sums = torch.zeros(n, dtype=torch.int64).index_add_(0, rows, nb.counts.long())
    live = torch.zeros(n, dtype=torch.bool)
    live[train[:, [0, 2]].flatten()] = True
    assert torch.equal(sums, torch.where(live, walks, 0))
    assert int(nb.counts.sum()) == walks * int(live.sum())


@pytest.mark.parametrize("k", [1, 2, 3])
def test_walk_endpoints_lie_within_k_hops(k: int) -> None:
    train, n = random_kg()
    nb = build_neighbourhood(train, n, k=k, walks=50, seed=k, chunk_walks=333)
    for a, expected in enumerate(bfs_sets(train, n, k)):
        assert set(nb.row(a).tolist()) <= expected, f"anchor {a}"
    # with many walks the 1-hop walk set is the whole 1-hop set
    if k == 1:
        assert all(set(nb.row(a).tolist()) == s for a, s in enumerate(bfs_sets(train, n, 1)))


def test_walks_are_deterministic_per_seed() -> None:
    train, n = random_kg()
    a = build_neighbourhood(train, n, k=3, walks=40, seed=5, chunk_walks=500)
    b = build_neighbourhood(train, n, k=3, walks=40, seed=5, chunk_walks=500)
    c = build_neighbourhood(train, n, k=3, walks=40, seed=6, chunk_walks=500)
    assert torch.equal(a.indptr, b.indptr) and torch.equal(a.indices, b.indices)
    assert torch.equal(a.counts, b.counts)
    assert not (torch.equal(a.indptr, c.indptr) and torch.equal(a.counts, c.counts))


def test_isolated_entities_have_no_candidates() -> None:
    train, n = random_kg(isolated=5)
    for walks in (0, 20):
        nb = build_neighbourhood(train, n, k=2, walks=walks)
        assert (nb.degrees()[-5:] == 0).all()


def test_neighbourhood_to_device(device: torch.device) -> None:
    train, n = random_kg()
    nb = build_neighbourhood(train, n, k=2, walks=10).to(device)
    assert nb.indptr.device.type == device.type and nb.counts.device.type == device.type
    assert nb.nbytes == (n + 1) * 8 + nb.nnz * 8


def test_bad_arguments_raise() -> None:
    train, n = random_kg()
    with pytest.raises(ValueError):
        build_neighbourhood(train, n, k=0, walks=10)
    with pytest.raises(ValueError):
        build_neighbourhood(train, n, k=2, walks=-1)
    with pytest.raises(ValueError):
        build_neighbourhood(train, 10, k=2, walks=1)  # ids beyond num_entities


# ---------------------------------------------------------------------------- cache


def test_cache_round_trip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    train, n = random_kg()
    first = build_neighbourhood(train, n, k=3, walks=20, seed=1, cache_dir=tmp_path)
    files = list(tmp_path.iterdir())
    assert len(files) == 1 and files[0].suffix == ".pt"

    def boom(*args: object, **kwargs: object) -> Neighbourhood:
        raise AssertionError("cache was not used")

    monkeypatch.setattr(nbmod, "random_walk_neighbourhood", boom)
    again = build_neighbourhood(train, n, k=3, walks=20, seed=1, cache_dir=tmp_path)
    assert torch.equal(first.indptr, again.indptr) and torch.equal(first.indices, again.indices)
    assert torch.equal(first.counts, again.counts)
    with pytest.raises(AssertionError, match="cache was not used"):  # another seed is another key
        build_neighbourhood(train, n, k=3, walks=20, seed=2, cache_dir=tmp_path)
    exact = build_neighbourhood(train, n, k=2, walks=0, cache_dir=tmp_path)
    assert torch.equal(
        build_neighbourhood(train, n, k=2, walks=0, cache_dir=tmp_path).indices, exact.indices
    )


def test_cache_key_covers_content_and_parameters() -> None:
    train, n = random_kg()
    base = neighbourhood_cache_key(train, n, k=3, walks=10, seed=0)
    assert base == neighbourhood_cache_key(train.clone(), n, k=3, walks=10, seed=0)
    changed = train.clone()
    changed[0, 2] = (changed[0, 2] + 1) % n
    others = [
        neighbourhood_cache_key(changed, n, k=3, walks=10, seed=0),
        neighbourhood_cache_key(train, n + 1, k=3, walks=10, seed=0),
        neighbourhood_cache_key(train, n, k=2, walks=10, seed=0),
        neighbourhood_cache_key(train, n, k=3, walks=11, seed=0),
        neighbourhood_cache_key(train, n, k=3, walks=10, seed=1),
    ]
    assert len({base, *others}) == 6


@pytest.mark.parametrize("garbage", [b"", b"not a torch file", b"PK\x03\x04broken zip"])
def test_corrupt_cache_is_rebuilt_with_a_warning(tmp_path: Path, garbage: bytes) -> None:
    train, n = random_kg()
    good = build_neighbourhood(train, n, k=2, walks=15, seed=0, cache_dir=tmp_path)
    (path,) = tmp_path.iterdir()
    path.write_bytes(garbage)
    with pytest.warns(RuntimeWarning, match="rebuilding"):
        rebuilt = build_neighbourhood(train, n, k=2, walks=15, seed=0, cache_dir=tmp_path)
    assert torch.equal(rebuilt.counts, good.counts) and torch.equal(rebuilt.indices, good.indices)
    assert list(tmp_path.iterdir()) == [path]  # rewritten, no temporary left behind
    reloaded = torch.load(path, weights_only=True)
    assert torch.equal(Neighbourhood.from_state_dict(reloaded).counts, good.counts)


def test_cache_with_wrong_content_is_rebuilt(tmp_path: Path) -> None:
    train, n = random_kg()
    good = build_neighbourhood(train, n, k=2, walks=15, seed=0, cache_dir=tmp_path)
    (path,) = tmp_path.iterdir()
    state = good.state_dict()
    state["indptr"] = state["indptr"][:-1]  # truncated CSR
    torch.save(state, path)
    with pytest.warns(RuntimeWarning):
        rebuilt = build_neighbourhood(train, n, k=2, walks=15, seed=0, cache_dir=tmp_path)
    assert torch.equal(rebuilt.indptr, good.indptr)


# ---------------------------------------------------------------------------- real data


@pytest.mark.slow
def test_wn18rr_walk_neighbourhood_is_compact_and_valid(real_data_dir: Path) -> None:
    train, n = read_split_triples(real_data_dir / "wn18rr")
    walks = 100
    start = time.perf_counter()
    nb = build_neighbourhood(train, n, k=3, walks=walks, seed=0)
    elapsed = time.perf_counter() - start
    assert elapsed < 30
    assert nb.num_entities == n == 40943
    assert nb.indptr.dtype == torch.int64 and nb.indices.dtype == torch.int32
    assert nb.counts.dtype == torch.int32
    rows = torch.repeat_interleave(torch.arange(n), nb.degrees())
    assert (nb.indices.long() != rows).all()
    sums = torch.zeros(n, dtype=torch.int64).index_add_(0, rows, nb.counts.long())
    assert (sums <= walks).all() and int(sums.sum()) > 0.95 * walks * n
    # every endpoint of a sample of anchors is within 3 hops
    g = nx_graph(train, n)
    for a in torch.randperm(n, generator=torch.Generator().manual_seed(0))[:20].tolist():
        assert set(nb.row(a).tolist()) <= set(nx.single_source_shortest_path_length(g, a, cutoff=3))
