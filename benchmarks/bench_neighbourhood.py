"""Neighbourhood build and SANS sampling cost; prints one JSON object.

For each dataset (k = 3, w = 1000 by default) and each walk mode
(``--walk-modes``, default both):

* ``bare_walk_s``: one ``dgl.sampling.random_walk`` call of the same total
  length as our build - the floor: for ``restart`` every entity repeated ``w``
  times with length ``k``; for ``continue`` every entity once with length
  ``k * w``;
* ``build_s``: :func:`emu_dgl.graph.build_neighbourhood` (walks + counting +
  CSR), no cache, and ``ratio`` = build / bare (each the minimum over
  ``--repeats`` alternating runs; all runs are listed too);
* ``nnz``, ``csr_bytes``, ``surviving_walks``;
* ``peak_rss_mb``: peak resident memory (VmHWM) of a fresh process that loads
  the triples and builds the neighbourhood, and ``bare_peak_rss_mb`` of one
  that makes the bare call; ``loaded_rss_mb`` is the process before either;
* ``exact``: the exact k-hop build (time, nnz, bytes, peak RSS), or the reason
  it was skipped;
* ``step_ms``: per-step sampling cost for B positives x n negatives (tail side)
  from the precomputed CSR (weighted), the same with the false-negative filter,
  on-the-fly walks, and uniform.

Each measurement runs in its own spawned process so peak-memory figures do not
mix. Usage::

    python benchmarks/bench_neighbourhood.py --data-dir DATA [--datasets wn18rr fb15k-237]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import time
from pathlib import Path
from typing import Any

import torch


def read_train(folder: Path) -> tuple[torch.Tensor, int]:
    """Training triples with entity/relation ids over train+valid+test."""
    from emu_dgl.data import load_dataset

    kg = load_dataset(folder, cache=False)
    return kg.train, kg.num_entities


def rss_mb(field: str = "VmHWM") -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


# ---------------------------------------------------------------------------- parts (child processes)


def part_bare(folder: str, k: int, walks: int, seed: int, walk_mode: str) -> dict[str, Any]:
    from emu_dgl._dgl import dgl
    from emu_dgl.graph import training_graph

    train, n = read_train(Path(folder))
    graph = training_graph(train, n)
    if walk_mode == "restart":
        seeds, length = torch.arange(n).repeat_interleave(walks), k
    else:
        seeds, length = torch.arange(n), k * walks
    loaded = rss_mb("VmRSS")
    dgl.seed(seed)
    start = time.perf_counter()
    trace, _ = dgl.sampling.random_walk(graph, seeds, length=length)
    elapsed = time.perf_counter() - start
    return {
        "bare_walk_s": round(elapsed, 3),
        "walks": int(seeds.numel()),
        "bare_peak_rss_mb": round(rss_mb(), 1),
        "bare_loaded_rss_mb": round(loaded, 1),
        "entities": n,
        "train_triples": int(train.shape[0]),
        "graph_edges_directed": int(graph.num_edges()),
    }


def part_build(
    folder: str, k: int, walks: int, seed: int, walk_mode: str = "restart"
) -> dict[str, Any]:
    from emu_dgl.graph import build_neighbourhood

    train, n = read_train(Path(folder))
    loaded = rss_mb("VmRSS")
    start = time.perf_counter()
    nb = build_neighbourhood(
        train, n, k=k, walks=walks, seed=seed, walk_mode=walk_mode, cache_dir=None
    )
    elapsed = time.perf_counter() - start
    out = {
        "build_s": round(elapsed, 3),
        "nnz": nb.nnz,
        "csr_bytes": nb.nbytes,
        "csr_mb": round(nb.nbytes / 2**20, 1),
        "peak_rss_mb": round(rss_mb(), 1),
        "loaded_rss_mb": round(loaded, 1),
    }
    if walks > 0:
        assert nb.counts is not None
        out["recorded_nodes_kept"] = int(nb.counts.sum())
        out["mean_candidates"] = round(nb.nnz / n, 1)
    return out


def part_steps(
    folder: str, k: int, walks: int, seed: int, batch: int, negatives: int, steps: int
) -> dict[str, Any]:
    from emu_dgl.graph import build_neighbourhood
    from emu_dgl.sampling import FilteredSampler, OnTheFlyWalkSampler, SANSSampler, UniformSampler

    train, n = read_train(Path(folder))
    nb = build_neighbourhood(train, n, k=k, walks=walks, seed=seed, walk_mode="continue")
    csr = SANSSampler(nb, num_negatives=negatives, weighted=False)
    samplers = {
        "csr_continue": csr,
        "csr_continue_weighted": SANSSampler(nb, num_negatives=negatives, weighted=True),
        "csr_continue_filtered": FilteredSampler(csr, train, n),
        "on_the_fly": OnTheFlyWalkSampler(
            train=train, num_entities=n, num_negatives=negatives, k_hop=k, seed=seed
        ),
        "uniform": UniformSampler(num_entities=n, num_negatives=negatives),
    }
    gen = torch.Generator().manual_seed(seed)
    batches = [train[torch.randint(0, len(train), (batch,), generator=gen)] for _ in range(steps)]
    out: dict[str, Any] = {}
    for name, sampler in samplers.items():
        sampler.sample(batches[0], "tail", generator=gen, step=0)  # warm-up
        start = time.perf_counter()
        for step, pos in enumerate(batches):
            sampler.sample(pos, "tail", generator=gen, step=step)
        out[name] = round(1000 * (time.perf_counter() - start) / steps, 2)
    return out


def _child(queue: mp.Queue, fn_name: str, args: tuple[Any, ...]) -> None:
    queue.put(globals()[fn_name](*args))


def isolated(fn_name: str, *args: Any) -> dict[str, Any]:
    """Run ``fn_name(*args)`` in a fresh spawned process and return its dict."""
    ctx = mp.get_context("spawn")
    queue: mp.Queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(queue, fn_name, args))
    proc.start()
    result = queue.get()
    proc.join()
    return result


# ---------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--datasets", nargs="+", default=["wn18rr", "fb15k-237"])
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--walks", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--negatives", type=int, default=256)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--walk-modes", nargs="+", default=["continue", "restart"])
    parser.add_argument("--no-exact", action="store_true", help="skip the exact k-hop builds")
    parser.add_argument(
        "--repeats", type=int, default=3, help="bare/build runs (alternating); the minimum is kept"
    )
    args = parser.parse_args()

    report: dict[str, Any] = {
        "benchmark": "neighbourhood",
        "k": args.k,
        "walks_per_entity": args.walks,
        "seed": args.seed,
        "torch_threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "datasets": {},
    }
    for name in args.datasets:
        folder = str(args.data_dir / name)
        entry: dict[str, Any] = {}
        for mode in args.walk_modes:
            part: dict[str, Any] = {}
            bare: list[dict[str, Any]] = []
            built: list[dict[str, Any]] = []
            for _ in range(max(1, args.repeats)):
                bare.append(isolated("part_bare", folder, args.k, args.walks, args.seed, mode))
                built.append(isolated("part_build", folder, args.k, args.walks, args.seed, mode))
            part.update(min(bare, key=lambda r: r["bare_walk_s"]))
            part.update(min(built, key=lambda r: r["build_s"]))
            part["bare_walk_s_all"] = [r["bare_walk_s"] for r in bare]
            part["build_s_all"] = [r["build_s"] for r in built]
            part["ratio"] = round(part["build_s"] / part["bare_walk_s"], 2)
            entry[mode] = part
        if args.no_exact:
            entry["exact"] = {"skipped": "--no-exact"}
        else:
            entry["exact"] = isolated("part_build", folder, args.k, 0, args.seed)
        entry["step_ms"] = {
            "batch": args.batch,
            "negatives": args.negatives,
            **isolated(
                "part_steps",
                folder,
                args.k,
                args.walks,
                args.seed,
                args.batch,
                args.negatives,
                args.steps,
            ),
        }
        report["datasets"][name] = entry
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
