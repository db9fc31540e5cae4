"""ATen operations per training step, by ``torch.profiler`` on the CPU.

On a GPU a step is launch-bound: each ATen operation is (about) one kernel launch, so
this count, not the CPU seconds, predicts the GPU step time. For every decoder and the
four paper arms (``configs/paper/<dataset>/<decoder>.yaml``: batch 1000, 256 negatives,
d = 100) this builds the Trainer and counts every ``aten::`` event (nested ones
included) of ``Trainer.train_step`` over a head and a tail step, after warm-up. Prints
one JSON object with the counts, the counts before the pure step (measured the same way
at the commit before it) and the targets (DistMult uniform-emu 250,
uniform-base 150, RotatE uniform-emu 400).

    python benchmarks/bench_step_ops.py --data-dir ../shared/datasets [--dataset wn18rr]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
from pathlib import Path

import torch

from emu_dgl.config import load_config
from emu_dgl.training.step import aten_ops_per_call
from emu_dgl.training.trainer import Trainer

REPO = Path(__file__).resolve().parents[1]
ARMS = ("uniform-base", "uniform-emu", "sans-base", "sans-emu")

#: Measured with the same counting on the code before the pure step (commit 7510b72),
#: WN18RR, batch 1000, 256 negatives, one thread (HAKE's EMU arms split the mask per
#: coordinate block in a loop of small operations).
BEFORE = {
    "transe": {"uniform-base": 307, "uniform-emu": 776, "sans-base": 546, "sans-emu": 757},
    "distmult": {"uniform-base": 288, "uniform-emu": 733, "sans-base": 527, "sans-emu": 731},
    "complex": {"uniform-base": 370, "uniform-emu": 897, "sans-base": 609, "sans-emu": 813},
    "rotate": {"uniform-base": 494, "uniform-emu": 1094, "sans-base": 733, "sans-emu": 1037},
    "hake": {"uniform-base": 667, "uniform-emu": 25553, "sans-base": 906, "sans-emu": 25269},
}
TARGETS = {"distmult": {"uniform-base": 150, "uniform-emu": 250}, "rotate": {"uniform-emu": 400}}


def count(config_path: Path, arm: str, extra: list[str]) -> float:
    config = load_config(config_path, extra, arm=arm)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(config, tmp)
        steps = iter(range(100))
        return aten_ops_per_call(lambda: trainer.train_step(next(steps)), calls=2, warmup=2)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--dataset", default="wn18rr")
    parser.add_argument(
        "--decoders", nargs="+", default=["transe", "distmult", "complex", "rotate", "hake"]
    )
    parser.add_argument("--arms", nargs="+", default=list(ARMS))
    args = parser.parse_args()
    torch.set_num_threads(1)
    extra = ["train.device=cpu", "train.progress=false", "train.threads=1"]
    if args.data_dir:
        extra.append(f"dataset.data_dir={args.data_dir}")
    ops: dict[str, dict[str, float]] = {}
    for decoder in args.decoders:
        path = REPO / "configs" / "paper" / args.dataset / f"{decoder}.yaml"
        ops[decoder] = {arm: count(path, arm, extra) for arm in args.arms}
    met = {
        f"{decoder} {arm}": ops[decoder][arm] <= target
        for decoder, arms in TARGETS.items()
        for arm, target in arms.items()
        if decoder in ops and arm in ops[decoder]
    }
    result = {
        "benchmark": "aten_ops_per_step",
        "dataset": args.dataset,
        "counted": "every aten:: event of torch.profiler (CPU) per Trainer.train_step",
        "machine": f"{platform.machine()}, torch {torch.__version__}",
        "ops_per_step": ops,
        "before": BEFORE,
        "targets": TARGETS,
        "targets_met": met,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
