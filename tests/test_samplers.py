from __future__ import annotations

from pathlib import Path

import networkx as nx
import pytest
import torch
from scipy.stats import chi2

from emu_dgl._dgl import dgl
from emu_dgl.errors import ConfigError
from emu_dgl.graph import Neighbourhood, build_neighbourhood
from emu_dgl.sampling import (
    SAMPLERS,
    DGLNegativeSampler,
    FilteredSampler,
    KnownTriples,
    NegativeSampler,
    OnTheFlyWalkSampler,
    SANSSampler,
    UniformSampler,
    bernoulli_head_probability,
    build_sampler,
)

E, R = 40, 3


def small_kg(seed: int = 0, isolated: int = 5) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    live = E - isolated
    h = torch.randint(0, live, (70,), generator=gen)
    t = torch.randint(0, live, (70,), generator=gen)
    r = torch.randint(0, R, (70,), generator=gen)
    return torch.stack([h, r, t], dim=1)


def hop_sets(train: torch.Tensor, k: int) -> list[set[int]]:
    g = nx.Graph()
    g.add_nodes_from(range(E))
    g.add_edges_from((h, t) for h, _, t in train.tolist() if h != t)
    return [set(nx.single_source_shortest_path_length(g, a, cutoff=k)) - {a} for a in range(E)]


def generator(device: torch.device, seed: int = 0) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def make(
    name: str, train: torch.Tensor, *, n: int = 16, k: int = 2, walks: int = 50, **kw: object
) -> NegativeSampler:
    # These tests pin the k-hop (restart) semantics; continued walks have their own tests.
    kw.setdefault("walk_mode", "restart")
    return build_sampler(
        name, train=train, num_entities=E, num_negatives=n, k_hop=k, walks=walks, seed=0, **kw
    )


# The contract every sampler keeps (shapes, bounds, devices, determinism, fixed-shape word
# draws, the filter) runs over the registry in tests/test_contracts.py; here are the
# properties of particular samplers.


def test_bad_side_and_unknown_name() -> None:
    train = small_kg()
    with pytest.raises(ValueError):
        make("uniform", train).sample(train, "middle", generator=torch.Generator())  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="uniform"):
        make("sans_exactly", train)
    assert {"uniform", "sans", "sans_online"} <= set(SAMPLERS.names())
    assert isinstance(make("sans", train, walks=-1), OnTheFlyWalkSampler)  # the config's spelling
    assert isinstance(make("sans", train, walks=0), SANSSampler)
    assert isinstance(make("sans", train, filter=True), FilteredSampler)


# ---------------------------------------------------------------------------- distributions


def chi_square(observed: torch.Tensor, expected: torch.Tensor) -> float:
    return float(((observed.double() - expected) ** 2 / expected).sum())


def test_uniform_draws_are_uniform(device: torch.device) -> None:
    sampler = UniformSampler(num_entities=E, num_negatives=500)
    pos = torch.zeros(400, 3, dtype=torch.long, device=device)
    neg = sampler.sample(pos, "tail", generator=generator(device, 1))
    observed = torch.bincount(neg.flatten().cpu(), minlength=E)
    expected = torch.full((E,), neg.numel() / E, dtype=torch.float64)
    assert chi_square(observed, expected) < chi2.ppf(0.9999, E - 1)
    # the test can fail: a skewed draw is far beyond the bound
    skewed = observed.clone()
    skewed[0] += neg.numel() // 100
    assert chi_square(skewed, expected) > chi2.ppf(0.9999, E - 1)


def hand_neighbourhood() -> Neighbourhood:
    # anchor 0 -> {1: 1, 2: 2, 5: 7}; anchor 1 -> {0: 3}; anchor 2 -> {}; anchors 3..9 -> {}
    indptr = torch.tensor([0, 3, 4] + [4] * 8, dtype=torch.int64)
    indices = torch.tensor([1, 2, 5, 0], dtype=torch.int32)
    counts = torch.tensor([1, 2, 7, 3], dtype=torch.int32)
    return Neighbourhood(indptr=indptr, indices=indices, counts=counts, k=3, walks=10)


