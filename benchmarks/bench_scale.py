"""Step time and peak memory of the Trainer step as the entity count grows.

The same step at every size: DistMult d=100, batch 1000, 256 uniform negatives, EMU
on, on a random graph of 300k training triples over E entities. A step touches about
B * (n + 2) = 258k entity rows whatever E is, so with sparse rows (``train.sparse``)
its cost should not grow with E; with dense gradients it reads and writes all E rows.

Each (size, mode) runs in a fresh process, so ``peak_rss_mib`` (the process's maximum
resident memory: tables, optimizer state, graph, step intermediates) is its own.
Prints one JSON object; ``ratio_vs_smallest`` compares best step times.

    python benchmarks/bench_scale.py                      # 40k, 400k, 4M; sparse and dense
    python benchmarks/bench_scale.py --sizes 40000,4000000 --modes sparse --steps 20
    python benchmarks/bench_scale.py --nproc 1,2          # also 2 gloo processes (per-rank figures)

With ``--nproc 2`` each rank trains on half of every batch with half of the table; its
step time is the slower rank's, and ``peak_rss_mib_per_rank`` is each rank's memory.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def measure(
    entities: int, mode: str, steps: int, warmup: int, threads: int, optimizer: str, nproc: int = 1
) -> dict:
    """One configuration: seconds per Trainer step and peak RSS (per rank with ``nproc`` > 1)."""
    if nproc > 1:
        from emu_dgl.distributed import run_workers

        with tempfile.TemporaryDirectory() as out:
            run_workers(nproc, _rank_worker, out, entities, mode, steps, warmup, threads, optimizer)
            ranks = [json.loads((Path(out) / f"{r}.json").read_text()) for r in range(nproc)]
        return {
            "best_s": max(r["best_s"] for r in ranks),
            "median_s": max(r["median_s"] for r in ranks),
            "peak_rss_mib_per_rank": [r["peak_rss_mib"] for r in ranks],
            "entity_rows_per_rank": [r["rows"] for r in ranks],
        }
    return _measure_here(entities, mode, steps, warmup, threads, optimizer)


def _rank_worker(rank: int, world: int, out: str, *args: object) -> None:
    result = _measure_here(*args)  # type: ignore[arg-type]
    from emu_dgl.files import write_atomic

    write_atomic(Path(out) / f"{rank}.json", json.dumps(result), "result", durable=False)


def _measure_here(
    entities: int, mode: str, steps: int, warmup: int, threads: int, optimizer: str
) -> dict:
    import torch
    import torch.distributed as dist

    from emu_dgl.config import load_config
    from emu_dgl.data import KnowledgeGraph
    from emu_dgl.training.trainer import Trainer

    torch.set_num_threads(threads)
    if dist.is_initialized():
        from emu_dgl.distributed.trainer import DistributedTrainer as Trainer  # noqa: N814
    gen = torch.Generator().manual_seed(0)
    num_relations, num_triples = 100, 300_000

    def triples(n: int) -> torch.Tensor:
        return torch.stack(
            [
                torch.randint(entities, (n,), generator=gen),
                torch.randint(num_relations, (n,), generator=gen),
                torch.randint(entities, (n,), generator=gen),
            ],
            dim=1,
        )

    kg = KnowledgeGraph(
        name=f"random-{entities}",
        entity_names=[f"e{i}" for i in range(entities)],
        relation_names=[f"r{i}" for i in range(num_relations)],
        train=triples(num_triples),
        valid=triples(100),
        test=triples(100),
    )
    config = load_config(
        None,
        [
            "model.name=distmult",
            "model.dim=100",
            "sampler.name=uniform",
            "sampler.num_negatives=256",
            "train.batch_size=1000",
            f"train.optimizer={optimizer}",
            f"train.sparse={'true' if mode == 'sparse' else 'false'}",
            "train.device=cpu",
            f"train.threads={threads}",
            "train.progress=false",
        ],
    )
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(config, run_dir, kg=kg)
        for step in range(warmup):
            trainer.train_step(step)
        times = []
        for step in range(warmup, warmup + steps):
            start = time.perf_counter()
            trainer.train_step(step)
            times.append(time.perf_counter() - start)
        rows = trainer.model.entity.weight.shape[0]
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {
        "best_s": min(times),
        "median_s": statistics.median(times),
        "peak_rss_mib": peak_kib / 1024,
        "rows": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", default="40000,400000,4000000", help="entity counts, comma-separated"
    )
    parser.add_argument(
        "--modes", default="sparse,dense", help="sparse and/or dense entity gradients"
    )
    parser.add_argument(
        "--optimizer", default="adagrad", choices=["adagrad", "adam", "rowwise_adagrad"]
    )
    parser.add_argument("--steps", type=int, default=10, help="timed steps per configuration")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument(
        "--nproc", default="1", help="process counts to compare, e.g. 1,2 (2+: sparse only, gloo)"
    )
    parser.add_argument(
        "--one", default=None, help=argparse.SUPPRESS
    )  # internal: "entities,mode,nproc"
    args = parser.parse_args()

    if args.one is not None:
        entities, mode, nproc = args.one.split(",")
        print(
            json.dumps(
                measure(
                    int(entities),
                    mode,
                    args.steps,
                    args.warmup,
                    args.threads,
                    args.optimizer,
                    int(nproc),
                )
            )
        )
        return

    sizes = [int(s) for s in args.sizes.split(",")]
    runs = [(mode, 1) for mode in args.modes.split(",")]
    runs += [("sparse", int(n)) for n in args.nproc.split(",") if int(n) > 1]
    results: dict[str, dict[str, dict[str, float]]] = {}
    for mode, nproc in runs:
        key = mode if nproc == 1 else f"{mode}_{nproc}proc"
        results[key] = {}
        for entities in sizes:
            cmd = [
                sys.executable,
                __file__,
                "--one",
                f"{entities},{mode},{nproc}",
                "--steps",
                str(args.steps),
                "--warmup",
                str(args.warmup),
                "--threads",
                str(args.threads),
                "--optimizer",
                args.optimizer,
            ]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            results[key][str(entities)] = json.loads(out.strip().splitlines()[-1])
        smallest = results[key][str(sizes[0])]["best_s"]
        for row in results[key].values():
            row["ratio_vs_smallest"] = row["best_s"] / smallest
    print(
        json.dumps(
            {
                "step": "Trainer.train_step: distmult d=100, batch 1000, 256 uniform negatives, EMU on, cpu",
                "optimizer": args.optimizer,
                "train_triples": 300_000,
                "threads": args.threads,
                "steps": args.steps,
                "machine": {
                    "cpus": os.cpu_count(),
                    "platform": platform.platform(),
                    "load_avg": os.getloadavg(),
                },
                "results": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
