"""The sampled (OGB-style) protocol against a brute-force reference; the full-run estimate."""

from __future__ import annotations

import pytest
import torch

from emu_dgl.errors import ConfigError
from emu_dgl.evaluation import FilteredEvaluator
from emu_dgl.evaluation.ranking import SAMPLED_CHUNK, random_distinct
from tests.test_evaluation import TableScorer, make_graph


class TripleScorer(TableScorer):
    """Adds the scoring against shared candidates that the sampled protocol uses."""

    num_entities = property(lambda self: self.table.shape[0])

    def score_candidates(self, query: torch.Tensor, candidates: torch.Tensor, side: str):
        if side == "tail":  # query [h, r]
            return self.table[query[:, 0, None], query[:, 1, None], candidates[None, :]].clone()
        return self.table[candidates[None, :], query[:, 0, None], query[:, 1, None]].clone()


def _per_query(evaluator, triples, side, num_entities):
    """Each query's candidate list and whole-set flag, as the evaluator draws them."""
    lists, wholes = [], []
    for c, batch in enumerate(triples.split(SAMPLED_CHUNK)):
        order, valid, whole = evaluator.sampled_candidates(c, batch, side, num_entities)
        lists += [order[row].tolist() for row in valid]
        wholes += whole.tolist()
    return lists, wholes


def brute_force_sampled(table, known, triples, side, candidates):
    known_set = {tuple(t) for t in known.tolist()}
    ranks = []
    for (h, r, t), cands in zip(triples.tolist(), candidates, strict=True):
        s = float(table[h, r, t])
        better = ties = 0
        for e in cands:
            triple = (h, r, e) if side == "tail" else (e, r, t)
            assert triple not in known_set  # drawn among non-answers only
            x = float(table[triple])
            better += x > s
            ties += x == s
        ranks.append(1 + better + ties / 2)
    return torch.tensor(ranks, dtype=torch.double)


@pytest.mark.parametrize("num_entities", [40, 400], ids=["permutation", "draw-and-skip"])
@pytest.mark.parametrize("side", ["head", "tail"])
def test_sampled_ranks_match_brute_force(side, num_entities):
    triples, table = make_graph(3, num_entities=num_entities, num_triples=2000)
    known, test = triples, triples[:300]  # > one candidate chunk
    evaluator = FilteredEvaluator(known, 4, protocol="sampled", num_negatives=25, seed=7)
    ranks = evaluator.ranks(TripleScorer(table), test, side)
    candidates, whole = _per_query(evaluator, test, side, num_entities)
    torch.testing.assert_close(
        ranks, brute_force_sampled(table, known, test, side, candidates), rtol=0, atol=0
    )
    known_set = {tuple(t) for t in known.tolist()}
    for (h, r, t), drawn, all_in in zip(test.tolist(), candidates, whole, strict=True):
        free = [
            e
            for e in range(num_entities)
            if ((h, r, e) if side == "tail" else (e, r, t)) not in known_set
        ]
        assert len(drawn) == len(set(drawn)) == min(25, len(free))  # without replacement, capped
        assert set(drawn) <= set(free) and all_in == (len(free) <= 25)


def test_when_the_sample_is_the_whole_set_sampled_ranks_are_the_full_ranks():
    triples, table = make_graph(8, num_entities=14, num_triples=120)  # nations-sized
    scorer = TripleScorer(table)
    sampled = FilteredEvaluator(triples, 4, protocol="sampled", num_negatives=500)
    full = FilteredEvaluator(triples, 4)
    for side in ("head", "tail"):
        torch.testing.assert_close(
            sampled.ranks(scorer, triples, side), full.ranks(scorer, triples, side), rtol=0, atol=0
        )
    metrics = sampled.evaluate(scorer, triples)
    assert metrics["whole_set"] is True and metrics["mr"] < 14  # never more than the entities
    assert metrics["mrr"] == full.evaluate(scorer, triples)["mrr"]
    partial = FilteredEvaluator(triples, 4, protocol="sampled", num_negatives=3).evaluate(
        scorer, triples
    )
    assert partial["whole_set"] is False


@pytest.mark.parametrize(
    ("num_entities", "k"), [(30, 5), (600, 25)], ids=["permutation", "draw-and-skip"]
)
def test_candidates_are_uniform_over_the_non_answers(num_entities, k):
    # One query (0, 0, 1) whose other known answers are 2..9, in many chunks: every
    # other entity should be drawn equally often.
    known = torch.tensor([[0, 0, e] for e in range(1, 10)])
    evaluator = FilteredEvaluator(known, 1, protocol="sampled", num_negatives=k, seed=3)
    counts = torch.zeros(num_entities)
    chunks = 1000
    for c in range(chunks):
        order, valid, _ = evaluator.sampled_candidates(c, known[:1], "tail", num_entities)
        assert int(valid.sum()) == k
        counts += torch.bincount(order[valid[0]], minlength=num_entities)
    assert counts[1:10].sum() == 0
    free = torch.cat([counts[:1], counts[10:]])
    expected = chunks * k / len(free)
    # (nearly) binomial counts: within 5 standard deviations of their mean
    assert (free - expected).abs().max() < 5 * expected**0.5


