"""Known triples left among filtered negatives, for the fixed-shape false-negative filter.

The filter (:class:`emu_dgl.sampling.FilteredSampler`) draws ``n + spare`` candidates
from the base sampler and ``uniform_spare`` uniform ones per positive and keeps the
first ``n`` that are not training triples; a row with fewer than ``n`` such candidates
keeps some known ones. For each dataset and base sampler (uniform; SANS as the paper
configs run it: continued walks, k = 3, w = 1000, uniform over distinct candidates) this
draws training batches (both sides) and reports

* ``base_known``: the share of known triples among unfiltered base draws,
* per ``(spare, uniform_spare)``: the share left after filtering and the share of rows
  with any left, counted over ``batches x 2 x B x n`` negatives.

    python benchmarks/filter_residual.py --data-dir ../shared/datasets [--batches 20]
"""

from __future__ import annotations

import argparse
import json

import torch

from emu_dgl.data import load_dataset, processed_dir
from emu_dgl.sampling import FilteredSampler, build_sampler


def measure(kg, base, batches: int, batch: int, spares: list[tuple[int, int]]) -> dict:
    n = base.num_negatives
    known = kg.train
    filters = {
        f"{s},{u}": FilteredSampler(base, known, kg.num_entities, spare=s, uniform_spare=u)
        for s, u in spares
    }
    probe = next(iter(filters.values()))
    counts = {key: [0, 0] for key in filters}  # known negatives, rows with any
    base_known = total = 0
    gen = torch.Generator().manual_seed(0)
    perm = torch.randperm(len(known), generator=gen)
    for i in range(batches):
        pos = known[perm[i * batch : (i + 1) * batch]]
        for side in ("tail", "head"):
            base_known += int(
                probe.is_known(pos, base.sample(pos, side, generator=gen), side).sum()
            )
            total += pos.shape[0] * n
            for key, sampler in filters.items():
                bad = sampler.is_known(pos, sampler.sample(pos, side, generator=gen), side)
                counts[key][0] += int(bad.sum())
                counts[key][1] += int(bad.any(dim=1).sum())
    rows = batches * 2 * batch
    return {
        "negatives_counted": total,
        "base_known": base_known / total,
        "filtered": {
            key: {"known_left": c[0] / total, "rows_with_any": c[1] / rows}
            for key, c in counts.items()
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--datasets", nargs="+", default=["wn18rr", "fb15k-237"])
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--negatives", type=int, default=256)
    args = parser.parse_args()
    torch.set_num_threads(1)
    n = args.negatives
    # (spare, uniform_spare): none, base spares only, the defaults, and smaller fallbacks
    spares = [(0, 0), (n // 4, 0), (n // 4, n // 8), (n // 4, n // 2), (n // 4, n)]
    out: dict = {"negatives": n, "batch": args.batch, "batches": args.batches, "results": {}}
    for name in args.datasets:
        kg = load_dataset(name, args.data_dir)
        for sampler in ("uniform", "sans"):
            base = build_sampler(
                sampler,
                train=kg.train,
                num_entities=kg.num_entities,
                num_negatives=n,
                k_hop=3,
                walks=1000,
                walk_mode="continue",
                weighted=False,
                cache_dir=processed_dir(args.data_dir) / "neighbourhoods",
            )
            result = measure(kg, base, args.batches, args.batch, spares)
            out["results"][f"{name} {sampler}"] = result
            print(name, sampler, json.dumps(result), flush=True)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
