"""The metrics and training options PyKEEN users expect (issue 24), against brute force on
small graphs: Hits@k for any k, optimistic and pessimistic ranks beside the realistic one,
the adjusted mean rank index, ``train.max_epochs`` and ``dataset.inverse_triples``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from emu_dgl.config import load_config
from emu_dgl.errors import ConfigError
from emu_dgl.evaluation import FilteredEvaluator, adjusted_mean_rank_index, metrics_from_ranks
from emu_dgl.evaluation.ranking import CANDIDATES, OPTIMISTIC, PESSIMISTIC
from tests.test_evaluation import TableScorer, make_graph
from tests.test_evaluation_sampled import TripleScorer, _per_query


def brute_force_table(table, known, triples, side):
    """(optimistic, pessimistic, candidates) per triple, one entity at a time."""
    known_set = {tuple(t) for t in known.tolist()}
    rows = []
    for h, r, t in triples.tolist():
        target = t if side == "tail" else h
        s = float(table[h, r, t])
        better = ties = competitors = 0
        for e in range(table.shape[0]):
            cand = (h, r, e) if side == "tail" else (e, r, t)
            if e == target or cand in known_set:
                continue
            x = float(table[cand[0], r, cand[2]])
            better += x > s
            ties += x == s
            competitors += 1
        rows.append((1 + better, 1 + better + ties, competitors + 1))
    return torch.tensor(rows, dtype=torch.double)


def test_optimistic_pessimistic_ranks_and_candidates_match_brute_force(device):
    for seed in range(3):
        known, table = make_graph(seed, num_entities=40)
        test = known[torch.randperm(len(known), generator=torch.Generator().manual_seed(seed))[:50]]
        evaluator = FilteredEvaluator(known.to(device), num_relations=4, batch_size=9)
        for side in ("head", "tail"):
            ours = evaluator.ranks(TableScorer(table), test.to(device), side, table=True).cpu()
            assert torch.equal(ours, brute_force_table(table, known, test, side)), side
            realistic = evaluator.ranks(TableScorer(table), test.to(device), side).cpu()
            assert torch.equal(realistic, ours[:, :2].mean(1))


def test_every_metric_of_evaluate_against_brute_force():
    known, table = make_graph(4, num_entities=150, num_triples=600)
    test = known[:80]
    hits_at = (1, 3, 10, 100)
    result = FilteredEvaluator(known, 4, batch_size=16, hits_at=[100, 10, 3, 1]).evaluate(
        TableScorer(table), test
    )
    head = brute_force_table(table, known, test, "head")
    tail = brute_force_table(table, known, test, "tail")
    both = torch.cat([head, tail])

    def reference(ranks, candidates):
        ranks = ranks.double()
        n = len(ranks)
        ref = {"mrr": sum(1 / x for x in ranks.tolist()) / n, "mr": sum(ranks.tolist()) / n}
        ref.update({f"hits@{k}": sum(x <= k for x in ranks.tolist()) / n for k in hits_at})
        expected_mr = sum((c + 1) / 2 for c in candidates.tolist()) / n  # a random order's
        ref["amri"] = 1 - (ref["mr"] - 1) / (expected_mr - 1)
        return ref

    checks = [
        (result, reference(both[:, :2].mean(1), both[:, 2])),
        (result["head"], reference(head[:, :2].mean(1), head[:, 2])),
        (result["tail"], reference(tail[:, :2].mean(1), tail[:, 2])),
        (result["optimistic"], reference(both[:, 0], both[:, 2])),
        (result["pessimistic"], reference(both[:, 1], both[:, 2])),
    ]
    for got, ref in checks:
        assert set(ref) <= set(got)
        for key, value in ref.items():
            assert got[key] == pytest.approx(value, abs=1e-12), key
    # ties exist (integer scores), so the three rank kinds differ, in this order
    assert result["optimistic"]["mrr"] > result["mrr"] > result["pessimistic"]["mrr"]
    assert result["hits@100"] > result["hits@10"]


def test_amri_is_zero_for_a_constant_scorer_and_one_for_a_perfect_one():
    known, _ = make_graph(1, num_entities=30)
    constant = FilteredEvaluator(known, 4).evaluate(TableScorer(torch.zeros(30, 4, 30)), known)
    assert constant["amri"] == pytest.approx(0.0, abs=1e-12)  # realistic: exactly random
    assert constant["optimistic"]["amri"] == 1.0  # all ties counted as wins
    assert constant["pessimistic"]["amri"] < 0
    perfect = torch.zeros(30, 4, 30)
    perfect[known[:, 0], known[:, 1], known[:, 2]] = 1.0
    assert FilteredEvaluator(known, 4).evaluate(TableScorer(perfect), known)["amri"] == 1.0
    assert adjusted_mean_rank_index(torch.ones(3), torch.ones(3)) == 0.0  # nothing to rank
    assert "amri" not in metrics_from_ranks(torch.ones(3))


@pytest.mark.parametrize("side", ["head", "tail"])
def test_sampled_protocol_tables_count_its_candidates(side):
    triples, table = make_graph(3, num_entities=200, num_triples=1500)
    evaluator = FilteredEvaluator(triples, 4, protocol="sampled", num_negatives=25, seed=3)
    got = evaluator.ranks(TripleScorer(table), triples[:150], side, table=True)
    candidates, _ = _per_query(evaluator, triples[:150], side, 200)
    assert got[:, CANDIDATES].tolist() == [len(c) + 1 for c in candidates]
    assert bool((got[:, OPTIMISTIC] <= got[:, PESSIMISTIC]).all())
    # enough candidates for the whole set: the full protocol's table, candidates included
    whole = FilteredEvaluator(triples, 4, protocol="sampled", num_negatives=200)
    full = FilteredEvaluator(triples, 4)
    a = whole.ranks(TripleScorer(table), triples[:150], side, table=True)
    assert torch.equal(a, full.ranks(TripleScorer(table), triples[:150], side, table=True))


def test_hits_at_and_metric_in_the_config():
    config = load_config(None, ["eval.hits_at=[100, 1, 3, 10, 3]", "eval.metric=Hits@100"])
    assert config.eval.hits_at == [1, 3, 10, 100] and config.eval.metric == "hits@100"
    assert load_config(None, ["eval.hits_at=1,5", "eval.metric=amri"]).eval.hits_at == [1, 5]
    with pytest.raises(ConfigError, match="eval.hits_at: expected a list of positive integers"):
        load_config(None, ["eval.hits_at=[0, 10]"])
    with pytest.raises(ConfigError, match="eval.metric: unknown value 'hits@50'"):
        load_config(None, ["eval.metric=hits@50"])  # not among eval.hits_at
    with pytest.raises(ConfigError, match="train.max_epochs"):
        load_config(None, ["train.max_epochs=-1"])


QUICK = [
    "train.progress=false",
    "train.threads=1",
    "train.device=cpu",
    "model.dim=16",
    "train.batch_size=256",
    "train.checkpoint_every=0",
]


def test_max_epochs_counts_passes_over_the_training_triples(tmp_path: Path):
    from emu_dgl.training.trainer import Trainer

    config = load_config(None, [*QUICK, "train.max_epochs=2", "train.valid_every=0"])
    trainer = Trainer(config, tmp_path / "r")
    per_epoch = len(trainer.kg.train) // 256  # 4939 synthetic training triples
    assert trainer.config.train.max_steps == 2 * per_epoch == 38
    metrics = trainer.fit()
    assert metrics["steps"] == 38
    # each epoch is one pass: every training triple once (the last partial batch left out)
    seen = torch.cat([trainer._batch(s) for s in range(per_epoch)])
    assert len(torch.unique(seen, dim=0)) == per_epoch * 256


@pytest.mark.slow
def test_inverse_triples_train_2r_relations_and_rank_heads_as_inverse_tails(tmp_path: Path):
    import emu_dgl
    from emu_dgl.training.inverse import InverseHeads, with_inverse_triples

    kg = emu_dgl.load_dataset("synthetic")
    doubled = with_inverse_triples(kg)
    R = kg.num_relations
    assert doubled.num_relations == 2 * R and torch.equal(doubled.valid, kg.valid)
    assert doubled.relation_names[R:] == [f"{n}_inverse" for n in kg.relation_names]
    expected = {tuple(t) for t in kg.train.tolist()} | {
        (t, r + R, h) for h, r, t in kg.train.tolist()
    }
    assert {tuple(t) for t in doubled.train.tolist()} == expected

    sets = [*QUICK, "train.max_steps=40", "train.valid_every=20", "dataset.inverse_triples=true"]
    result = emu_dgl.train(load_config(None, sets), out=tmp_path / "inv", say=lambda _: None)
    model = result.model
    assert model.relation.weight.shape[0] == 2 * R
    # heads of (?, r, t) are the tails of (t, r_inverse, ?): the brute-force ranks of that
    # scoring, filtered by the original triples, are the evaluator's head ranks
    scorer = InverseHeads(model, R)
    with torch.no_grad():
        scores = torch.stack(
            [model.score_t(torch.tensor([[t, r + R]]))[0] for _, r, t in kg.test[:40].tolist()]
        )
    known = {tuple(t) for t in kg.all_triples().tolist()}
    ranks = []
    for (h, r, t), row in zip(kg.test[:40].tolist(), scores, strict=True):
        s = float(row[h])
        rivals = [
            float(row[e]) for e in range(kg.num_entities) if e != h and (e, r, t) not in known
        ]
        ranks.append(1 + sum(x > s for x in rivals) + sum(x == s for x in rivals) / 2)
    evaluator = FilteredEvaluator(kg.all_triples(), R)
    with torch.no_grad():
        ours = evaluator.ranks(scorer, kg.test[:40], "head")
    assert ours.tolist() == pytest.approx(ranks)
    # load_run rebuilds the same model; evaluate and predict use the inverse relations too
    loaded = emu_dgl.load_run(tmp_path / "inv")
    assert loaded.evaluate("test")["mrr"] == pytest.approx(result.metrics["test"]["mrr"])
    _, r, t = kg.test[0].tolist()
    table = loaded.predict(tail=kg.entity_names[t], relation=kg.relation_names[r], filtered=False)
    assert table["id"].tolist() == scores[0].argsort(descending=True)[:10].tolist()
    exported = loaded.export(tmp_path / "emb")
    assert len((exported / "relations.tsv").read_text().splitlines()) == 2 * R
    saved = json.loads((tmp_path / "inv" / "data.json").read_text())
    assert saved["fingerprint"] == kg.fingerprint  # the data as read, not the doubled graph


def test_given_negatives_rank_as_ogbs_evaluator_does():
    """OGB's formula: optimistic #{x > s}, pessimistic #{x >= s}, rank their mean + 1."""
    from emu_dgl.evaluation import evaluate_given, given_rank_table

    gen = torch.Generator().manual_seed(0)
    pos = torch.randint(0, 4, (50,), generator=gen).float()
    neg = torch.randint(0, 4, (50, 7), generator=gen).float()  # many ties
    table = given_rank_table(pos, neg)
    for i in range(50):
        above = sum(float(x) > float(pos[i]) for x in neg[i])
        at_least = sum(float(x) >= float(pos[i]) for x in neg[i])
        assert table[i].tolist() == [above + 1, at_least + 1, 8]
        assert table[i, :2].mean() == 0.5 * (above + at_least) + 1  # OGB's ranking_list

    known, scores = make_graph(2, num_entities=30)
    triples = known[:40]
    head_neg = torch.randint(0, 30, (40, 5), generator=gen)
    tail_neg = torch.randint(0, 30, (40, 5), generator=gen)
    result = evaluate_given(TripleScorer(scores), triples, head_neg, tail_neg, chunk=7)
    ranks = []
    for side, negs in (("head", head_neg), ("tail", tail_neg)):
        for (h, r, t), row in zip(triples.tolist(), negs.tolist(), strict=True):
            s = float(scores[h, r, t])
            xs = [float(scores[e, r, t] if side == "head" else scores[h, r, e]) for e in row]
            ranks.append(0.5 * (sum(x > s for x in xs) + sum(x >= s for x in xs)) + 1)
    expected = metrics_from_ranks(torch.tensor(ranks), candidates=torch.full((80,), 6.0))
    for key, value in expected.items():
        assert result[key] == pytest.approx(value, abs=1e-12), key
    assert result["protocol"] == "given" and result["num_negatives"] == 5
