"""Triples as NumPy arrays: the split names, one int64 key per triple, duplicate removal,
and the sorted key indexes that filtering and ranking search.

The bottom of :mod:`emu_dgl.data`: the graph class, the file readers and the networkx
conversion all build on these, and this module imports none of them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "SPLIT_NAMES",
    "answer_keys",
    "distinct_sorted",
    "drop_duplicate_triples",
    "hash_key_rows",
    "hash_sorted_triples",
    "sorted_keys",
    "triple_keys",
]

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


# ---------------------------------------------------------------------------- indexes
#: Rows of the sorted triples hashed at a time (a bounded copy, whatever the split's size).
HASH_ROWS = 1 << 20


def sorted_keys(triples: np.ndarray, num_entities: int, num_relations: int) -> np.ndarray:
    """The triples' keys (:func:`triple_keys`), sorted: the triples in (head, relation,
    tail) order, since a key orders triples exactly as that lexicographic order does."""
    keys = triple_keys(triples, num_entities, num_relations)
    keys.sort()
    return keys


def hash_key_rows(
    keys: np.ndarray, num_entities: int, num_relations: int, *digests: object
) -> None:
    """Feed the ``[N, 3]`` int64 rows of sorted ``keys`` to each hashlib ``digest``, in
    slices of :data:`HASH_ROWS` (the bytes of ``np.lexsort``-ordered triples, without
    holding them all). Equal keys are equal rows, so the order of ties is free."""
    for start in range(0, len(keys), HASH_ROWS):
        k = keys[start : start + HASH_ROWS]
        rows = np.empty((len(k), 3), dtype=np.int64)
        rows[:, 0] = k // (num_relations * num_entities)
        rows[:, 1] = k // num_entities % num_relations
        rows[:, 2] = k % num_entities
        for digest in digests:
            digest.update(rows.tobytes())  # type: ignore[attr-defined]


def hash_sorted_triples(digest: Any, triples: np.ndarray) -> None:
    """Feed ``digest`` (a ``hashlib`` object) the int64 rows of ``triples`` sorted by
    (head, relation, tail): the bytes of ``triples[np.lexsort((t, r, h))]``, without
    making that sorted copy. Where the ids fit one int64 key (:func:`triple_keys`) the
    keys are sorted in place and decoded slice by slice (:func:`hash_key_rows`: a few
    seconds for 20M triples, where the three-key lexsort takes about 30 s); other ids
    (huge or negative) take the three-key sort, hashed in slices of :data:`HASH_ROWS`."""
    triples = np.asarray(triples, dtype=np.int64).reshape(-1, 3)
    if len(triples) == 0:
        return
    entities = int(max(triples[:, 0].max(), triples[:, 2].max())) + 1
    relations = int(triples[:, 1].max()) + 1
    if int(triples.min()) >= 0 and entities * entities * relations < 2**62:
        hash_key_rows(sorted_keys(triples, entities, relations), entities, relations, digest)
        return
    order = np.lexsort((triples[:, 2], triples[:, 1], triples[:, 0]))
    for start in range(0, len(order), HASH_ROWS):
        digest.update(np.ascontiguousarray(triples[order[start : start + HASH_ROWS]]))


def answer_keys(
    triples: np.ndarray, num_entities: int, num_relations: int, side: str
) -> np.ndarray:
    """The filter index of one side of filtered ranking: sorted distinct keys
    ``(anchor * R + relation) * E + answer``, anchor the head for ``"tail"`` queries
    (``(h, r, ?)``) and the tail for ``"head"`` queries. The known answers of a query
    ``(a, r)`` are the keys in ``[(a R + r) E, (a R + r + 1) E)``, found by two binary
    searches."""
    triples = np.asarray(triples, dtype=np.int64).reshape(-1, 3)
    flipped = triples[:, ::-1] if side == "head" else triples
    keys = triple_keys(flipped, num_entities, num_relations)
    keys.sort()
    return distinct_sorted(keys)


def distinct_sorted(keys: np.ndarray) -> np.ndarray:
    """Sorted ``keys`` without repeats."""
    if len(keys) < 2 or not (keys[1:] == keys[:-1]).any():
        return keys
    return keys[np.concatenate([[True], keys[1:] != keys[:-1]])]
