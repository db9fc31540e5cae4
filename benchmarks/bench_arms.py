"""Step time of the paper's four arms, plus the uniform EMU arm with one shared draw.

For a paper config (default ``configs/paper/wn18rr/distmult.yaml``) this builds the
Trainer of every named arm (``uniform-base``, ``uniform-emu``, ``sans-base``,
``sans-emu``) and of ``uniform-emu`` with ``emu.separate_draws=false`` (one draw
shared by the one-hot and the EMU term: the single-pass fast path), then times
``train_step`` after a warm-up. The SANS neighbourhood is built (or loaded from the
cache) before timing. Prints one JSON object with seconds per step per arm.

    python benchmarks/bench_arms.py --data-dir ../shared/datasets [--config ...] \
        [--steps 20] [--batch 1000] [--negatives 256]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time

import torch

from emu_dgl.config import config_arms, load_config
from emu_dgl.training.trainer import Trainer


def time_arm(config_path: str, arm: str, extra: list[str], steps: int) -> float:
    config = load_config(config_path, extra, arm=arm)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(config, tmp)
        for step in range(3):  # warm-up
            trainer.train_step(step)
        start = time.perf_counter()
        for step in range(3, 3 + steps):
            trainer.train_step(step)
        return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="configs/paper/wn18rr/distmult.yaml")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--negatives", type=int, default=256)
    args = parser.parse_args()
    extra = [
        f"train.batch_size={args.batch}",
        f"sampler.num_negatives={args.negatives}",
        "train.device=cpu",
        "train.progress=false",
    ]
    if args.data_dir:
        extra.append(f"dataset.data_dir={args.data_dir}")
    result: dict[str, object] = {
        "config": args.config,
        "batch": args.batch,
        "negatives": args.negatives,
        "steps": args.steps,
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
    }
    seconds: dict[str, float] = {}
    for arm in config_arms(args.config):
        seconds[arm] = time_arm(args.config, arm, extra, args.steps)
    seconds["uniform-emu-shared-draw"] = time_arm(
        args.config, "uniform-emu", [*extra, "emu.separate_draws=false"], args.steps
    )
    result["seconds_per_step"] = {k: round(v, 4) for k, v in seconds.items()}
    result["separate_over_shared"] = round(
        seconds["uniform-emu"] / seconds["uniform-emu-shared-draw"], 3
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
