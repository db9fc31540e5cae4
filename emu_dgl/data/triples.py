"""Triples as NumPy arrays: the split names, one int64 key per triple, duplicate removal.

The bottom of :mod:`emu_dgl.data`: the graph class, the file readers and the networkx
conversion all build on these, and this module imports none of them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["SPLIT_NAMES", "drop_duplicate_triples", "hash_sorted_triples", "triple_keys"]

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


#: Rows of the sorted triples hashed at a time (a bounded copy, whatever the split's size).
HASH_ROWS = 1 << 20


def hash_sorted_triples(digest: Any, triples: np.ndarray) -> None:
    """Feed ``digest`` (a ``hashlib`` object) the int64 rows of ``triples`` sorted by
    (head, relation, tail): the bytes of ``triples[np.lexsort((t, r, h))]``, without
    making that sorted copy. The order comes from one int64 key (:func:`triple_keys`)
    where the ids fit (an argsort of one column: a few seconds and one index for 20M
    triples, where the three-key lexsort takes about 30 s), and rows are hashed in
    slices of :data:`HASH_ROWS`. Equal keys are equal rows, so their order is free."""
    triples = np.asarray(triples, dtype=np.int64).reshape(-1, 3)
    if len(triples) == 0:
        return
    entities = int(max(triples[:, 0].max(), triples[:, 2].max())) + 1
    relations = int(triples[:, 1].max()) + 1
    if int(triples.min()) >= 0 and entities * entities * relations < 2**62:
        order = np.argsort(triple_keys(triples, entities, relations))
    else:  # ids too large for one key (or negative): the three-key sort
        order = np.lexsort((triples[:, 2], triples[:, 1], triples[:, 0]))
    for start in range(0, len(order), HASH_ROWS):
        digest.update(np.ascontiguousarray(triples[order[start : start + HASH_ROWS]]))
