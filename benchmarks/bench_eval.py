"""Filtered evaluation cost against bare scoring of the same queries.

For WN18RR's test split (both sides: 2 x 3,134 queries against 40,943 entities) this
times, per decoder:

* ``bare_seconds``: only ``score_t`` / ``score_h`` of every query against all
  entities, in the evaluator's batches (the floor any evaluator pays);
* ``filtered_seconds``: the full :class:`FilteredEvaluator` (scoring, filtering with
  train+valid+test, realistic ranks, metrics);
* ``sampled_seconds``: the same evaluator under ``protocol="sampled"`` (``--num-negatives``
  candidates per query and side, default 500, drawn without replacement among the
  non-answers and scored in one batched gather per chunk of queries).

Prints one JSON object with the times and the ratios ``filtered / bare`` (target: at
most 1.3) and ``sampled / filtered`` (target: at most 1).

    python benchmarks/bench_eval.py --data-dir ../shared/datasets
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from emu_dgl.data import load_dataset
from emu_dgl.evaluation import FilteredEvaluator
from emu_dgl.models import KGEModel


@torch.no_grad()
def bare_scoring(model, triples: torch.Tensor, batch_size: int) -> None:
    for batch in triples.split(batch_size):
        model.score_t(batch[:, [0, 1]])
        model.score_h(batch[:, [1, 2]])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--dataset", default="wn18rr")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--decoders", nargs="+", default=["transe", "distmult"])
    parser.add_argument("--num-negatives", type=int, default=500)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    kg = load_dataset(args.dataset, args.data_dir)
    known = torch.cat([kg.train, kg.valid, kg.test])
    started = time.perf_counter()
    evaluator = FilteredEvaluator(known, kg.num_relations, batch_size=args.batch_size)
    index_seconds = time.perf_counter() - started
    sampled = FilteredEvaluator(
        known,
        kg.num_relations,
        batch_size=args.batch_size,
        protocol="sampled",
        num_negatives=args.num_negatives,
    )
    out: dict = {
        "benchmark": "filtered_evaluation",
        "dataset": args.dataset,
        "queries": 2 * len(kg.test),
        "num_entities": kg.num_entities,
        "threads": torch.get_num_threads(),
        "index_build_seconds": round(index_seconds, 3),
        "decoders": {},
    }
    for name in args.decoders:
        torch.manual_seed(0)
        model = KGEModel(kg.num_entities, kg.num_relations, decoder=name, dim=100).eval()
        bare_scoring(model, kg.test[:256], args.batch_size)  # warm-up
        start = time.perf_counter()
        bare_scoring(model, kg.test, args.batch_size)
        bare = time.perf_counter() - start
        start = time.perf_counter()
        metrics = evaluator.evaluate(model, kg.test)
        full = time.perf_counter() - start
        start = time.perf_counter()
        sampled_metrics = sampled.evaluate(model, kg.test)
        sampled_seconds = time.perf_counter() - start
        out["decoders"][name] = {
            "bare_seconds": round(bare, 3),
            "filtered_seconds": round(full, 3),
            "ratio": round(full / bare, 3),
            "mrr_untrained": round(metrics["mrr"], 5),
            "sampled_seconds": round(sampled_seconds, 3),
            "sampled_over_filtered": round(sampled_seconds / full, 3),
            "sampled_num_negatives": args.num_negatives,
            "sampled_mrr_untrained": round(sampled_metrics["mrr"], 5),
        }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
