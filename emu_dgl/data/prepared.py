"""A prepared graph: ids, names and the filter indexes, parsed once and mapped by every process.

:func:`parse_directory` reads each split file once (hashing the bytes it parses, see
:mod:`emu_dgl.data.parse`) and builds the graph with the indexes training and evaluation
search:

* ``filter_keys``: the sorted keys of the training triples (the training sampler's
  false-negative filter, :class:`~emu_dgl.sampling.KnownTriples`, and with
  ``heldout_tail``, the valid and test triples' keys, the filter of ``(h, r, ?)`` queries
  in filtered ranking);
* ``answers_head``: the sorted keys of every known triple as ``(?, r, t)`` queries see
  them (:func:`emu_dgl.data.triples.answer_keys`);
* the sha256 of each split's sorted triples and the graph's fingerprint.

:func:`save_prepared` writes all of it as one store file (:mod:`emu_dgl.data.store`);
:func:`load_prepared` maps it back. The triples are stored as ``[3, N]`` columns (the
trainer reads a batch column by column), the names as one blob each. A process that
loads a cached graph maps these arrays: its pages are shared with every other process
that loaded the same file, and nothing is copied or re-sorted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from emu_dgl.data.knowledge_graph import KnowledgeGraph
from emu_dgl.data.names import Names, names_blob
from emu_dgl.data.triples import SPLIT_NAMES
from emu_dgl.errors import DataError

__all__ = ["KIND", "load_prepared", "parse_directory", "save_prepared"]

KIND = "knowledge-graph"
_INDEXES = ("filter_keys", "heldout_tail", "answers_head")


def _dedupe(columns: np.ndarray, num_entities: int, num_relations: int) -> tuple[np.ndarray, int]:
    """``[3, N]`` columns without repeated triples (the first copy kept, order unchanged)."""
    if columns.shape[1] < 2:
        return columns, 0
    keys = (columns[0] * num_relations + columns[1]) * num_entities + columns[2]
    ordered = np.sort(keys)
    if not (ordered[1:] == ordered[:-1]).any():  # the common case: no copies
        return columns, 0
    first = np.unique(keys, return_index=True)[1]
    first.sort()
    return np.ascontiguousarray(columns[:, first]), columns.shape[1] - len(first)


def parse_directory(paths: dict[str, Path], *, name: str) -> tuple[KnowledgeGraph, dict[str, str]]:
    """The graph of three split files and the sha256 of each file's bytes as parsed."""
    from emu_dgl.data.io import read_split_bytes
    from emu_dgl.data.parse import label_splits, parse_split

    parsed = [parse_split(paths[split], *read_split_bytes(paths[split])) for split in SPLIT_NAMES]
    ids, entities, relations = label_splits(parsed)
    num_entities, num_relations = len(entities), len(relations)
    if num_entities * num_entities * num_relations >= 2**63:
        raise DataError(
            f"{name}: {num_entities} entities and {num_relations} relations are too many for "
            "int64 triple keys"
        )
    splits, duplicates = {}, {}
    for split, columns in zip(SPLIT_NAMES, ids, strict=True):
        columns, duplicates[split] = _dedupe(columns, num_entities, num_relations)
        splits[split] = torch.from_numpy(columns).t()
    kg = KnowledgeGraph._trusted(
        name=name,
        entity_names=entities,
        relation_names=relations,
        splits=splits,
        duplicates=duplicates,
        index={},
    )
    return kg, {split: p.sha256 for split, p in zip(SPLIT_NAMES, parsed, strict=True)}


def _columns(triples: torch.Tensor) -> np.ndarray:
    """``[3, N]`` contiguous int64 columns of ``[N, 3]`` triples (no copy for a column view)."""
    return np.ascontiguousarray(triples.t().numpy(), dtype=np.int64)


def save_prepared(kg: KnowledgeGraph, path: Path, *, key: str) -> None:
    """Write ``kg`` with its indexes (built here if missing) to the store ``path``."""
    from emu_dgl.data.store import write_store

    fingerprint = kg.fingerprint  # also the sorted train keys and each split's sha256
    entity_blob, entity_offsets = names_blob(kg.entity_names)
    relation_blob, relation_offsets = names_blob(kg.relation_names)
    arrays: dict[str, np.ndarray] = {
        **{split: _columns(kg.splits[split]) for split in SPLIT_NAMES},
        "entity_blob": entity_blob,
        "entity_offsets": entity_offsets,
        "relation_blob": relation_blob,
        "relation_offsets": relation_offsets,
        "filter_keys": kg.filter_keys().numpy(),
        "heldout_tail": kg.answer_keys("tail")[1].numpy(),
        "answers_head": kg.answer_keys("head")[0].numpy(),
    }
    meta = {
        "name": kg.name,
        "counts": [kg.num_entities, kg.num_relations],
        "duplicates": kg.duplicates,
        "fingerprint": fingerprint,
        "sha256": {split: kg.split_sha256(split) for split in SPLIT_NAMES},
    }
    write_store(path, arrays, kind=KIND, key=key, meta=meta, what="dataset cache")


def load_prepared(path: Path, *, key: str | None, name: str | None = None) -> KnowledgeGraph:
    """The graph stored at ``path`` for ``key``, over a private map of the file (raises
    :class:`~emu_dgl.data.store.StoreError` or :class:`~emu_dgl.errors.FileError` when the
    file is not that graph: the caller builds it again)."""
    from emu_dgl.data.store import StoreError, read_store

    meta, arrays = read_store(path, kind=KIND, key=key, what="dataset cache")
    try:
        num_entities, num_relations = (int(n) for n in meta["counts"])
        entities = Names(arrays["entity_blob"], arrays["entity_offsets"])
        relations = Names(arrays["relation_blob"], arrays["relation_offsets"])
        splits = {split: torch.from_numpy(arrays[split]).t() for split in SPLIT_NAMES}
        if (len(entities), len(relations)) != (num_entities, num_relations) or any(
            t.shape[1] != 3 for t in splits.values()
        ):
            raise StoreError("its arrays do not fit its counts")
        index: dict[str, Any] = {name: arrays[name] for name in _INDEXES}
        index["fingerprint"] = str(meta["fingerprint"])
        index.update({f"sha256:{split}": str(h) for split, h in meta["sha256"].items()})
        duplicates = {split: int(n) for split, n in meta["duplicates"].items()}
        stored_name = str(meta["name"])
    except (KeyError, TypeError, ValueError) as exc:
        raise StoreError(f"it is not a prepared graph ({type(exc).__name__}: {exc})") from None
    return KnowledgeGraph._trusted(
        name=name or stored_name,
        entity_names=entities,
        relation_names=relations,
        splits=splits,
        duplicates=duplicates,
        index=index,
    )
