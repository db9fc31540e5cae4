"""networkx interop: a knowledge graph as a ``MultiDiGraph`` and back.

``to_networkx(kg)`` gives one node per entity (its name; node attribute ``id``) and one
edge per triple, head to tail, with the attributes ``relation`` (the name) and
``split`` (``train``, ``valid`` or ``test``). ``G.graph`` holds ``name`` and
``relation_names`` (the relation ids), so ``from_networkx(to_networkx(kg))`` has
the same names, ids and triples per split as ``kg``.

``KnowledgeGraph.from_networkx`` reads any directed networkx graph whose edges carry
the relation in an attribute (:func:`networkx_parts` here gives its constructor
arguments); entity ids follow the node order of ``G``, relation ids the order of
``G.graph['relation_names']`` where present, then first appearance.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from emu_dgl.data.triples import SPLIT_NAMES, drop_duplicate_triples
from emu_dgl.errors import DataError

if TYPE_CHECKING:
    import networkx as nx

    from emu_dgl.data.knowledge_graph import KnowledgeGraph

__all__ = ["networkx_parts", "to_networkx"]


def to_networkx(kg: KnowledgeGraph) -> nx.MultiDiGraph:
    import networkx as nx

    graph = nx.MultiDiGraph(name=kg.name, relation_names=list(kg.relation_names))
    graph.add_nodes_from((name, {"id": i}) for i, name in enumerate(kg.entity_names))
    names, relations = kg.entity_names, kg.relation_names
    for split, triples in kg.splits.items():
        graph.add_edges_from(
            (names[h], names[t], {"relation": relations[r], "split": split})
            for h, r, t in triples.tolist()
        )
    return graph


def networkx_parts(
    graph: nx.Graph,
    *,
    relation_key: str | None = "relation",
    split_key: str = "split",
    default_split: str = "train",
    name: str | None = None,
) -> dict[str, Any]:
    """The :class:`KnowledgeGraph` constructor's arguments for a directed networkx graph.

    Each edge ``u -> v`` is the triple ``(u, data[relation_key], v)`` in the split
    ``data[split_key]`` (``default_split`` where absent). With ``relation_key=None``
    every edge has the one relation ``edge``. Node labels become entity names
    (``str(label)``); nodes without edges still get an id.
    """
    if not graph.is_directed():
        raise DataError(
            "from_networkx: the graph is undirected, so its edges have no head and tail; "
            "pass G.to_directed() (both directions) or build an nx.DiGraph / nx.MultiDiGraph"
        )
    if default_split not in SPLIT_NAMES:
        raise DataError(
            f"from_networkx: default_split must be one of {', '.join(SPLIT_NAMES)}, got {default_split!r}"
        )
    entity_names = [str(node) for node in graph.nodes]
    entity_id = {node: i for i, node in enumerate(graph.nodes)}
    if len(set(entity_names)) != len(entity_names):
        raise DataError(
            "from_networkx: two nodes have the same name as text (e.g. 1 and '1'); relabel them"
        )
    relation_names: list[str] = [str(r) for r in graph.graph.get("relation_names", [])]
    relation_id = {r: i for i, r in enumerate(relation_names)}
    rows: dict[str, list[tuple[int, int, int]]] = {split: [] for split in SPLIT_NAMES}
    for u, v, data in graph.edges(data=True):
        if relation_key is None:
            relation = "edge"
        elif relation_key in data:
            relation = str(data[relation_key])
        else:
            found = ", ".join(sorted(map(str, data))) or "none"
            raise DataError(
                f"from_networkx: edge {u!r} -> {v!r} has no attribute '{relation_key}' "
                f"(its attributes: {found}); pass relation_key= the attribute that names the relation"
            )
        split = data.get(split_key, default_split)
        if split not in rows:
            raise DataError(
                f"from_networkx: edge {u!r} -> {v!r} has {split_key}={split!r}; use one of {', '.join(SPLIT_NAMES)}"
            )
        if relation not in relation_id:
            relation_id[relation] = len(relation_names)
            relation_names.append(relation)
        rows[split].append((entity_id[u], relation_id[relation], entity_id[v]))
    splits: dict[str, Any] = {}
    duplicates: dict[str, int] = {}
    for split, triples in rows.items():
        array = np.asarray(triples, dtype=np.int64).reshape(-1, 3)
        splits[split], duplicates[split] = drop_duplicate_triples(
            array, len(entity_names), max(len(relation_names), 1)
        )
    return {
        "name": name if name is not None else str(graph.graph.get("name") or "networkx"),
        "entity_names": entity_names,
        "relation_names": relation_names,
        "duplicates": duplicates,
        **splits,
    }
