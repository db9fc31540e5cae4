"""OGB's protocol: ranks against the fixed negatives a dataset ships with each query.

ogbl-wikikg2 (and ogbl-biokg) give every valid and test triple ``k`` negative heads and
``k`` negative tails (500 each for wikikg2), drawn once by the dataset's authors and not
filtered. OGB's ``Evaluator`` ranks the true entity's score ``s`` among the negatives'
scores ``x``:

    optimistic  = #{x > s},   pessimistic = #{x >= s},   rank = (optimistic + pessimistic) / 2 + 1

and reports MRR and Hits@1/3/10 of these ranks. :func:`evaluate_given` does exactly that
(plus MR, any Hits@k and AMRI), so its MRR is the number an OGB leaderboard compares;
the ``sampled`` protocol of :mod:`emu_dgl.evaluation.ranking` draws its own filtered
candidates instead and is not.
"""

from __future__ import annotations

import torch
from torch import Tensor

from emu_dgl.evaluation.ranking import HITS_AT, metrics_from_ranks
from emu_dgl.typing import Side

__all__ = ["evaluate_given", "given_rank_table"]


def given_rank_table(positive: Tensor, negatives: Tensor) -> Tensor:
    """[N, 3] float64: OGB's optimistic and pessimistic ranks (each plus one, as emu-dgl
    counts ranks from 1) of ``positive`` [N] among ``negatives`` [N, k], and the ``k + 1``
    candidates of each query."""
    pos = positive[:, None]
    optimistic = (negatives > pos).sum(1).double() + 1.0
    pessimistic = (negatives >= pos).sum(1).double() + 1.0
    candidates = torch.full_like(optimistic, negatives.shape[1] + 1.0)
    return torch.stack([optimistic, pessimistic, candidates], dim=1)


@torch.no_grad()
def _side_table(
    scorer: object, triples: Tensor, negatives: Tensor, side: Side, chunk: int
) -> Tensor:
    out = []
    for start in range(0, len(triples), chunk):
        batch, neg = triples[start : start + chunk], negatives[start : start + chunk]
        query, target = (
            (batch[:, [0, 1]], batch[:, 2]) if side == "tail" else (batch[:, [1, 2]], batch[:, 0])
        )
        # The chunk's queries are scored against the union of their entities in one call,
        # then each row keeps its own columns.
        ids, where = torch.unique(torch.cat([target[:, None], neg], dim=1), return_inverse=True)
        scores = scorer.score_candidates(query, ids, side).float()  # type: ignore[attr-defined]
        picked = scores.gather(1, where)
        out.append(given_rank_table(picked[:, 0], picked[:, 1:]))
    return torch.cat(out) if out else torch.empty(0, 3, dtype=torch.double)


def evaluate_given(
    scorer: object,
    triples: Tensor,
    head_negatives: Tensor,
    tail_negatives: Tensor,
    *,
    hits_at: tuple[int, ...] = HITS_AT,
    chunk: int = 64,
) -> dict[str, object]:
    """Metrics of ``triples`` [N, 3] ranked against the given negatives [N, k] of each side
    (OGB's protocol, see the module doc), in the layout of
    :meth:`~emu_dgl.evaluation.FilteredEvaluator.evaluate`, with ``protocol: "given"``."""
    was_training = getattr(scorer, "training", False)
    if hasattr(scorer, "eval"):
        scorer.eval()  # type: ignore[attr-defined]
    try:
        head = _side_table(scorer, triples, head_negatives.to(triples.device), "head", chunk)
        tail = _side_table(scorer, triples, tail_negatives.to(triples.device), "tail", chunk)
    finally:
        if was_training:
            scorer.train()  # type: ignore[attr-defined]

    def metrics(table: Tensor, column: slice | int = slice(0, 2)) -> dict[str, float]:
        ranks = table[:, column].mean(1) if isinstance(column, slice) else table[:, column]
        return metrics_from_ranks(ranks.cpu(), hits_at=hits_at, candidates=table[:, 2].cpu())

    both = torch.cat([head, tail])
    result: dict[str, object] = dict(metrics(both))
    result["head"], result["tail"] = metrics(head), metrics(tail)
    result["optimistic"], result["pessimistic"] = metrics(both, 0), metrics(both, 1)
    result["num_triples"] = int(len(triples))
    result["protocol"] = "given"
    result["num_negatives"] = int(head_negatives.shape[1])
    return result
