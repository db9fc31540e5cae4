"""DGL graphs in and out of a :class:`~emu_dgl.data.knowledge_graph.KnowledgeGraph`.

:func:`dgl_parts` reads a graph as :meth:`KnowledgeGraph.to_dgl` writes it, or in DGL's
homogeneous knowledge-graph format, into the parts of a knowledge graph. Sizes and types
are checked against the graph itself before anything is allocated by an id it holds
(:func:`check_dgl_sizes`): relation ids that are not 1-D integers or exceed what the edges
could use, a ``name`` field that is not the UTF-8 byte table, millions of nodes that no
edge touches. Names travel as ``uint8`` rows of UTF-8 bytes (:func:`names_to_tensor`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from emu_dgl.data.triples import SPLIT_NAMES, drop_duplicate_triples
from emu_dgl.errors import DataError

if TYPE_CHECKING:
    import dgl as dgl_module

NODE_TYPE = "entity"
# DGL's edge-mask names, in the order of SPLIT_NAMES.
MASK_NAMES: tuple[str, str, str] = ("train_mask", "val_mask", "test_mask")
# dgl.data's knowledge-graph datasets also hold these, which leave out the reverse edges.
DGL_KG_EDGE_MASKS: tuple[str, str, str] = ("train_edge_mask", "valid_edge_mask", "test_edge_mask")


def dgl_parts(graph: dgl_module.DGLGraph, *, name: str) -> dict[str, Any]:
    """The keyword arguments of a KnowledgeGraph read from ``graph`` (see
    :meth:`KnowledgeGraph.from_dgl <emu_dgl.data.knowledge_graph.KnowledgeGraph.from_dgl>`)."""
    if len(graph.ntypes) != 1:
        raise DataError(
            f"from_dgl needs a graph with one node type, got {len(graph.ntypes)}: {graph.ntypes}"
        )
    if graph.num_edges() == 0:
        raise DataError("from_dgl: the graph has no edges")
    graph = graph.to(torch.device("cpu"))
    etypes = graph.canonical_etypes
    homogeneous = len(etypes) == 1 and etypes[0][1] == "_E" and "etype" in graph.edata
    check_dgl_sizes(graph, homogeneous)  # before anything grows with the ids it holds
    present = {key for etype in etypes for key in graph.edges[etype].data.keys()}
    if any(key in present for key in DGL_KG_EDGE_MASKS):
        mask_names: tuple[str, ...] | None = DGL_KG_EDGE_MASKS
    elif any(key in present for key in MASK_NAMES):
        mask_names = MASK_NAMES
    else:
        mask_names = None

    relation_ids = _relation_ids(graph) if not homogeneous else None
    src, dst, rel, masks = [], [], [], []
    for k, etype in enumerate(etypes):
        s, d = graph.edges(etype=etype, order="eid")
        data = graph.edges[etype].data
        src.append(s.long())
        dst.append(d.long())
        if homogeneous:
            rel.append(data["etype"].long())
        else:
            assert relation_ids is not None
            rel.append(torch.full_like(s, relation_ids[k], dtype=torch.int64))
        if mask_names is None:
            masks.append(torch.zeros(3, len(s), dtype=torch.bool))
            masks[-1][0] = True
        else:
            masks.append(
                torch.stack(
                    [
                        data[key].bool() if key in data else torch.zeros(len(s), dtype=torch.bool)
                        for key in mask_names
                    ]
                )
            )
    triples = torch.stack([torch.cat(src), torch.cat(rel), torch.cat(dst)], dim=1)
    split_masks = torch.cat(masks, dim=1)

    if homogeneous:
        kept = triples[split_masks.any(dim=0), 1]
        if kept.numel() and int(kept.min()) < 0:
            raise DataError("from_dgl: edata['etype'] holds negative relation ids")
        num_relations = int(kept.max()) + 1 if kept.numel() else 0
        relation_names = [str(r) for r in range(num_relations)]
    else:
        assert relation_ids is not None
        relation_names = [""] * len(etypes)
        for k, etype in enumerate(etypes):
            relation_names[relation_ids[k]] = etype[1]
        num_relations = len(relation_names)

    ntype = graph.ntypes[0]
    node_data = graph.nodes[ntype].data
    if "name" in node_data:
        entity_names = tensor_to_names(node_data["name"])
    else:
        entity_names = [str(i) for i in range(graph.num_nodes(ntype))]

    splits: dict[str, torch.Tensor] = {}
    duplicates: dict[str, int] = {}
    for i, split in enumerate(SPLIT_NAMES):
        array, duplicates[split] = drop_duplicate_triples(
            triples[split_masks[i]].numpy(), len(entity_names), max(num_relations, 1)
        )
        splits[split] = torch.from_numpy(array)
    return {
        "name": name,
        "entity_names": entity_names,
        "relation_names": relation_names,
        "duplicates": duplicates,
        **splits,
    }


def _relation_ids(graph: dgl_module.DGLGraph) -> list[int]:
    """Relation id of each canonical edge type: from a constant ``edata['etype']`` where
    every edge type that has edges carries a distinct one, else DGL's edge-type order."""
    etypes = graph.canonical_etypes
    found: list[int | None] = []
    for etype in etypes:
        data = graph.edges[etype].data
        values = data["etype"] if "etype" in data else None
        if values is not None and values.numel() and bool((values == values[0]).all()):
            found.append(int(values[0]))
        else:
            found.append(None)
    known = [i for i in found if i is not None]
    if not known or len(set(known)) != len(known) or not all(0 <= i < len(etypes) for i in known):
        return list(range(len(etypes)))
    free = iter(sorted(set(range(len(etypes))) - set(known)))
    return [i if i is not None else next(free) for i in found]


