"""The sampled (OGB-style) protocol against a brute-force reference; the full-run estimate."""

from __future__ import annotations

import pytest
import torch

from emu_dgl.errors import ConfigError
from emu_dgl.evaluation import FilteredEvaluator
from emu_dgl.evaluation.ranking import SAMPLED_CHUNK
from tests.test_evaluation import TableScorer, make_graph


class TripleScorer(TableScorer):
    """Adds the triple-wise scoring the sampled protocol uses."""

    num_entities = property(lambda self: self.table.shape[0])

    def score_hrt(self, hrt: torch.Tensor) -> torch.Tensor:
        return self.table[hrt[:, 0], hrt[:, 1], hrt[:, 2]].clone()


def brute_force_sampled(table, known, triples, side, candidates):
    known_set = {tuple(t) for t in known.tolist()}
    ranks = []
    for (h, r, t), cands in zip(triples.tolist(), candidates.tolist(), strict=True):
        s = float(table[h, r, t])
        better = ties = 0
        for e in cands:  # drawn with replacement: a repeated candidate competes each time
            triple = (h, r, e) if side == "tail" else (e, r, t)
            if triple in known_set:  # the target itself and every other known answer
                continue
            x = float(table[triple])
            better += x > s
            ties += x == s
        ranks.append(1 + better + ties / 2)
    return torch.tensor(ranks, dtype=torch.double)


def _candidates(evaluator, n, side, num_entities):
    chunks = [
        evaluator.sampled_candidates(
            c, min(SAMPLED_CHUNK, n - c * SAMPLED_CHUNK), side, num_entities
        )
        for c in range((n + SAMPLED_CHUNK - 1) // SAMPLED_CHUNK)
    ]
    return torch.cat(chunks)


@pytest.mark.parametrize("side", ["head", "tail"])
def test_sampled_ranks_match_brute_force(side):
    triples, table = make_graph(3, num_entities=40, num_triples=400)
    known, test = triples, triples[:300]  # > one candidate chunk
    evaluator = FilteredEvaluator(known, 4, protocol="sampled", num_negatives=25, seed=7)
    ranks = evaluator.ranks(TripleScorer(table), test, side)
    expected = brute_force_sampled(
        table, known, test, side, _candidates(evaluator, len(test), side, 40)
    )
    torch.testing.assert_close(ranks, expected, rtol=0, atol=0)


def test_sampled_candidates_are_fixed_by_the_seed_alone_and_ranks_never_exceed_full_ranks():
    triples, table = make_graph(4, num_entities=60, num_triples=300)
    scorer = TripleScorer(table)
    a = FilteredEvaluator(triples, 4, protocol="sampled", num_negatives=20, seed=1, batch_size=7)
    b = FilteredEvaluator(triples, 4, protocol="sampled", num_negatives=20, seed=1, batch_size=64)
    c = FilteredEvaluator(triples, 4, protocol="sampled", num_negatives=20, seed=2)
    assert torch.equal(a.ranks(scorer, triples, "tail"), b.ranks(scorer, triples, "tail"))
    assert not torch.equal(a.ranks(scorer, triples, "tail"), c.ranks(scorer, triples, "tail"))
    full = FilteredEvaluator(triples, 4).ranks(scorer, triples, "tail")
    # Distinct candidates are a subset of the full competition; a candidate drawn twice
    # competes twice, so a sampled rank exceeds the full one by at most the repeats.
    sampled = a.ranks(scorer, triples, "tail")
    cands = _candidates(a, len(triples), "tail", 60)
    repeats = torch.tensor([20 - len(set(row)) for row in cands.tolist()], dtype=torch.double)
    assert (sampled <= full + repeats).all() and sampled.mean() < full.mean()
    metrics = a.evaluate(scorer, triples)
    assert metrics["protocol"] == "sampled" and metrics["num_negatives"] == 20
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
    assert CliRunner().invoke(main, args).exit_code == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["eval_protocol"] == "sampled"
    assert metrics["test"]["protocol"] == "sampled" and metrics["test"]["num_negatives"] == 50
    full = CliRunner().invoke(
        main, ["evaluate", str(run), "--json", "--protocol", "full", "--device", "cpu"]
    )
    assert full.exit_code == 0 and json.loads(full.output)["test"]["protocol"] == "full"
    # On the same weights, ranks against 50 candidates beat ranks against all ~600 entities.
    assert json.loads(full.output)["test"]["mrr"] < metrics["test"]["mrr"]