def test_random_distinct_is_a_uniform_ordered_sample():
    gen = torch.Generator().manual_seed(0)
    firsts = torch.zeros(1000)
    for _ in range(4000):  # draw-and-skip path (count much smaller than n)
        ids = random_distinct(gen, 1000, 20)
        assert len(set(ids.tolist())) == 20 and int(ids.max()) < 1000
        firsts[ids[0]] += 1
    assert (firsts - 4).abs().max() < 5 * 4**0.5  # the first id is uniform too
    assert sorted(random_distinct(gen, 50, 50).tolist()) == list(range(50))


def test_a_query_with_many_known_answers_still_gets_its_full_count():
    num_entities = 400
    known = torch.tensor([[0, 0, e] for e in range(1, 371)])  # 29 free entities (0, 371..399)
    evaluator = FilteredEvaluator(known, 1, protocol="sampled", num_negatives=25, seed=0)
    order, valid, whole = evaluator.sampled_candidates(0, known[:4], "tail", num_entities)
    free = {0, *range(371, 400)}
    for row in valid:
        drawn = order[row].tolist()
        assert len(set(drawn)) == 25 and set(drawn) <= free
    assert not whole.any()


def test_sampled_candidates_are_fixed_by_the_seed_alone_and_ranks_never_exceed_full_ranks():
    triples, table = make_graph(4, num_entities=60, num_triples=300)
    scorer = TripleScorer(table)
    a = FilteredEvaluator(triples, 4, protocol="sampled", num_negatives=20, seed=1, batch_size=7)
    b = FilteredEvaluator(triples, 4, protocol="sampled", num_negatives=20, seed=1, batch_size=64)
    c = FilteredEvaluator(triples, 4, protocol="sampled", num_negatives=20, seed=2)
    assert torch.equal(a.ranks(scorer, triples, "tail"), b.ranks(scorer, triples, "tail"))
    assert not torch.equal(a.ranks(scorer, triples, "tail"), c.ranks(scorer, triples, "tail"))
    full = FilteredEvaluator(triples, 4).ranks(scorer, triples, "tail")
    # Distinct candidates are a subset of the full competition.
    sampled = a.ranks(scorer, triples, "tail")
    assert (sampled <= full).all() and sampled.mean() < full.mean()
    metrics = a.evaluate(scorer, triples)
    assert metrics["protocol"] == "sampled" and metrics["num_negatives"] == 20
    assert metrics["whole_set"] is False and metrics["num_entities"] == 60
    assert FilteredEvaluator(triples, 4).evaluate(scorer, triples)["protocol"] == "full"


def test_a_long_full_evaluation_is_announced_with_its_estimate(capsys):
    triples, table = make_graph(5)
    evaluator = FilteredEvaluator(triples, 4, batch_size=10, announce_after=0.0)
    evaluator.evaluate(TripleScorer(table), triples)
    err = capsys.readouterr().err
    assert f"full evaluation of {len(triples)} triples x 2 sides against 30 entities: about" in err
    assert "eval.protocol=sampled" in err
    quiet = FilteredEvaluator(triples, 4, batch_size=10)  # default threshold: 60 s
    quiet.evaluate(TripleScorer(table), triples)
    assert capsys.readouterr().err == ""


def test_bad_protocol_is_a_clear_error():
    triples, _ = make_graph(6)
    with pytest.raises(ConfigError, match="eval.protocol"):
        FilteredEvaluator(triples, 4, protocol="ogb")  # type: ignore[arg-type]


@pytest.mark.slow
def test_training_and_evaluate_name_the_protocol(tmp_path):
    import json

    from click.testing import CliRunner

    from emu_dgl.cli import main

    run = tmp_path / "run"
    args = [
        "train",
        "--out",
        str(run),
        "--set",
        "train.max_steps=4",
        "--set",
        "train.progress=false",
        "--set",
        "eval.protocol=sampled",
        "--set",
        "eval.num_negatives=50",
        "--set",
        "train.device=cpu",
    ]
    trained = CliRunner().invoke(main, args)
    assert trained.exit_code == 0, trained.output
    sampled_label = (
        "protocol: sampled (OGB-style), against 50 filtered candidates per query and side "
        "drawn from eval.seed, not OGB's fixed negatives"
    )
    assert sampled_label in trained.stdout  # every printed table names its protocol
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["eval_protocol"] == "sampled"
    assert metrics["test"]["protocol"] == "sampled" and metrics["test"]["num_negatives"] == 50
    assert metrics["test"]["whole_set"] is False
    full = CliRunner().invoke(
        main, ["evaluate", str(run), "--json", "--protocol", "full", "--device", "cpu"]
    )
    assert full.exit_code == 0 and json.loads(full.stdout)["test"]["protocol"] == "full"
    # On the same weights, ranks against 50 candidates beat ranks against all ~600 entities.
    assert json.loads(full.stdout)["test"]["mrr"] < metrics["test"]["mrr"]
    table = CliRunner().invoke(main, ["evaluate", str(run), "--device", "cpu"])
    assert sampled_label in table.stdout
    table = CliRunner().invoke(main, ["evaluate", str(run), "--protocol", "full"])
    assert "protocol: full ranking against all 605 entities, filtered" in table.stdout
    whole = CliRunner().invoke(main, ["evaluate", str(run), "--protocol", "sampled", "--json"])
    assert json.loads(whole.stdout)["test"]["num_negatives"] == 50  # the run's eval settings
