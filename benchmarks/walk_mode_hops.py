"""How far from their anchor SANS negatives lie, for both walk modes.

For ``--triples`` random training triples of a dataset (tail corruption: the anchor
is the head), draws ``--negatives`` filtered SANS negatives per triple with

* ``continue`` walks drawn uniformly over the distinct records (the published
  SANS/EMU builder; the paper configs' mode), and
* ``restart`` walks drawn by count (k-hop endpoints of independent walks),

both with k = 3, w = 1000, and measures each negative's hop distance to its anchor
by breadth-first search on the undirected training graph. Prints one JSON object
(share within k hops, median distinct entities per row, the histogram) and, with
``--plot``, draws the two histograms side by side.

    python benchmarks/walk_mode_hops.py --data-dir ../shared/datasets [--dataset wn18rr] \
        [--plot benchmarks/results/walk-modes/wn18rr-hops.png]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse.csgraph import shortest_path

from emu_dgl.data import load_dataset
from emu_dgl.experiments.compare import save_figure
from emu_dgl.graph.neighbourhood import _undirected_edges
from emu_dgl.sampling import build_sampler

MAX_BIN = 10  # distances >= 10 and unreachable share the last bin


def hop_distances(train: torch.Tensor, num_entities: int, anchors: np.ndarray) -> np.ndarray:
    src, dst = _undirected_edges(train, num_entities)
    adj = sp.csr_matrix((np.ones(len(src)), (src.numpy(), dst.numpy())), shape=(num_entities,) * 2)
    dist = shortest_path(adj, unweighted=True, indices=anchors)
    return np.where(np.isinf(dist), MAX_BIN, np.minimum(dist, MAX_BIN)).astype(np.int64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--dataset", default="wn18rr")
    parser.add_argument("--triples", type=int, default=300)
    parser.add_argument("--negatives", type=int, default=256)
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--walks", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", type=Path, default=None)
    args = parser.parse_args()

    kg = load_dataset(args.dataset, args.data_dir)
    gen = torch.Generator().manual_seed(args.seed)
    pos = kg.train[torch.randperm(len(kg.train), generator=gen)[: args.triples]]
    anchors = pos[:, 0].numpy()
    dist = hop_distances(kg.train, kg.num_entities, anchors)
    modes = {
        "continue (published, uniform over distinct)": ("continue", False),
        "restart (k-hop endpoints, by count)": ("restart", True),
    }
    result: dict[str, object] = {
        "dataset": args.dataset,
        "triples": args.triples,
        "negatives": args.negatives,
        "k": args.k,
        "walks": args.walks,
    }
    histograms = {}
    with tempfile.TemporaryDirectory() as cache:
        for label, (mode, weighted) in modes.items():
            sampler = build_sampler(
                "sans",
                train=kg.train,
                num_entities=kg.num_entities,
                num_negatives=args.negatives,
                k_hop=args.k,
                walks=args.walks,
                walk_mode=mode,
                weighted=weighted,
                seed=args.seed,
                cache_dir=cache,
                filter=True,
            )
            neg = sampler.sample(
                pos, "tail", generator=torch.Generator().manual_seed(args.seed)
            ).numpy()
            hops = np.take_along_axis(dist, neg, axis=1)
            hist = np.bincount(hops.ravel(), minlength=MAX_BIN + 1) / hops.size
            histograms[label] = hist
            distinct = [len(np.unique(row)) for row in neg]
            result[mode] = {
                "share_within_k_hops": round(float((hops <= args.k).mean()), 4),
                "median_distinct_per_row": float(np.median(distinct)),
                "hop_histogram": [round(float(x), 4) for x in hist],
            }
    print(json.dumps(result, indent=2))
    if args.plot is not None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6.4, 3.4))
        width = 0.4
        x = np.arange(MAX_BIN + 1)
        for i, (label, hist) in enumerate(histograms.items()):
            ax.bar(x + (i - 0.5) * width, hist, width=width, label=label)
        ax.set_xticks(x, [str(i) for i in range(MAX_BIN)] + [f"{MAX_BIN}+"])
        ax.axvline(args.k + 0.5, color="grey", linestyle=":", linewidth=1)
        ax.set_xlabel(f"hop distance from the anchor ({args.dataset} training graph)")
        ax.set_ylabel("share of drawn negatives")
        ax.set_title(
            f"SANS negatives, k = {args.k}, w = {args.walks}, {args.triples} triples x {args.negatives}"
        )
        ax.legend(fontsize=8)
        fig.tight_layout()
        args.plot.parent.mkdir(parents=True, exist_ok=True)
        save_figure(fig, args.plot, dpi=110)


if __name__ == "__main__":
    main()
