"""``train.compile`` on the CPU: the step's time eager and compiled, and what compiling costs.

For each DistMult paper arm on WN18RR (batch 1000, 256 negatives, d = 100, schedule none)
and the shared step (``sampler.shared_chunk: 1000``, uniform negatives: DistMult with EMU,
a matrix-product decoder; RotatE and TransE-L1 with EMU, which broadcast), this builds
the trainer eagerly and with ``train.compile: true``, runs four steps (both corrupted sides
compile in them), then times ``--steps`` more. Figures are CPU seconds of this process
(``time.process_time``), the minimum over the timed steps, so that other jobs on the
machine disturb them little; use ``--threads 1`` on a busy machine. Prints one JSON object:
per case the first four steps' CPU seconds (compiling included) and the step's CPU ms.

    python benchmarks/bench_compile.py --data-dir ../shared/datasets [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch

from emu_dgl.config import load_config
from emu_dgl.data import load_dataset
from emu_dgl.training.trainer import Trainer

REPO = Path(__file__).resolve().parents[1]
CASES = {
    "uniform-base": ("uniform-base", ()),
    "uniform-emu": ("uniform-emu", ()),
    "sans-emu": ("sans-emu", ()),
    "shared-emu": ("uniform-emu", ("sampler.shared_chunk=1000", "emu.separate_draws=false")),
    "shared-rotate": ("uniform-base", ("sampler.shared_chunk=1000", "model.name=rotate")),
    "shared-transe-l1-emu": (
        "uniform-emu",
        ("sampler.shared_chunk=1000", "emu.separate_draws=false", "model.name=transe"),
    ),
}


def measure(kg, arm: str, extra: tuple[str, ...], compiled: bool, args) -> dict:
    config = load_config(
        REPO / "configs/paper/wn18rr/distmult.yaml",
        [
            f"train.threads={args.threads}",
            "train.progress=false",
            "train.schedule=none",
            f"train.compile={str(compiled).lower()}",
            *extra,
        ],
        arm=arm,
    )
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(config, Path(tmp) / "run", kg=kg)
        start = time.process_time()
        for step in range(4):
            trainer.train_step(step)
        first = time.process_time() - start
        best = float("inf")
        for step in range(4, 4 + args.steps):
            start = time.process_time()
            trainer.train_step(step)
            best = min(best, time.process_time() - start)
    return {"first_4_steps_cpu_s": round(first, 2), "step_cpu_ms": round(1000 * best, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    kg = load_dataset("wn18rr", args.data_dir)
    out: dict = {
        "benchmark": "train_compile_cpu",
        "threads": args.threads,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "cases": {},
    }
    for name in args.cases:
        arm, extra = CASES[name]
        out["cases"][name] = {
            mode: measure(kg, arm, extra, mode == "compiled", args)
            for mode in ("eager", "compiled")
        }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
