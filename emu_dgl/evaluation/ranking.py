"""Filtered link-prediction ranking, batched on the device.

For a test triple (h, r, t) the tail query (h, r, ?) scores every entity. All other
entities e with (h, r, e) known in train, valid or test are removed from the
competition ("filtered" setting of Bordes et al. 2013). With ``s`` the true tail's
score and the remaining scores ``x_e``:

    optimistic rank  = 1 + #{e : x_e >  s}
    pessimistic rank = 1 + #{e : x_e >= s}          (the true tail itself excluded)
    realistic rank   = (optimistic + pessimistic) / 2

so a model that gives every entity the same score gets the expected rank of a random
ordering, not rank 1. The head query (?, r, t) is symmetric. No Python loop runs over
triples: the known answers of every query are a run of sorted triple keys, found by two
binary searches per query (the index a dataset cache keeps memory-mapped), and each
batch gathers its answers with ``repeat_interleave``.

Besides the realistic rank, :func:`rank_table` gives the optimistic (ties won) and
pessimistic (ties lost) ranks and each query's number of candidates, from which the
adjusted mean rank index (AMRI, :func:`adjusted_mean_rank_index`) follows; Hits@k is
reported for every k of ``hits_at``.

On graphs with millions of entities, scoring every entity for every query is slow;
``protocol="sampled"`` ranks the target against ``num_negatives`` entities per query
and side instead, fixed by a seed: OGB-style (ogbl-wikikg2 ranks each query against
500 entities per side, with the same realistic rank, ``(optimistic + pessimistic) / 2``
counted as OGB's ``Evaluator`` counts it), but not OGB's own candidates: OGB ships a
fixed, unfiltered list of negatives per query with its dataset, while these are
drawn uniformly *without replacement* from the entities that are not known answers
of the query (filtered, like the full protocol), so when ``num_negatives`` reaches
that count the sample is the whole set and the ranks equal the full protocol's
exactly. Otherwise its numbers are not comparable to full-ranking numbers (MRR is
much higher); the metrics say which protocol produced them, and whether every
query's sample was the whole set. The queries of a chunk share one random order of
the entities and each takes its first non-answers from it, so a chunk is scored
against one shared set of rows (see :meth:`FilteredEvaluator.sampled_candidates`):
on WN18RR it costs a fifth of full ranking for DistMult, a twentieth for TransE.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal

import torch
from torch import Tensor

from emu_dgl.errors import ConfigError
from emu_dgl.typing import Side

Protocol = Literal["full", "sampled"]
HITS_AT = (1, 3, 10)
#: Triples per candidate draw of the sampled protocol (fixed, so draws never depend on batch sizes).
SAMPLED_CHUNK = 128


class _AnswerIndex:
    """The known answers of queries ``(anchor, relation)``, from sorted int64 key arrays.

    A known triple is stored as ``(anchor * R + relation) * E + answer`` (anchor the head
    for tail queries, the tail for head queries; see
    :func:`emu_dgl.data.triples.answer_keys`). Sorted, the answers of query ``q = anchor *
    R + relation`` are the keys in ``[q E, (q + 1) E)``: two binary searches find them.
    The union of several arrays may be given (a dataset cache keeps the training keys
    apart from the valid and test ones, and the training sampler's filter shares them).
    """

    def __init__(self, keys: list[Tensor], num_relations: int, num_entities: int) -> None:
        self.parts = keys
        self.keys = keys[0]  # (its device is the index's)
        self.num_relations = num_relations
        self.num_entities = num_entities

    @classmethod
    def from_triples(
        cls, known: Tensor, num_relations: int, side: Side, num_entities: int | None = None
    ) -> _AnswerIndex:
        anchor, answer = (
            (known[:, 0], known[:, 2]) if side == "tail" else (known[:, 2], known[:, 0])
        )
        if num_entities is None:
            num_entities = int(torch.maximum(anchor, answer).max()) + 1 if len(known) else 1
        keys = torch.sort((anchor * num_relations + known[:, 1]) * num_entities + answer).values
        return cls([torch.unique_consecutive(keys)], num_relations, num_entities)

    def lookup(self, anchor: Tensor, relation: Tensor) -> tuple[Tensor, Tensor]:
        """(row, entity) pairs of every known answer of every query in the batch."""
        query = (anchor * self.num_relations + relation) * self.num_entities
        rows_out, answers_out = [], []
        for keys in self.parts:
            start = torch.searchsorted(keys, query)
            count = torch.searchsorted(keys, query + self.num_entities) - start
            rows = torch.repeat_interleave(torch.arange(len(query), device=query.device), count)
            # offset of each answer within its query's run: global position minus run start
            first = torch.cumsum(count, 0) - count
            within = torch.arange(len(rows), device=query.device) - first[rows]
            rows_out.append(rows)
            answers_out.append(keys[start[rows] + within] % self.num_entities)
        if len(self.parts) == 1:
            return rows_out[0], answers_out[0]
        return torch.cat(rows_out), torch.cat(answers_out)


def random_distinct(generator: torch.Generator, n: int, count: int) -> Tensor:
    """``count`` distinct ids of ``range(n)`` in uniformly random order (CPU tensor).

    For ``count`` close to ``n``, a random permutation's prefix. Otherwise uniform ids are
    drawn with replacement and repeats skipped: the first occurrences of an i.i.d.
    uniform sequence, in order, are a uniformly random ordered sample without
    replacement; more ids are drawn until ``count`` distinct ones have been seen.
    """
    if 4 * count >= n:
        return torch.randperm(n, generator=generator)[:count]
    ids = torch.empty(0, dtype=torch.long)
    while True:
        ids = torch.cat([ids, torch.randint(n, (count + count // 2 + 16,), generator=generator)])
        values, where = torch.sort(ids, stable=True)  # stable: each value's first position first
        first = torch.ones_like(values, dtype=torch.bool)
        first[1:] = values[1:] != values[:-1]
        positions = torch.sort(where[first]).values
        if len(positions) >= count:
            return ids[positions[:count]]


#: Columns of a rank table (:meth:`FilteredEvaluator.ranks` with ``table=True``).
OPTIMISTIC, PESSIMISTIC, CANDIDATES = 0, 1, 2


def removed_counts(
    filter_rows: Tensor, filter_cols: Tensor, targets: Tensor, num_columns: int
) -> Tensor:
    """Per row, how many columns leave the competition: the distinct known answers and
    the target (a known answer listed twice, or the target among them, counts once)."""
    rows = torch.arange(len(targets), device=targets.device)
    keys = torch.cat([filter_rows * num_columns + filter_cols, rows * num_columns + targets])
    return torch.bincount(torch.unique(keys) // num_columns, minlength=len(targets))


def rank_table(scores: Tensor, targets: Tensor, filter_rows: Tensor, filter_cols: Tensor) -> Tensor:
    """Filtered ranks of ``targets`` within ``scores`` [B, E] (overwritten in place), as a
    [B, 3] float64 table: optimistic rank, pessimistic rank, and the number of candidates
    (the target and every entity left in the competition).

    With every known answer (the target included) set to -inf, ``sign(x_e - s)`` is +1
    for an entity that beats the target, 0 for a tie and -1 for a worse or removed one.
    With ``S`` the sum of the signs and ``T`` the ties, the ``G`` better entities are
    ``(S + E - T) / 2``, and

        optimistic = 1 + G,   pessimistic = 1 + G + T,   realistic = 1 + G + T / 2

    (the realistic rank is the mean of the other two, ``1 + (S + E) / 2``). One in-place
    pass over the scores in float arithmetic, one more to count the ties (the sums of
    +-1 are exact in float32 below 2^24).
    """
    rows = torch.arange(len(targets), device=scores.device)
    target_score = scores[rows, targets].clone()
    scores[filter_rows, filter_cols] = float("-inf")
    scores[rows, targets] = float("-inf")  # the target is not its own rival
    num_entities = scores.shape[1]
    sum_dtype = torch.float32 if num_entities < 2**24 else torch.float64
    signs = scores.sub_(target_score[:, None]).sign_()
    total = signs.sum(1, dtype=sum_dtype).double()
    ties = (signs == 0).sum(1).double()
    better = (total + num_entities - ties) / 2.0
    removed = removed_counts(filter_rows, filter_cols, targets, num_entities)
    candidates = (num_entities - removed + 1).double()
    return torch.stack([1.0 + better, 1.0 + better + ties, candidates], dim=1)


def realistic_ranks(
    scores: Tensor, targets: Tensor, filter_rows: Tensor, filter_cols: Tensor
) -> Tensor:
    """Filtered realistic ranks (a tie counts half) of ``targets`` within ``scores`` [B, E]
    (overwritten in place): the mean of the optimistic and pessimistic ranks of
    :func:`rank_table`, so a scorer that gives every entity the same score gets the
    expected rank of a random order."""
    table = rank_table(scores, targets, filter_rows, filter_cols)
    return table[:, :2].mean(1)


def adjusted_mean_rank_index(ranks: Tensor, candidates: Tensor) -> float:
    """AMRI (Berrendorf et al. 2020, arXiv:2002.06914): ``1 - (MR - 1) / (E[MR] - 1)``.

    ``E[MR]``, the mean rank a random order would get, is the mean of ``(n_i + 1) / 2``
    over the queries, ``n_i`` the candidates of query ``i`` (its target included). 1 is
    perfect, 0 random (exactly, for realistic ranks of a constant scorer), -1 the worst;
    unlike MR it compares across datasets and filter settings. 0 when every query has a
    single candidate (nothing to rank).
    """
    expected = float(((candidates.double() + 1.0) / 2.0).mean())
    if expected <= 1.0:
        return 0.0
    return 1.0 - (float(ranks.double().mean()) - 1.0) / (expected - 1.0)


def metrics_from_ranks(
    ranks: Tensor, *, hits_at: tuple[int, ...] = HITS_AT, candidates: Tensor | None = None
) -> dict[str, float]:
    """MRR, MR, Hits@k for every k of ``hits_at``, and with ``candidates`` (per query) the
    adjusted mean rank index (:func:`adjusted_mean_rank_index`)."""
    ranks = ranks.double()
    out = {"mrr": float((1.0 / ranks).mean()), "mr": float(ranks.mean())}
    for k in hits_at:
        out[f"hits@{k}"] = float((ranks <= k).double().mean())
    if candidates is not None:
        out["amri"] = adjusted_mean_rank_index(ranks, candidates)
    return out


def per_relation_metrics(
    head: Tensor,
    tail: Tensor,
    relations: Tensor,
    num_relations: int,
    relation_names: list[str] | None = None,
    *,
    hits_at: tuple[int, ...] = HITS_AT,
) -> dict[str, dict[str, object]]:
    """MRR / MR / Hits@k of each relation, both sides together and per side.

    ``head`` and ``tail`` are the ranks of the triples whose relation ids are
    ``relations``. Every sum is one ``index_add`` over the relation ids (no loop over
    triples); the loop below only formats the relations that occur. Keys are relation
    names (or ids as strings), each with ``count`` (triples) and ``head`` / ``tail``.
    """
    relations = relations.to(head.device).long()

    def sums(ranks: Tensor) -> Tensor:
        # columns: count, sum 1/rank, sum rank, hits@k for each k
        ranks = ranks.double()
        cols = [
            torch.ones_like(ranks),
            1.0 / ranks,
            ranks,
            *((ranks <= k).double() for k in hits_at),
        ]
        table = torch.zeros(num_relations, len(cols), dtype=torch.double, device=ranks.device)
        return table.index_add_(0, relations, torch.stack(cols, 1)).cpu()

    def row(total: Tensor) -> dict[str, float]:
        count = float(total[0])
        out = {"mrr": float(total[1]) / count, "mr": float(total[2]) / count}
        out.update({f"hits@{k}": float(total[3 + i]) / count for i, k in enumerate(hits_at)})
        return out

    per_side = {"head": sums(head), "tail": sums(tail)}
    both = per_side["head"] + per_side["tail"]
    result: dict[str, dict[str, object]] = {}
    for rel in torch.nonzero(both[:, 0] > 0).flatten().tolist():
        name = relation_names[rel] if relation_names is not None else str(rel)
        entry: dict[str, object] = {"count": int(per_side["head"][rel, 0]), **row(both[rel])}
        entry.update({side: row(table[rel]) for side, table in per_side.items()})
        result[name] = entry
    return result


class FilteredEvaluator:
    """Filtered MRR / MR / Hits@k on both sides against all entities.

    ``known`` holds every true triple (train + valid + test), or ``answer_keys`` holds
    their filter index already (``{"head": [...], "tail": [...]}`` as
    :meth:`emu_dgl.data.KnowledgeGraph.answer_keys` gives it, with ``num_entities``);
    ``scorer`` is anything with
    ``score_t(hr[B,2]) -> [B,E]`` and ``score_h(rt[B,2]) -> [B,E]`` (a :class:`KGEModel`).
    """

    def __init__(
        self,
        known: Tensor | None,
        num_relations: int,
        *,
        batch_size: int = 256,
        protocol: Protocol = "full",
        num_negatives: int = 500,
        seed: int = 0,
        announce_after: float | None = 60.0,
        answer_keys: Mapping[str, list[Tensor]] | None = None,
        num_entities: int | None = None,
        hits_at: tuple[int, ...] | list[int] = HITS_AT,
    ) -> None:
        if protocol not in ("full", "sampled"):
            raise ConfigError(f"eval.protocol: unknown value '{protocol}'; valid: full, sampled")
        if protocol == "sampled" and num_negatives < 1:
            raise ConfigError(f"eval.num_negatives must be positive, got {num_negatives}")
        self.batch_size = batch_size
        self.protocol = protocol
        self.num_negatives = num_negatives
        self.seed = seed
        self.announce_after = announce_after
        self.hits_at = tuple(sorted(set(int(k) for k in hits_at)))
        if not self.hits_at or self.hits_at[0] < 1:
            raise ConfigError(f"eval.hits_at must list positive integers, got {list(hits_at)}")
        self._queries = self._whole_queries = 0
        if answer_keys is not None:  # built already (a dataset cache maps them)
            if num_entities is None:
                raise ValueError("answer_keys need the num_entities they were built with")
            self._index = {
                side: _AnswerIndex(list(answer_keys[side]), num_relations, num_entities)
                for side in ("head", "tail")
            }
        elif known is None:
            raise ValueError("FilteredEvaluator needs the known triples or their answer_keys")
        else:
            self._index = {
                side: _AnswerIndex.from_triples(known, num_relations, side, num_entities)
                for side in ("head", "tail")
            }

    @torch.no_grad()
    def ranks(
        self,
        scorer: object,
        triples: Tensor,
        side: Side,
        *,
        estimate_sides: int = 0,
        table: bool = False,
    ) -> Tensor:
        """Realistic filtered ranks of one side of ``triples`` under the evaluator's protocol;
        with ``table``, the [N, 3] table of :func:`rank_table` instead (optimistic and
        pessimistic ranks, candidates per query).

        ``estimate_sides > 0``: after the first batch, when the whole evaluation
        (``estimate_sides`` sides like this one) looks longer than ``announce_after``
        seconds, print the estimate to stderr before going on.
        """
        if self.protocol == "sampled":
            ranks = self._sampled_ranks(scorer, triples, side)
        else:
            ranks = self._full_ranks(scorer, triples, side, estimate_sides)
        return ranks if table else ranks[:, :2].mean(1)

    def _full_ranks(
        self, scorer: object, triples: Tensor, side: Side, estimate_sides: int
    ) -> Tensor:
        """The rank table of one side against every entity (see :meth:`ranks`)."""
        index = self._index[side]
        triples = triples.to(index.keys.device)
        score_fn: Callable[[Tensor], Tensor] = scorer.score_t if side == "tail" else scorer.score_h  # type: ignore[attr-defined]
        out = []
        started = time.perf_counter()
        batches = triples.split(self.batch_size)
        for i, batch in enumerate(batches):
            if side == "tail":
                query, anchor, target = batch[:, [0, 1]], batch[:, 0], batch[:, 2]
            else:
                query, anchor, target = batch[:, [1, 2]], batch[:, 2], batch[:, 0]
            scores = score_fn(query).float()
            num_entities = scores.shape[1]
            rows, cols = index.lookup(anchor, batch[:, 1])
            out.append(rank_table(scores, target, rows, cols))
            if i == 0 and estimate_sides and self.announce_after is not None and len(batches) > 1:
                total = (time.perf_counter() - started) * len(batches) * estimate_sides
                if total > self.announce_after:
                    print(
                        f"full evaluation of {len(triples)} triples x {estimate_sides} sides against "
                        f"{num_entities} entities: about {_duration(total)} (eval.protocol=sampled "
                        f"ranks against {self.num_negatives} sampled negatives instead)",
                        file=sys.stderr,
                        flush=True,
                    )
        return torch.cat(out) if out else torch.empty(0, 3, dtype=torch.double)

    def sampled_candidates(
        self, chunk: int, batch: Tensor, side: Side, num_entities: int
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Candidates of the triples ``batch`` (chunk number ``chunk`` of the list).

        Returns ``(order, valid, whole)``. ``order[K]`` is one list of ``K`` distinct
        entities in uniformly random order, shared by the chunk's queries; query ``i``'s
        candidates are the first ``min(num_negatives, n_free)`` entities of ``order`` that
        are neither its target nor a known answer (``valid[i]``, ``[len(batch), K]``),
        where ``n_free`` counts all such entities. Since the entities of ``order`` that a
        query may use come in uniformly random order too, its candidates are a uniform
        draw *without replacement* among its non-answers, exactly as if drawn for it
        alone. ``K = num_negatives`` plus the most known answers of any query of the
        chunk (capped at ``num_entities``), so every query finds enough. ``whole[i]`` says
        that query ``i`` is ranked against all its ``n_free`` entities (``n_free <=
        num_negatives``): its rank is then its full filtered rank. Draws come from a
        generator seeded by (``seed``, side, ``chunk``) only.

        Sharing the order within a chunk is what makes scoring cheap: the chunk's queries
        are scored against the same ``K`` rows (one gather, then a matrix product for
        DistMult and ComplEx), instead of ``num_negatives`` rows gathered per query.
        Queries of one chunk are therefore not independent draws; each one's is exact.
        """
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + 2 * chunk + (side == "tail"))
        anchor, target = (
            (batch[:, 0], batch[:, 2]) if side == "tail" else (batch[:, 2], batch[:, 0])
        )
        rows, answers = self._index[side].lookup(anchor, batch[:, 1])
        count, device = len(batch), batch.device
        # excluded (query, entity) pairs as sorted keys query * E + entity: answers and target
        local = torch.arange(count, device=device)
        excluded = torch.unique(
            torch.cat([rows * num_entities + answers, local * num_entities + target])
        )
        n_excluded = torch.bincount(excluded // num_entities, minlength=count)
        whole = n_excluded >= num_entities - self.num_negatives  # n_free <= num_negatives
        size = min(num_entities, self.num_negatives + int(n_excluded.max()))
        order = random_distinct(gen, num_entities, size).to(device)
        keys = local[:, None] * num_entities + order[None, :]
        at = torch.searchsorted(excluded, keys).clamp_max(len(excluded) - 1)
        usable = excluded[at] != keys
        valid = usable & (torch.cumsum(usable, dim=1) <= self.num_negatives)
        return order, valid, whole

    def _sampled_ranks(self, scorer: object, triples: Tensor, side: Side) -> Tensor:
        """Ranks against at most ``num_negatives`` filtered candidates per query (OGB style).

        Triple ``i`` of the list draws its candidates from a generator seeded by
        (``seed``, side, ``i // SAMPLED_CHUNK``), so every evaluation of the same list
        (any batch size, any training seed) uses the same candidates (see
        :meth:`sampled_candidates`). Each chunk is scored in one batched call,
        ``scorer.score_candidates(queries, [targets | order], side)``: the chunk's
        targets and shared candidates, one row gather and one scoring pass. A query's
        rank is the realistic rank of its target among itself and its own candidates;
        every other column (other queries' targets, known answers, candidates past its
        ``num_negatives``) is removed from its competition like a known answer.
        """
        device = self._index[side].keys.device
        triples = triples.to(device)
        num_entities = int(scorer.num_entities)  # type: ignore[attr-defined]
        out = []
        for c, batch in enumerate(triples.split(SAMPLED_CHUNK)):
            order, valid, whole = self.sampled_candidates(c, batch, side, num_entities)
            self._queries += len(batch)
            self._whole_queries += int(whole.sum())
            b = len(batch)
            query, target = (
                (batch[:, [0, 1]], batch[:, 2])
                if side == "tail"
                else (batch[:, [1, 2]], batch[:, 0])
            )
            scores = scorer.score_candidates(query, torch.cat([target, order]), side).float()  # type: ignore[attr-defined]
            # columns 0..b-1: the targets (row i keeps column i); then the shared candidates
            keep = torch.cat([torch.eye(b, dtype=torch.bool, device=device), valid], dim=1)
            filter_rows, filter_cols = torch.nonzero(~keep, as_tuple=True)
            rows = torch.arange(b, device=device)
            out.append(rank_table(scores, rows, filter_rows, filter_cols))
        return torch.cat(out) if out else torch.empty(0, 3, dtype=torch.double)

    def _metrics(self, table: Tensor) -> dict[str, object]:
        """Realistic-rank metrics (and AMRI) of a rank table."""
        realistic = table[:, :2].mean(1)
        return metrics_from_ranks(realistic, hits_at=self.hits_at, candidates=table[:, CANDIDATES])

    def evaluate(
        self,
        scorer: object,
        triples: Tensor,
        *,
        per_relation: bool = False,
        relation_names: list[str] | None = None,
    ) -> dict[str, object]:
        """Metrics for both sides together plus ``head`` and ``tail`` breakdowns.

        ``per_relation`` adds ``per_relation``: the same metrics for every relation that
        occurs in ``triples`` (see :func:`per_relation_metrics`), keyed by
        ``relation_names`` when given.
        """
        was_training = getattr(scorer, "training", False)
        if hasattr(scorer, "eval"):
            scorer.eval()  # type: ignore[attr-defined]
        self._queries = self._whole_queries = 0  # counted by the sampled protocol
        try:
            with encoded_once(scorer):  # a graph encoder's vectors, computed once
                head = self.ranks(scorer, triples, "head", estimate_sides=2, table=True).cpu()
                tail = self.ranks(scorer, triples, "tail", table=True).cpu()
        finally:
            if was_training:
                scorer.train()  # type: ignore[attr-defined]
        both = torch.cat([head, tail])
        result: dict[str, object] = self._metrics(both)
        result["head"] = self._metrics(head)
        result["tail"] = self._metrics(tail)
        for kind, column in (("optimistic", OPTIMISTIC), ("pessimistic", PESSIMISTIC)):
            result[kind] = metrics_from_ranks(
                both[:, column], hits_at=self.hits_at, candidates=both[:, CANDIDATES]
            )
        result["num_triples"] = int(len(triples))
        if per_relation:
            result["per_relation"] = per_relation_metrics(
                head[:, :2].mean(1),
                tail[:, :2].mean(1),
                triples[:, 1].cpu(),
                self._index["head"].num_relations,
                relation_names,
                hits_at=self.hits_at,
            )
        result["protocol"] = self.protocol
        if hasattr(scorer, "num_entities"):
            result["num_entities"] = int(scorer.num_entities)  # type: ignore[attr-defined]
        if self.protocol == "sampled":
            result["num_negatives"] = self.num_negatives
            # True when every query's sample held all its non-answer entities: the numbers
            # are then the full protocol's.
            result["whole_set"] = self._whole_queries == self._queries
        return result


def describe_protocol(metrics: Mapping[str, Any]) -> str:
    """One line saying how the ranks behind ``metrics`` (from :meth:`FilteredEvaluator.evaluate`)
    were computed; every printed table carries it, since sampled and full numbers differ."""
    if metrics.get("protocol") == "given":
        return (
            f"protocol: OGB's, against the {metrics.get('num_negatives')} fixed negatives per query "
            "and side that come with the dataset, unfiltered (ogb's Evaluator)"
        )
    if metrics.get("protocol") == "sampled":
        n = metrics.get("num_negatives")
        if metrics.get("whole_set"):
            return (
                f"protocol: sampled, up to {n} candidates per query and side; every sample "
                "held all of its query's non-answer entities, so these equal full ranking"
            )
        return (
            f"protocol: sampled (OGB-style), against {n} filtered candidates per query and side "
            "drawn from eval.seed, not OGB's fixed negatives; NOT comparable with full-ranking numbers"
        )
    entities = metrics.get("num_entities")
    against = f"all {entities:,} entities" if isinstance(entities, int) else "all entities"
    return (
        f"protocol: full ranking against {against}, filtered; realistic ranks (a tie counts half)"
    )


def encoded_once(scorer: object) -> contextlib.AbstractContextManager[object]:
    """The scorer's ``encoded_once()`` (a model with a graph encoder computes every entity's
    vector once within it), or a context that does nothing."""
    once = getattr(scorer, "encoded_once", None)
    return once() if callable(once) else contextlib.nullcontext()


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
