"""Filtered ranking against a brute-force Python reference on small graphs."""

from __future__ import annotations

import torch

from emu_dgl.evaluation import FilteredEvaluator, metrics_from_ranks


class TableScorer:
    """Scores from a fixed table S[h, r, t]; integer values force many ties."""

    def __init__(self, table: torch.Tensor) -> None:
        self.table = table

    def score_t(self, hr: torch.Tensor) -> torch.Tensor:
        return self.table[hr[:, 0].cpu(), hr[:, 1].cpu()].to(hr.device).clone()

    def score_h(self, rt: torch.Tensor) -> torch.Tensor:
        return self.table[:, rt[:, 0].cpu(), rt[:, 1].cpu()].T.to(rt.device).clone()


def brute_force_ranks(table, known, triples, side):
    known_set = {tuple(t) for t in known.tolist()}
    ranks = []
    num_entities = table.shape[0]
    for h, r, t in triples.tolist():
        target = t if side == "tail" else h
        s = float(table[h, r, t])
        better = ties = 0
        for e in range(num_entities):
            cand = (h, r, e) if side == "tail" else (e, r, t)
            if e == target or cand in known_set:
                continue
            x = float(table[cand[0], r, cand[2]])
            better += x > s
            ties += x == s
        ranks.append(1 + better + ties / 2)
    return torch.tensor(ranks, dtype=torch.double)


def make_graph(seed: int, num_entities: int = 30, num_relations: int = 4, num_triples: int = 200):
    gen = torch.Generator().manual_seed(seed)
    triples = torch.stack(
        [
            torch.randint(num_entities, (num_triples,), generator=gen),
            torch.randint(num_relations, (num_triples,), generator=gen),
            torch.randint(num_entities, (num_triples,), generator=gen),
        ],
        dim=1,
    )
    triples = torch.unique(triples, dim=0)
    table = torch.randint(0, 5, (num_entities, num_relations, num_entities), generator=gen).float()
    return triples, table


def test_ranks_match_brute_force(device):
    for seed in range(3):
        known, table = make_graph(seed)
        test = known[torch.randperm(len(known), generator=torch.Generator().manual_seed(seed))[:40]]
        evaluator = FilteredEvaluator(known.to(device), num_relations=4, batch_size=7)
        scorer = TableScorer(table)
        for side in ("head", "tail"):
            ours = evaluator.ranks(scorer, test.to(device), side).cpu()
            reference = brute_force_ranks(table, known, test, side)
            assert torch.allclose(ours, reference, atol=1e-6), side
        metrics = evaluator.evaluate(scorer, test.to(device))
        ref_all = torch.cat([brute_force_ranks(table, known, test, s) for s in ("head", "tail")])
        expected = metrics_from_ranks(ref_all)
        for key, value in expected.items():
            assert abs(metrics[key] - value) < 1e-6, key
        assert metrics["num_triples"] == len(test)


def test_constant_scorer_gets_the_random_expected_rank():
    known, _ = make_graph(0)
    table = torch.zeros(30, 4, 30)
    evaluator = FilteredEvaluator(known, num_relations=4)
    ranks = evaluator.ranks(TableScorer(table), known[:10], "tail")
    # all candidates tie: rank = 1 + (#unfiltered competitors) / 2, never 1
    known_set = {tuple(t) for t in known.tolist()}
    for (h, r, _), rank in zip(known[:10].tolist(), ranks.tolist(), strict=True):
        competitors = sum((h, r, e) not in known_set for e in range(30))
        assert rank == 1 + competitors / 2


def test_perfect_scorer_has_mrr_one():
    known, _ = make_graph(1)
    table = torch.zeros(30, 4, 30)
    table[known[:, 0], known[:, 1], known[:, 2]] = 1.0
    metrics = FilteredEvaluator(known, num_relations=4).evaluate(TableScorer(table), known)
    assert metrics["mrr"] == 1.0 and metrics["hits@1"] == 1.0 and metrics["mr"] == 1.0


def test_per_relation_metrics_match_brute_force(device):
    known, table = make_graph(5, num_relations=5)
    test = known[torch.randperm(len(known), generator=torch.Generator().manual_seed(1))[:60]]
    test = test[test[:, 1] != 3]  # relation 3 absent from the evaluated triples
    names = ["r0", "r1", "r2", "r3", "r4"]
    evaluator = FilteredEvaluator(known.to(device), 5, batch_size=7)
    result = evaluator.evaluate(
        TableScorer(table), test.to(device), per_relation=True, relation_names=names
    )
    per_rel = result["per_relation"]
    assert (
        sorted(per_rel) == sorted({names[r] for r in test[:, 1].tolist()}) and "r3" not in per_rel
    )
    for rel_name, got in per_rel.items():
        sub = test[test[:, 1] == names.index(rel_name)]
        # brute force, one triple at a time, with the reference evaluator above
        head = brute_force_ranks(table, known, sub, "head")
        tail = brute_force_ranks(table, known, sub, "tail")
        assert got["count"] == len(sub)
        for key, ranks in (("head", head), ("tail", tail), (None, torch.cat([head, tail]))):
            ref = metrics_from_ranks(ranks)
            row = got if key is None else got[key]
            for metric in ("mrr", "mr", "hits@1", "hits@3", "hits@10"):
                assert abs(row[metric] - ref[metric]) < 1e-12, (rel_name, key, metric)
    # the triple-weighted mean of per-relation MRR is the overall MRR
    total = sum(v["count"] * v["mrr"] for v in per_rel.values()) / sum(
        v["count"] for v in per_rel.values()
    )
    assert abs(total - result["mrr"]) < 1e-12
    assert "per_relation" not in evaluator.evaluate(TableScorer(table), test.to(device))
