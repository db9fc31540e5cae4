"""Statistics of a knowledge graph, for ``emu-dgl datasets info``.

Everything is vectorised (bincounts, sorted keys, one sparse connected-components
call); nothing loops over entities or triples in Python.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from emu_dgl.data.knowledge_graph import KnowledgeGraph, triple_keys

__all__ = ["dataset_stats", "warn_unseen_in_train"]


def dataset_stats(kg: KnowledgeGraph, *, top_relations: int = 10) -> dict[str, Any]:
    """A JSON-ready summary.

    Keys: ``name``, ``num_entities``, ``num_relations``, ``num_train``, ``num_valid``,
    ``num_test``, ``duplicates_removed`` (per split), ``also_in_train`` (valid/test
    triples that are train triples too), ``unseen_in_train`` (per valid/test: entities
    and relations that never occur in train, and the triples touching them),
    ``degree`` (train degree of every entity, in + out: min, max, mean, median,
    entities with degree 0), ``components`` (weakly connected components of the
    train graph, relation-blind: count, size of the largest, single-entity components), and
    ``top_relations`` (most frequent relations in train: name, id, count).
    """
    num_entities, num_relations = kg.num_entities, kg.num_relations
    train, valid, test = (t.numpy() for t in (kg.train, kg.valid, kg.test))
    train_keys = np.unique(triple_keys(train, num_entities, num_relations))
    unseen = unseen_in_train(kg)
    also_in_train: dict[str, int] = {}
    for split, triples in (("valid", valid), ("test", test)):
        also_in_train[split] = int(
            np.isin(triple_keys(triples, num_entities, num_relations), train_keys).sum()
        )

    degree = np.bincount(train[:, 0], minlength=num_entities) + np.bincount(
        train[:, 2], minlength=num_entities
    )
    relation_counts = np.bincount(train[:, 1], minlength=num_relations)
    order = np.argsort(-relation_counts, kind="stable")[:top_relations]

    return {
        "name": kg.name,
        "num_entities": num_entities,
        "num_relations": num_relations,
        "num_train": len(train),
        "num_valid": len(valid),
        "num_test": len(test),
        "duplicates_removed": dict(kg.duplicates),
        "also_in_train": also_in_train,
        "unseen_in_train": unseen,
        "degree": {
            "min": int(degree.min()),
            "max": int(degree.max()),
            "mean": round(float(degree.mean()), 3),
            "median": float(np.median(degree)),
            "zero": int((degree == 0).sum()),
        },
        "components": _components(train, num_entities),
        "top_relations": [
            {"name": kg.relation_names[r], "id": int(r), "count": int(relation_counts[r])}
            for r in order
        ],
    }


def unseen_in_train(kg: KnowledgeGraph) -> dict[str, dict[str, int]]:
    """Per valid/test split: its entities and relations that never occur in train, and its
    triples that hold one of them."""
    train = kg.train.numpy()
    seen_entity = np.zeros(kg.num_entities, dtype=bool)
    seen_entity[train[:, 0]] = True
    seen_entity[train[:, 2]] = True
    seen_relation = np.zeros(kg.num_relations, dtype=bool)
    seen_relation[train[:, 1]] = True
    unseen: dict[str, dict[str, int]] = {}
    for split in ("valid", "test"):
        triples = kg.splits[split].numpy()
        entities = np.unique(triples[:, [0, 2]])
        relations = np.unique(triples[:, 1])
        touches = ~(
            seen_entity[triples[:, 0]] & seen_entity[triples[:, 2]] & seen_relation[triples[:, 1]]
        )
        unseen[split] = {
            "entities": int((~seen_entity[entities]).sum()),
            "relations": int((~seen_relation[relations]).sum()),
            "triples": int(touches.sum()),
        }
    return unseen


def warn_unseen_in_train(kg: KnowledgeGraph) -> None:
    """One warning line when valid or test hold entities or relations that train never
    shows: their embeddings keep their initial values, and the triples holding them are
    ranked with those untrained rows (the published WN18RR and FB15k-237 splits have some)."""
    import warnings

    from emu_dgl.errors import EmuDglWarning

    unseen = unseen_in_train(kg)
    if not any(part["triples"] for part in unseen.values()):
        return
    counts = "; ".join(
        f"{split}: {part['entities']:,} entities, {part['relations']:,} relations, "
        f"{part['triples']:,} triples"
        for split, part in unseen.items()
    )
    warnings.warn(
        f"'{kg.name}': valid and test hold entities or relations that never occur in train "
        f"({counts}); those triples are scored with untrained (initial) embeddings "
        f"('emu-dgl datasets info' counts them per split)",
        EmuDglWarning,
        stacklevel=3,
    )


def _components(train: np.ndarray, num_entities: int) -> dict[str, int]:
    """Weakly connected components of the train graph (directions and relations ignored)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    adjacency = coo_matrix(
        (np.ones(len(train), dtype=bool), (train[:, 0], train[:, 2])),
        shape=(num_entities, num_entities),
    ).tocsr()
    count, labels = connected_components(adjacency, directed=True, connection="weak")
    sizes = np.bincount(labels, minlength=count)
    return {"count": int(count), "largest": int(sizes.max()), "singletons": int((sizes == 1).sum())}
