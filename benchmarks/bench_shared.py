"""Positives per second of the shared-negative step against the per-positive one.

For each decoder on WN18RR (d = 100, batch 1000, 256 uniform negatives, the default
false-negative filter on), this times ``Trainer.train_step`` of emu-dgl's per-positive
step (``sampler.shared_chunk: 0``, every paper arm's form) and of the shared step
(``sampler.shared_chunk: 1000``: one draw of 256 negatives per step), without and with
EMU, in one process, interleaved (per-positive, shared, per-positive, ...), so that load
from other jobs falls on both alike. Each figure is the median over ``--rounds`` of
``--steps`` steps. The targets (issue: training at matrix-multiply speed): shared over
per-positive at least 15x for DistMult and ComplEx, 10x with EMU, 8x for TransE-L2, 3x
for RotatE.

Also, with ``--graph small``, the same on a 2k-entity graph (the built-in synthetic
generator at 160 families: about 2,000 entities; ComplEx and DistMult, batch 512, 64
negatives), where the per-positive EMU step's cost against the base step is the figure
of interest.

Prints one JSON object.

    python benchmarks/bench_shared.py --data-dir ../shared/datasets [--threads 2]
    python benchmarks/bench_shared.py --graph small
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time

import torch

from emu_dgl.config import load_config
from emu_dgl.data import load_dataset
from emu_dgl.data.synthetic import generate_synthetic
from emu_dgl.training.trainer import Trainer

DECODERS = {
    "distmult": ("model.name=distmult",),
    "complex": ("model.name=complex",),
    "transe_l2": ("model.name=transe", "model.p_norm=2"),
    "transe_l1": ("model.name=transe",),
    "rotate": ("model.name=rotate",),
}


def runner(kg, options, *, emu: bool, chunk: int, batch: int, negatives: int, threads: int):
    config = load_config(
        None,
        [
            *options,
            "model.dim=100",
            "sampler.name=uniform",
            f"sampler.num_negatives={negatives}",
            f"sampler.shared_chunk={chunk}",
            f"emu.enabled={str(emu).lower()}",
            f"train.batch_size={batch}",
            "train.device=cpu",
            f"train.threads={threads}",
            "train.progress=false",
        ],
    )
    folder = tempfile.mkdtemp(prefix="emu-dgl-bench-")
    trainer = Trainer(config, run_dir=f"{folder}/run", kg=kg)
    return trainer.train_step


def interleaved(steps_a, steps_b, *, steps: int, rounds: int, clock) -> tuple[float, float]:
    """Median seconds per step of two step functions, timed in alternating rounds."""
    times: tuple[list[float], list[float]] = ([], [])
    for run in (steps_a, steps_b):  # warm-up (optimizer state, allocator)
        for i in range(2):
            run(i)
    counters = [2, 2]
    for _ in range(rounds):
        for k, run in enumerate((steps_a, steps_b)):
            start = clock()
            for _ in range(steps):
                run(counters[k])
                counters[k] += 1
            times[k].append((clock() - start) / steps)
    return statistics.median(times[0]), statistics.median(times[1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--graph", choices=["wn18rr", "small"], default="wn18rr")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3, help="steps per timed round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--decoders", nargs="+", default=list(DECODERS), choices=list(DECODERS))
    parser.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="wall: seconds per step (a quiet machine); cpu: this process's CPU seconds per "
        "step, divided by the threads (less disturbed by other jobs on a busy machine)",
    )
    args = parser.parse_args()
    clock = (
        time.perf_counter if args.clock == "wall" else (lambda: time.process_time() / args.threads)
    )
    torch.set_num_threads(args.threads)
    if args.graph == "small":
        kg, batch, negatives = generate_synthetic(num_families=160), 512, 64
    else:
        kg, batch, negatives = load_dataset("wn18rr", args.data_dir), 1000, 256
    out: dict = {
        "benchmark": "shared_negatives_throughput",
        "graph": kg.name,
        "entities": kg.num_entities,
        "batch_size": batch,
        "num_negatives": negatives,
        "dim": 100,
        "threads": args.threads,
        "clock": args.clock,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "machine": platform.processor() or platform.machine(),
        "positives_per_second": {},
        "shared_over_per_positive": {},
        "per_positive_emu_over_base_time": {},
    }
    for name in args.decoders:
        rates = {}
        for emu in (False, True):
            make = dict(batch=batch, negatives=negatives, threads=args.threads, emu=emu)
            per = runner(kg, DECODERS[name], chunk=0, **make)
            shared = runner(kg, DECODERS[name], chunk=batch, **make)
            t_per, t_shared = interleaved(
                per, shared, steps=args.steps, rounds=args.rounds, clock=clock
            )
            arm = "emu" if emu else "base"
            rates[f"per_positive_{arm}"] = batch / t_per
            rates[f"shared_{arm}"] = batch / t_shared
        out["positives_per_second"][name] = {k: round(v, 1) for k, v in rates.items()}
        out["shared_over_per_positive"][name] = {
            arm: round(rates[f"shared_{arm}"] / rates[f"per_positive_{arm}"], 2)
            for arm in ("base", "emu")
        }
        out["per_positive_emu_over_base_time"][name] = round(
            rates["per_positive_base"] / rates["per_positive_emu"], 2
        )
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