@pytest.mark.parametrize("weighted", [True, False])
@pytest.mark.parametrize("side", ["head", "tail"])
def test_sans_draws_follow_the_counts(weighted: bool, side: str, device: torch.device) -> None:
    sampler = SANSSampler(hand_neighbourhood(), num_negatives=1000, weighted=weighted)
    pos = torch.zeros(60, 3, dtype=torch.long, device=device)
    pos[:, 0 if side == "tail" else 2] = 0  # anchor 0
    pos[:, 2 if side == "tail" else 0] = 9  # the corrupted side is irrelevant
    neg = sampler.sample(pos, side, generator=generator(device, 2)).cpu()
    observed = torch.bincount(neg.flatten(), minlength=10)
    assert observed[[0, 3, 4, 6, 7, 8, 9]].sum() == 0
    weights = torch.tensor([1.0, 2.0, 7.0]) if weighted else torch.ones(3)
    expected = neg.numel() * (weights / weights.sum()).double()
    stat = chi_square(observed[[1, 2, 5]], expected)
    assert stat < chi2.ppf(0.9999, 2)
    other = torch.ones(3) if weighted else torch.tensor([1.0, 2.0, 7.0])
    wrong = neg.numel() * (other / other.sum()).double()
    assert chi_square(observed[[1, 2, 5]], wrong) > chi2.ppf(0.9999, 2)  # the test can fail


def test_sans_anchor_without_candidates_falls_back_to_uniform(device: torch.device) -> None:
    sampler = SANSSampler(hand_neighbourhood(), num_negatives=1000)
    # anchor 2 has no candidates, anchor 1 has one: 0
    pos = torch.tensor([[2, 0, 7], [1, 0, 7]], device=device).repeat(20, 1)
    neg = sampler.sample(pos, "tail", generator=generator(device, 3)).cpu()
    assert (neg[1::2] == 0).all()
    observed = torch.bincount(neg[0::2].flatten(), minlength=10)
    expected = torch.full((10,), neg[0::2].numel() / 10, dtype=torch.float64)
    assert chi_square(observed, expected) < chi2.ppf(0.9999, 9)


def test_sans_on_a_graph_without_edges_is_uniform(device: torch.device) -> None:
    empty = Neighbourhood(
        indptr=torch.zeros(E + 1, dtype=torch.int64),
        indices=torch.zeros(0, dtype=torch.int32),
        counts=torch.zeros(0, dtype=torch.int32),
        k=2,
        walks=5,
    )
    neg = SANSSampler(empty, num_negatives=200).sample(
        torch.zeros(50, 3, dtype=torch.long, device=device), "head", generator=generator(device)
    )
    assert neg.unique().numel() == E


@pytest.mark.parametrize("mode", ["exact", "walk", "online"])
@pytest.mark.parametrize("side", ["head", "tail"])
@pytest.mark.parametrize("k", [1, 2, 3])
def test_sans_negatives_lie_within_k_hops(
    mode: str, side: str, k: int, device: torch.device
) -> None:
    train = small_kg(seed=k)
    name = "sans_online" if mode == "online" else "sans"
    sampler = make(name, train, n=64, k=k, walks=0 if mode == "exact" else 30, device=device)
    neg = sampler.sample(train.to(device), side, generator=generator(device, k), step=k).cpu()
    hops = hop_sets(train, k)
    anchors = train[:, 0 if side == "tail" else 2].tolist()
    inside = 0
    for anchor, row in zip(anchors, neg.tolist(), strict=True):
        if mode == "online":
            inside += sum(x in hops[anchor] for x in row)  # anchor returns fall back to uniform
        else:
            assert set(row) <= hops[anchor], f"anchor {anchor}"
    if mode == "online":
        # online walks only fall back (uniformly) when they end on their anchor
        assert inside > 0.6 * neg.numel()
        sampler_graph = sampler.graph  # type: ignore[attr-defined]
        assert sampler_graph.num_edges() == 2 * len(
            {frozenset((h, t)) for h, _, t in train.tolist() if h != t}
        )


def test_online_walk_endpoints_are_exactly_k_step_endpoints(device: torch.device) -> None:
    # On a path 0-1-2-...-9 the 1-step endpoints of anchor 4 are {3, 5}, 50/50.
    train = torch.tensor([[i, 0, i + 1] for i in range(9)])
    sampler = OnTheFlyWalkSampler(train=train, num_entities=10, num_negatives=2000, k_hop=1)
    pos = torch.tensor([[4, 0, 5]], device=device)
    neg = sampler.sample(pos, "tail", generator=generator(device)).cpu()
    counts = torch.bincount(neg.flatten(), minlength=10)
    assert counts[3] + counts[5] == 2000
    assert abs(int(counts[3]) - 1000) < 4 * (2000 * 0.25) ** 0.5


