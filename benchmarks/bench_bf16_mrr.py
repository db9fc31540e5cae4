"""What a bfloat16 entity table costs in MRR: FB15k-237, DistMult, at the CPU protocol budget.

The same run twice per seed, ``model.dtype: float32`` and ``bfloat16``, everything else
equal: the ``uniform-emu`` arm of ``configs/paper/fb15k-237/distmult.yaml`` at the
budget of ``benchmarks/paper_protocol.sh --budget cpu`` (1,000 steps at batch 512 with
128 negatives, validation on 1,000 valid triples every 250 steps, the best validated
model ranked against all entities on the full test split), with two changes that a
bfloat16 table needs and both dtypes get: ``train.schedule: none`` (the reference
schedule switches to dense Adam over every row, which a bfloat16 table does not take)
and ``train.sparse: true`` (row-wise updates). Target: at most 0.005 MRR lost.

Prints one JSON object (filtered test MRR per seed and dtype, and the mean difference)::

    python benchmarks/bench_bf16_mrr.py --data-dir "$EMU_DGL_DATA" --out /tmp/bf16-mrr
    python benchmarks/bench_bf16_mrr.py --data-dir "$EMU_DGL_DATA" --out /tmp/bf16-mrr --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "paper" / "fb15k-237" / "distmult.yaml"
BUDGET = [
    "train.max_steps=1000",
    "train.batch_size=512",
    "sampler.num_negatives=128",
    "train.valid_every=250",
    "eval.valid_max_triples=1000",
    "train.checkpoint_every=0",
    "train.progress=false",
    "train.device=cpu",
]
CHANGES = ["train.schedule=none", "train.sparse=true"]


def run(out: Path, data_dir: str, seed: int, dtype: str, threads: int) -> dict:
    sets = [*BUDGET, *CHANGES, f"model.dtype={dtype}", f"train.seed={seed}"]
    sets.append(f"train.threads={threads}")
    code = "import sys; from emu_dgl.cli import main; sys.argv[0] = 'emu-dgl'; main()"
    args = [sys.executable, "-c", code, "train", "--config", str(CONFIG), "--arm", "uniform-emu"]
    args += ["--data-dir", data_dir, "--out", str(out)]
    args += [a for s in sets for a in ("--set", s)]
    started = time.perf_counter()
    if not (out / "metrics.json").is_file():  # a finished run is reused
        subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
    metrics = json.loads((out / "metrics.json").read_text())
    return {
        "test_mrr": round(metrics["test"]["mrr"], 4),
        "valid_mrr": round(metrics["valid"]["mrr"], 4),
        "best_step": metrics["best_step"],
        "wall_s": round(time.perf_counter() - started, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get("EMU_DGL_DATA"))
    parser.add_argument("--out", required=True, help="folder for the runs")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    if not args.data_dir:
        raise SystemExit("pass --data-dir (the folder holding fb15k-237/) or set EMU_DGL_DATA")
    results: dict[str, dict[str, dict]] = {}
    for seed in (int(s) for s in args.seeds.split(",")):
        for dtype in ("float32", "bfloat16"):
            out = Path(args.out) / f"seed{seed}-{dtype}"
            results.setdefault(str(seed), {})[dtype] = run(
                out, args.data_dir, seed, dtype, args.threads
            )
            print(json.dumps({seed: results[str(seed)]}), file=sys.stderr, flush=True)
    losses = [r["float32"]["test_mrr"] - r["bfloat16"]["test_mrr"] for r in results.values()]
    report = {
        "loadavg_1_5_15": [round(x, 2) for x in os.getloadavg()],
        "config": f"{CONFIG.relative_to(CONFIG.parents[2])} --arm uniform-emu",
        "sets": [*BUDGET, *CHANGES],
        "runs": results,
        "mrr_lost_by_bfloat16_mean": round(statistics.mean(losses), 4),
        "target_mrr_lost_at_most": 0.005,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
