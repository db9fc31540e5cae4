"""Graph encoders against hand-written references: R-GCN and CompGCN layers computed with
explicit loops over the edges of tiny graphs, the cheaper basis order against DGL's own
``RelGraphConv``, whole-graph and sampled blocks, and gradients through the step's table."""

from __future__ import annotations

import pytest
import torch

from emu_dgl._dgl import dgl
from emu_dgl.encoders import ENCODERS, CompGCNEncoder, RGCNEncoder
from emu_dgl.encoders.compgcn import CompGCNLayer, circular_correlation
from emu_dgl.encoders.graph import ETYPE, NORM, full_blocks, message_graph, sampled_blocks
from emu_dgl.encoders.rgcn import RelationalConv

#: A 5-entity graph, 2 relations: 4 message types (each relation and its inverse).
TRIPLES = torch.tensor([[0, 0, 1], [1, 1, 2], [2, 0, 3], [3, 1, 4], [4, 0, 0], [0, 1, 2]])
R = 2


def edges_of(triples: torch.Tensor) -> list[tuple[int, int, int]]:
    """``(source, type, destination)`` of every message, in plain Python."""
    out = []
    for h, r, t in triples.tolist():
        out += [(h, r, t), (t, r + R, h)]
    return out


def loop_reference(x, edges, message, own) -> torch.Tensor:
    """``own(v) + sum over in-edges (u, r, v) of message(u, r) / in-degree(v)``, node by node."""
    rows = []
    for v in range(x.shape[0]):
        incoming = [(u, r) for u, r, w in edges if w == v]
        total = own(v)
        for u, r in incoming:
            total = total + message(u, r) / len(incoming)
        rows.append(total)
    return torch.stack(rows)


def test_message_graph_holds_every_triple_both_ways_with_mean_norms() -> None:
    graph = message_graph(TRIPLES, 5, R)
    assert ETYPE == dgl.ETYPE
    src, dst = graph.edges()
    got = sorted(zip(src.tolist(), graph.edata[ETYPE].tolist(), dst.tolist(), strict=True))
    assert got == sorted(edges_of(TRIPLES))
    degree = graph.in_degrees().float()
    torch.testing.assert_close(graph.edata[NORM].squeeze(1), 1 / degree[dst])


@pytest.mark.parametrize("decomposition", ["basis", "bdd"])
def test_rgcn_layer_equals_a_loop_over_the_edges(decomposition: str) -> None:
    """``h_v = relu(x_v W_0 + b + sum_{(u, r, v)} x_u W_r / |N(v)|)`` with ``W_r`` built by
    hand from the decomposition's parameters."""
    torch.manual_seed(0)
    layer = RelationalConv(
        6, 6, 2 * R, decomposition=decomposition, bases=3 if decomposition == "bdd" else 2,
        self_loop=True, dropout=0.0, activation=True,
    ).double()  # fmt: skip
    linear = layer.conv.linear_r
    with torch.no_grad():
        layer.conv.h_bias.normal_()
    if decomposition == "basis":  # W_r = sum_b a_rb V_b
        weights = [sum(linear.coeff[r, b] * linear.W[b] for b in range(2)) for r in range(2 * R)]
    else:  # block-diagonal: 3 blocks of 2 x 2
        blocks = linear.W.view(2 * R, 3, 2, 2)
        weights = [torch.block_diag(*blocks[r]) for r in range(2 * R)]
    x = torch.randn(5, 6, dtype=torch.float64)
    expected = loop_reference(
        x,
        edges_of(TRIPLES),
        lambda u, r: x[u] @ weights[r],
        lambda v: x[v] @ layer.conv.loop_weight + layer.conv.h_bias,
    ).relu()
    got = layer(message_graph(TRIPLES, 5, R), x)
    torch.testing.assert_close(got, expected)


def test_basis_order_equals_relgraphconvs_own_forward_and_gradients() -> None:
    """The per-basis sums give RelGraphConv's values and gradients (same parameters)."""
    torch.manual_seed(1)
    triples = torch.stack(
        [torch.randint(0, 30, (120,)), torch.randint(0, 5, (120,)), torch.randint(0, 30, (120,))],
        dim=1,
    )
    graph = message_graph(triples, 30, 5)
    layer = RelationalConv(
        8, 4, 10, decomposition="basis", bases=3, self_loop=True, dropout=0.0, activation=False
    ).double()
    x = torch.randn(30, 8, dtype=torch.float64, requires_grad=True)
    ours = layer(graph, x)
    theirs = layer.conv(graph, x, graph.edata[ETYPE], graph.edata[NORM].double())
    torch.testing.assert_close(ours, theirs)
    weight = torch.randn_like(ours)
    params = [x, *layer.parameters()]
    grads_ours = torch.autograd.grad((ours * weight).sum(), params)
    grads_theirs = torch.autograd.grad((theirs * weight).sum(), params)
    for a, b in zip(grads_ours, grads_theirs, strict=True):
        torch.testing.assert_close(a, b)