def test_online_sampler_resumes_exactly(device: torch.device) -> None:
    train = small_kg()
    sampler = make("sans_online", train, n=32, k=3)
    pos = train.to(device)
    gen = generator(device, 5)
    first = sampler.sample(pos, "tail", generator=gen, step=0)
    state = gen.get_state()
    second = sampler.sample(pos, "tail", generator=gen, step=1)
    dgl.seed(12345)  # anything else touching DGL's generator in between
    resumed = torch.Generator(device=device)
    resumed.set_state(state)
    assert torch.equal(sampler.sample(pos, "tail", generator=resumed, step=1), second)
    assert not torch.equal(first, second)


# ---------------------------------------------------------------------------- filter


def test_known_triples_membership_matches_a_python_set(device: torch.device) -> None:
    train = small_kg()
    known = KnownTriples(train.to(device), num_entities=E, num_relations=R)
    gen = torch.Generator().manual_seed(0)
    queries = torch.cat(
        [
            train[:30],
            torch.stack(
                [
                    torch.randint(0, E, (300,), generator=gen),
                    torch.randint(0, R + 1, (300,), generator=gen),
                    torch.randint(0, E, (300,), generator=gen),
                ],
                1,
            ),
        ]
    )
    got = known.contains(*(queries[:, i].to(device) for i in range(3))).cpu().tolist()
    truth = {tuple(x) for x in train.tolist()}
    assert got == [tuple(q) in truth for q in queries.tolist()]
    assert sum(got) >= 30


# ---------------------------------------------------------------------------- helpers


def test_bernoulli_head_probability_by_hand() -> None:
    # r0: one head with 3 tails (1-to-N): tph = 3, hpt = 1 -> 0.75
    # r1: 2 heads -> one tail (N-to-1): tph = 1, hpt = 2 -> 1/3; r2: no triples -> 0.5
    train = torch.tensor([[0, 0, 1], [0, 0, 2], [0, 0, 3], [4, 1, 5], [6, 1, 5]])
    prob = bernoulli_head_probability(train, 3)
    assert torch.allclose(prob, torch.tensor([0.75, 1 / 3, 0.5]))


