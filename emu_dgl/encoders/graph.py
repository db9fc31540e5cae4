"""The graph a graph encoder passes messages over, whole or as sampled blocks.

:func:`message_graph` turns the training triples into one DGL graph (see
:mod:`emu_dgl.encoders.base` for its layout); :func:`full_blocks` repeats it once per
layer; :func:`sampled_blocks` draws DGL message-flow graphs around a set of entities with
DGL's neighbour sampler.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from emu_dgl.errors import ConfigError

if TYPE_CHECKING:
    from dgl import DGLGraph

__all__ = ["ETYPE", "NORM", "full_blocks", "message_graph", "sampled_blocks", "set_norm"]

#: Edge data key of the per-edge normaliser ``[E, 1]``.
NORM = "norm"
#: Edge data key of the edge types (``dgl.ETYPE``; DGL is imported on first use only).
ETYPE = "_TYPE"


def message_graph(train: Tensor, num_entities: int, num_relations: int) -> DGLGraph:
    """One node per entity; each training triple ``(h, r, t)`` as an edge ``h -> t`` of type
    ``r`` and an edge ``t -> h`` of type ``r + R`` (``R = num_relations``). Edges are sorted
    by destination, then type; ``edata[dgl.ETYPE]`` holds the types and ``edata["norm"]`` one
    over the destination's in-degree."""
    from emu_dgl._dgl import dgl

    train = train.long()
    src = torch.cat([train[:, 0], train[:, 2]])
    dst = torch.cat([train[:, 2], train[:, 0]])
    etype = torch.cat([train[:, 1], train[:, 1] + num_relations])
    # destination-major order: each node's messages are contiguous (a cheap sum per node)
    order = torch.argsort(dst * (2 * num_relations) + etype, stable=True)
    graph = dgl.graph((src[order], dst[order]), num_nodes=num_entities)
    graph.edata[ETYPE] = etype[order]
    set_norm(graph)
    return graph


def set_norm(graph: DGLGraph) -> DGLGraph:
    """``edata["norm"] = 1 / in-degree`` of each edge's destination (in this graph or
    block: a sampled block averages the messages it drew)."""
    _, dst = graph.edges()
    degree = graph.in_degrees().clamp_min(1).to(torch.float32)
    graph.edata[NORM] = degree.reciprocal().index_select(0, dst.long()).unsqueeze(1)
    return graph


def full_blocks(graph: DGLGraph, layers: int) -> list[DGLGraph]:
    """The whole graph once per layer (what ``model.encoder_mode: full`` passes over)."""
    return [graph] * layers


def sampled_blocks(graph: DGLGraph, seeds: Tensor, fanouts: Sequence[int]) -> list[DGLGraph]:
    """DGL's neighbour sampler around ``seeds`` (distinct node ids): ``fanouts[i]``
    in-neighbours per node for layer ``i`` (bottom first; ``-1``: all of them), as message
    flow graphs; ``blocks[-1]``'s destination nodes are ``seeds`` in their order and
    ``blocks[0].srcdata[dgl.NID]`` the entities whose table rows the encoder reads. Draws
    from DGL's generator (seed it with ``dgl.seed``). Host-side work: not capturable."""
    if any(f == 0 or f < -1 for f in fanouts):
        raise ConfigError(
            f"model.encoder_fanouts: each entry is a positive number of neighbours or -1 "
            f"(all), got {list(fanouts)}"
        )
    from emu_dgl._dgl import dgl

    if all(f == -1 for f in fanouts):
        sampler = dgl.dataloading.MultiLayerFullNeighborSampler(len(fanouts))
    else:
        sampler = dgl.dataloading.NeighborSampler(list(fanouts))
    _, _, blocks = sampler.sample_blocks(graph, seeds)
    return [set_norm(block) for block in blocks]