def test_circular_correlation_is_the_sum_over_shifts() -> None:
    x, z = torch.randn(3, 7, dtype=torch.float64), torch.randn(3, 7, dtype=torch.float64)
    expected = torch.stack(
        [sum(x[:, i] * z[:, (i + k) % 7] for i in range(7)) for k in range(7)], dim=1
    )
    torch.testing.assert_close(circular_correlation(x, z), expected)


@pytest.mark.parametrize("composition", ["sub", "mult", "corr"])
def test_compgcn_layer_equals_a_loop_over_the_edges(composition: str) -> None:
    """``h_v = (W_F sum_forward phi(x_u, z_r) n_e + W_I sum_inverse ... + W_S phi(x_v,
    z_self)) / 3 + b`` and ``z <- W_rel z``, edge by edge."""
    torch.manual_seed(2)
    layer = CompGCNLayer(
        6, 4, 2 * R, composition=composition, dropout=0.0, activation=False
    ).double()
    with torch.no_grad():
        layer.bias.normal_()
    phi = {
        "sub": lambda a, b: a - b,
        "mult": lambda a, b: a * b,
        "corr": lambda a, b: torch.stack([sum(a[i] * b[(i + k) % 6] for i in range(6)) for k in range(6)]),
    }[composition]  # fmt: skip
    x = torch.randn(5, 6, dtype=torch.float64)
    z = torch.randn(2 * R, 6, dtype=torch.float64)

    def message(u: int, r: int) -> torch.Tensor:
        weight = layer.w_forward.weight if r < R else layer.w_inverse.weight
        return weight @ phi(x[u], z[r]) / 3

    expected = loop_reference(
        x,
        edges_of(TRIPLES),
        message,
        lambda v: layer.w_self.weight @ phi(x[v], layer.self_relation[0]) / 3 + layer.bias,
    )
    h, z_next = layer(message_graph(TRIPLES, 5, R), x, z)
    torch.testing.assert_close(h, expected)
    torch.testing.assert_close(z_next, z @ layer.w_relation.weight.T)


def random_graph(seed: int = 3, entities: int = 40, relations: int = 4):
    gen = torch.Generator().manual_seed(seed)
    triples = torch.stack(
        [
            torch.randint(0, entities, (150,), generator=gen),
            torch.randint(0, relations, (150,), generator=gen),
            torch.randint(0, entities, (150,), generator=gen),
        ],
        dim=1,
    )
    return message_graph(triples, entities, relations)


ENCODER_CASES = [
    ("rgcn", {"decomposition": "bdd", "bases": 4}),
    ("rgcn", {"decomposition": "basis", "bases": 3}),
    ("compgcn", {"composition": "corr", "layers": 2}),
]


@pytest.mark.parametrize(("name", "options"), ENCODER_CASES)
def test_sampled_blocks_with_every_neighbour_give_the_whole_graphs_vectors(name, options) -> None:
    graph = random_graph()
    encoder = ENCODERS.build(
        name, in_width=8, out_width=8, num_relations=8, dropout=0.0, **options
    ).double()
    x = torch.randn(40, 8, dtype=torch.float64)
    whole = encoder(full_blocks(graph, encoder.num_layers), x)
    seeds = torch.tensor([0, 5, 17, 33])
    blocks = sampled_blocks(graph, seeds, [-1] * encoder.num_layers)
    assert torch.equal(blocks[-1].dstdata[dgl.NID], seeds)
    part = encoder(blocks, x[blocks[0].srcdata[dgl.NID]])
    torch.testing.assert_close(part, whole[seeds])


def test_sampled_blocks_draw_at_most_the_fanout_and_only_graph_edges() -> None:
    graph = random_graph()
    known = set(zip(*(t.tolist() for t in graph.edges()), strict=True))
    dgl.seed(0)
    blocks = sampled_blocks(graph, torch.tensor([1, 2, 3]), [2, 3])
    for block, fanout in zip(blocks, [2, 3], strict=True):
        assert int(block.in_degrees().max()) <= fanout
        src, dst = block.edges()
        src_ids, dst_ids = block.srcdata[dgl.NID][src], block.dstdata[dgl.NID][dst]
        assert set(zip(src_ids.tolist(), dst_ids.tolist(), strict=True)) <= known
        # a sampled block averages what it drew
        torch.testing.assert_close(
            block.edata[NORM].squeeze(1), 1 / block.in_degrees().float()[dst]
        )


def test_encoder_widths_run_from_the_table_to_the_decoder() -> None:
    rgcn = RGCNEncoder(in_width=10, out_width=6, num_relations=8, layers=3, bases=2)
    compgcn = CompGCNEncoder(in_width=10, out_width=6, num_relations=8, layers=2)
    graph = random_graph()
    x = torch.randn(40, 10)
    for encoder in (rgcn, compgcn):
        assert encoder(full_blocks(graph, encoder.num_layers), x).shape == (40, 6)