def test_build_sampler_uses_the_disk_cache(tmp_path: Path) -> None:
    train = small_kg()
    make("sans", train, walks=20, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.pt"))) == 1
    cached = build_neighbourhood(train, E, k=2, walks=20, seed=0, cache_dir=tmp_path)
    fresh = build_neighbourhood(train, E, k=2, walks=20, seed=0)
    assert torch.equal(cached.counts, fresh.counts)


# ---------------------------------------------------------------------------- DGL adapter


def test_dgl_adapter_homogeneous_graph(device: torch.device) -> None:
    train = small_kg()
    g = dgl.graph((train[:, 0], train[:, 2]), num_nodes=E)
    if device.type != "cpu":
        try:
            g = g.to(device)
        except Exception:  # a CPU-only DGL build
            pytest.skip(f"this DGL build cannot put graphs on {device}")
    g.edata["etype"] = train[:, 1].to(device)
    eids = torch.arange(0, 70, 3, device=device)
    rel = train[eids.cpu(), 1].repeat_interleave(8).tolist()
    hops = hop_sets(train, 2)
    truth = {tuple(x) for x in train.tolist()}

    adapter = DGLNegativeSampler(make("sans", train, n=8, k=2, walks=0))
    src, dst = adapter(g, eids)
    assert src.shape == dst.shape == (len(eids) * 8,) and dst.device.type == device.type
    assert torch.equal(src.cpu(), train[eids.cpu(), 0].repeat_interleave(8))
    for s, d in zip(src.tolist(), dst.tolist(), strict=True):
        assert d in hops[s] or not hops[s]
    assert adapter.step == 1

    filtered = DGLNegativeSampler(make("uniform", train, n=8, filter=True))
    src, dst = filtered(g, eids)
    assert not any(
        (s, r, d) in truth for s, r, d in zip(src.tolist(), rel, dst.tolist(), strict=True)
    )


def test_dgl_adapter_corrupts_heads_tails_both_and_in_turn() -> None:
    """``side``: which end of each edge the negatives replace; the other end is the edge's,
    the SANS negatives lie near that kept end, and no filtered pair is a known triple."""
    train = small_kg()
    g = dgl.graph((train[:, 0], train[:, 2]), num_nodes=E)
    g.edata["etype"] = train[:, 1]
    eids = torch.arange(0, 70, 2)
    heads, tails = train[eids, 0], train[eids, 2]
    rel = train[eids, 1].repeat_interleave(6)
    hops = hop_sets(train, 2)
    truth = {tuple(x) for x in train.tolist()}

    def near(kept: torch.Tensor, drawn: torch.Tensor) -> bool:
        return all(
            d in hops[k] or not hops[k] for k, d in zip(kept.tolist(), drawn.tolist(), strict=True)
        )

    src, dst = DGLNegativeSampler(make("sans", train, n=6, k=2, walks=0), side="head")(g, eids)
    assert torch.equal(dst, tails.repeat_interleave(6)) and near(dst, src)
    assert not torch.equal(src, heads.repeat_interleave(6))

    both = DGLNegativeSampler(make("uniform", train, n=6, filter=True), side="both")
    src, dst = both(g, eids)
    m = len(eids) * 6
    assert src.shape == dst.shape == (2 * m,)
    assert torch.equal(src[:m], heads.repeat_interleave(6))  # tails corrupted first
    assert torch.equal(dst[m:], tails.repeat_interleave(6))  # then heads
    triples = zip(src.tolist(), torch.cat([rel, rel]).tolist(), dst.tolist(), strict=True)
    assert not any(t in truth for t in triples)

    turns = DGLNegativeSampler(make("uniform", train, n=6), side="alternate")
    kept_ends = []
    for _ in range(4):
        src, dst = turns(g, eids)
        kept_ends.append("src" if torch.equal(src, heads.repeat_interleave(6)) else "dst")
        assert src.shape == (m,)
    assert kept_ends == ["src", "dst", "src", "dst"]  # tail, head, tail, head
    with pytest.raises(ValueError, match="side must be"):
        DGLNegativeSampler(make("uniform", train), side="sideways")  # type: ignore[arg-type]


def test_dgl_adapter_heterograph_maps_relations_by_name() -> None:
    train = small_kg()
    names = ["zeta", "alpha", "mid"]  # deliberately not sorted: DGL sorts edge types
    g = dgl.heterograph(
        {
            ("entity", names[r], "entity"): (train[train[:, 1] == r, 0], train[train[:, 1] == r, 2])
            for r in range(R)
        },
        num_nodes_dict={"entity": E},
    )
    seen: list[torch.Tensor] = []

    class Spy(UniformSampler):
        def sample(
            self, pos: torch.Tensor, side: str, *, generator: torch.Generator, step: int = 0
        ) -> torch.Tensor:
            seen.append(pos.clone())
            return super().sample(pos, side, generator=generator, step=step)

    adapter = DGLNegativeSampler(Spy(num_entities=E, num_negatives=4), relation_names=names)
    out = adapter(
        g, {"zeta": torch.tensor([0, 1]), ("entity", "alpha", "entity"): torch.tensor([0])}
    )
    assert set(out) == {("entity", "zeta", "entity"), ("entity", "alpha", "entity")}
    src, dst = out[("entity", "zeta", "entity")]
    assert src.shape == dst.shape == (8,)
    assert [p[0, 1].item() for p in seen] == [0, 1]
    zeta = train[train[:, 1] == 0]
    assert torch.equal(seen[0], zeta[:2])


@pytest.mark.filterwarnings("ignore:Dataloader CPU affinity")
def test_dgl_adapter_in_an_edge_dataloader() -> None:
    train = small_kg()
    g = dgl.graph((train[:, 0], train[:, 2]), num_nodes=E)
    n = 5
    adapter = DGLNegativeSampler(make("sans", train, n=n, k=2, walks=0))
    edge_sampler = dgl.dataloading.as_edge_prediction_sampler(
        dgl.dataloading.MultiLayerFullNeighborSampler(1), negative_sampler=adapter
    )
    loader = dgl.dataloading.DataLoader(
        g, torch.arange(g.num_edges()), edge_sampler, batch_size=16, shuffle=False
    )
    hops = hop_sets(train, 2)
    batches = 0
    for _, pos_graph, neg_graph, _ in loader:
        assert neg_graph.num_edges() == n * pos_graph.num_edges()
        nid = neg_graph.ndata[dgl.NID]
        src, dst = (nid[x] for x in neg_graph.edges())
        for s, d in zip(src.tolist(), dst.tolist(), strict=True):
            assert d in hops[s] or not hops[s]
        batches += 1
    assert batches == (g.num_edges() + 15) // 16
