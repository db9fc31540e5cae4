"""Inverse triples (``dataset.inverse_triples``), as PyKEEN's ``create_inverse_triples``.

Every relation ``r`` (id ``i`` of ``R``) gets an inverse ``r_inverse`` (id ``i + R``), and
every training triple ``(h, r, t)`` a partner ``(t, r_inverse, h)``: the model learns
``2R`` relations from twice the training triples. Valid and test keep their triples; a
head query ``(?, r, t)`` is answered as the tail query ``(t, r_inverse, ?)`` (the answer
sets are the same, so filtering is unchanged). The run's data record holds the dataset as
read, so ``evaluate``, ``predict`` and ``export`` rebuild the same relations from it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from emu_dgl.data import KnowledgeGraph
from emu_dgl.typing import Side

__all__ = ["InverseHeads", "model_relations", "relation_names", "scorer", "with_inverse_triples"]

SUFFIX = "_inverse"


def relation_names(kg: KnowledgeGraph) -> list[str]:
    """The relations of ``kg`` followed by their inverses (``r_inverse``, made unique)."""
    taken = set(kg.relation_names)
    inverses = []
    for name in kg.relation_names:
        inverse = name + SUFFIX
        while inverse in taken:
            inverse += "_"
        taken.add(inverse)
        inverses.append(inverse)
    return [*kg.relation_names, *inverses]


def with_inverse_triples(kg: KnowledgeGraph) -> KnowledgeGraph:
    """``kg`` with ``2R`` relations and ``(t, r + R, h)`` added to ``train`` for every
    training triple ``(h, r, t)``; ``valid`` and ``test`` unchanged."""
    flipped = kg.train[:, [2, 1, 0]].clone()
    flipped[:, 1] += kg.num_relations
    return KnowledgeGraph(
        name=kg.name,
        entity_names=kg.entity_names,
        relation_names=relation_names(kg),
        train=torch.cat([kg.train, flipped]),
        valid=kg.valid,
        test=kg.test,
    )


def model_relations(config: Any, num_relations: int) -> int:
    """Relation rows of the model: ``2R`` with inverse triples, else ``R``."""
    return 2 * num_relations if config.dataset.inverse_triples else num_relations


def _inverse_query(rt: Tensor, num_relations: int) -> Tensor:
    """``(r, t)`` rows -> ``(t, r + R)`` rows: the tail query of the inverse relation."""
    return torch.stack([rt[:, 1], rt[:, 0] + num_relations], dim=1)


class InverseHeads:
    """A model trained with inverse triples, scored as PyKEEN scores it: heads of
    ``(?, r, t)`` as tails of ``(t, r_inverse, ?)``; everything else is the model's."""

    def __init__(self, model: Any, num_relations: int) -> None:
        self.model = model
        self.num_relations = num_relations  # R: relations of the dataset, inverses excluded

    def score_t(self, hr: Tensor) -> Tensor:
        return self.model.score_t(hr)

    def score_h(self, rt: Tensor) -> Tensor:
        return self.model.score_t(_inverse_query(rt, self.num_relations))

    def score_candidates(self, query: Tensor, candidates: Tensor, side: Side) -> Tensor:
        if side == "head":
            query, side = _inverse_query(query, self.num_relations), "tail"
        return self.model.score_candidates(query, candidates, side)

    def __getattr__(self, name: str) -> Any:  # eval(), train(), training, num_entities, entity
        return getattr(self.model, name)


def scorer(config: Any, model: Any, num_relations: int) -> Any:
    """What evaluation and prediction score with: the model, or :class:`InverseHeads`."""
    return InverseHeads(model, num_relations) if config.dataset.inverse_triples else model
