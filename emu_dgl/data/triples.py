"""Triples as NumPy arrays: the split names, one int64 key per triple, duplicate removal.

The bottom of :mod:`emu_dgl.data`: the graph class, the file readers and the networkx
conversion all build on these, and this module imports none of them.
"""

from __future__ import annotations

import numpy as np

__all__ = ["SPLIT_NAMES", "drop_duplicate_triples", "triple_keys"]

#: The splits of every knowledge graph, in this order.
SPLIT_NAMES: tuple[str, str, str] = ("train", "valid", "test")


def triple_keys(triples: np.ndarray, num_entities: int, num_relations: int) -> np.ndarray:
    """One int64 per triple, ``(h * R + r) * E + t``: equal keys <=> equal triples."""
    if num_entities * num_entities * num_relations >= 2**63:
        raise ValueError("too many entities/relations for int64 triple keys")
    triples = triples.astype(np.int64, copy=False)
    return (triples[:, 0] * num_relations + triples[:, 1]) * num_entities + triples[:, 2]


def drop_duplicate_triples(
    triples: np.ndarray, num_entities: int, num_relations: int
) -> tuple[np.ndarray, int]:
    """Keep the first copy of every triple, in the original order; return (kept, dropped count)."""
    triples = np.ascontiguousarray(triples, dtype=np.int64).reshape(-1, 3)
    if len(triples) < 2:
        return triples, 0
    _, first = np.unique(triple_keys(triples, num_entities, num_relations), return_index=True)
    if len(first) == len(triples):
        return triples, 0
    first.sort()
    return triples[first], len(triples) - len(first)