#: Nodes that no edge touches are rows no triple trains or evaluates; past this many (and
#: more than the nodes edges touch) a graph is refused before it is named.
MAX_ISOLATED_NODES = 1_000_000


def check_dgl_sizes(graph: dgl_module.DGLGraph, homogeneous: bool) -> None:
    """One-line errors for what ``from_dgl`` would otherwise truncate, ignore, or allocate by:
    relation ids that are not 1-D integers or exceed what the edges could use, a ``name``
    node field that is not the UTF-8 byte table :meth:`KnowledgeGraph.to_dgl` writes, and
    millions of nodes no edge touches. Costs O(edges), never O(largest id)."""
    edges = graph.num_edges()
    for etype in graph.canonical_etypes:
        values = graph.edges[etype].data.get("etype")
        if values is None:
            continue
        if values.dim() != 1:
            raise DataError(
                f"from_dgl: edata['etype'] of {etype[1]!r} has shape {tuple(values.shape)}; it "
                "must hold one integer relation id per edge"
            )
        if values.dtype.is_floating_point or values.dtype.is_complex or values.dtype == torch.bool:
            raise DataError(
                f"from_dgl: edata['etype'] of {etype[1]!r} is {values.dtype}; relation ids must be "
                "integers (e.g. g.edata['etype'] = g.edata['etype'].long() if they are whole numbers)"
            )
        if homogeneous and values.numel():
            limit = max(edges, 1 << 16)
            top = int(values.max())
            if top >= limit:
                raise DataError(
                    f"from_dgl: edata['etype'] holds relation id {top:,}; {edges:,} edges use at "
                    f"most {edges:,} relations, and ids from {limit:,} on are refused: number "
                    "the relations 0..R-1"
                )
    ntype = graph.ntypes[0]
    nodes = graph.num_nodes(ntype)
    names = graph.nodes[ntype].data.get("name")
    if names is not None and (names.dtype != torch.uint8 or names.dim() != 2):
        raise DataError(
            f"from_dgl: ndata['name'] is {names.dtype} of shape {tuple(names.shape)}; entity names "
            "are uint8 rows of UTF-8 bytes (names_to_tensor), or delete the field to name "
            "entities by id"
        )
    if nodes > MAX_ISOLATED_NODES:
        ends = [torch.cat(graph.edges(etype=e)) for e in graph.canonical_etypes]
        touched = int(torch.unique(torch.cat(ends)).numel())
        if nodes - touched > max(MAX_ISOLATED_NODES, touched):
            raise DataError(
                f"from_dgl: the graph has {nodes:,} nodes but its edges touch only {touched:,}; "
                "the others would be embedding rows that no triple trains or evaluates: keep "
                "the nodes the edges use (dgl.compact_graphs(g))"
            )


def names_to_tensor(names: Sequence[str]) -> torch.Tensor:
    """UTF-8 bytes of each name, zero-padded to the longest: uint8 (len(names), max_bytes)."""
    encoded = np.char.encode(np.asarray(names, dtype=str), "utf-8")
    width = max(encoded.dtype.itemsize, 1)
    encoded = encoded.astype(f"S{width}")
    return torch.from_numpy(encoded.view(np.uint8).reshape(len(names), width).copy())


def tensor_to_names(tensor: torch.Tensor) -> list[str]:
    """Inverse of :func:`names_to_tensor` (trailing zero bytes are padding)."""
    array = np.ascontiguousarray(tensor.cpu().numpy(), dtype=np.uint8)
    if array.shape[0] == 0:
        return []
    if array.shape[1] == 0:
        return [""] * array.shape[0]
    rows = array.view(f"S{array.shape[1]}").ravel()
    try:
        return np.char.decode(rows, "utf-8").tolist()
    except UnicodeDecodeError:
        for row, raw in enumerate(rows.tolist()):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(
                    f"entity name {row} is not UTF-8 (byte 0x{raw[exc.start]:02x} at {exc.start}); "
                    "names are stored as UTF-8 bytes (names_to_tensor)"
                ) from None
        raise  # pragma: no cover - numpy and Python disagree
