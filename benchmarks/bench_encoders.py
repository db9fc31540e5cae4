"""Seconds per training step with a graph encoder, against the table, on one dataset.

Each case is a config (the arguments after the dataset name are ``--set`` overrides shared
by every case; ``--case NAME=KEY=VALUE;KEY=VALUE`` adds a case). Prints one JSON object:
per case the median seconds per step after warm-up, the steps measured, and the load
average of the machine while it ran (the machine is often shared: say the load with any
number you quote).

    python benchmarks/bench_encoders.py fb15k-237 --threads 2 --steps 5 \
        --case table=model.encoder=table \
        --case "rgcn-bdd=model.encoder=rgcn;model.encoder_decomposition=bdd"
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from emu_dgl.config import load_config
from emu_dgl.data import load_dataset
from emu_dgl.training.trainer import Trainer

DEFAULT_CASES = {
    "table": "model.encoder=table",
    "rgcn-bdd-2": "model.encoder=rgcn;model.encoder_decomposition=bdd;model.encoder_layers=2",
    "rgcn-basis-2": "model.encoder=rgcn;model.encoder_decomposition=basis;model.encoder_layers=2",
    "compgcn-mult-1": "model.encoder=compgcn;model.encoder_composition=mult",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset")
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    parser.add_argument("--case", action="append", default=[], help="NAME=KEY=VALUE;KEY=VALUE")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    cases = dict(c.split("=", 1) for c in args.case) if args.case else DEFAULT_CASES
    torch.set_num_threads(args.threads)
    kg = load_dataset(args.dataset)
    base = [
        "model.name=distmult",
        "train.progress=false",
        f"train.threads={args.threads}",
        "train.device=cpu",
        *args.overrides,
    ]
    results = {}
    for name, keys in cases.items():
        config = load_config(None, [*base, *keys.split(";")])
        with tempfile.TemporaryDirectory() as folder:
            trainer = Trainer(config, Path(folder) / "run", kg=kg)
            times = []
            for step in range(args.warmup + args.steps):
                start = time.perf_counter()
                float(trainer.train_step(step))  # waits for the step
                times.append(time.perf_counter() - start)
        results[name] = {
            "seconds_per_step": statistics.median(times[args.warmup :]),
            "steps": args.steps,
            "load_average": os.getloadavg()[0],
        }
        print(name, results[name], file=sys.stderr, flush=True)
    print(json.dumps({"dataset": args.dataset, "threads": args.threads, "cases": results}))


if __name__ == "__main__":
    main()
