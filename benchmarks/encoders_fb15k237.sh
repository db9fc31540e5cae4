#!/usr/bin/env bash
# FB15k-237, R-GCN encoder + DistMult decoder, base loss and EMU, on the CPU: the runs
# behind the README's "FB15k-237: R-GCN + DistMult against DGL's own example".
#
# Runs both arms of configs/encoders/fb15k-237-rgcn-distmult.yaml one after the other
# (emu-dgl compare, one job, train.threads=2), and writes OUT/summary.json: each arm's
# filtered test and valid metrics of its best validated checkpoint, its wall time
# (training, validations and the final evaluation), and the machine's load average
# before and after (the machine may be shared: quote the load with the numbers).
#
#   bash benchmarks/encoders_fb15k237.sh OUT [--set KEY=VALUE ...]
#   (EMU_DGL_DATA must point at a folder holding fb15k-237/)
set -euo pipefail
out=${1:?usage: encoders_fb15k237.sh OUT [--set KEY=VALUE ...]}
shift
here=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$out"
before=$(cut -d' ' -f1-3 /proc/loadavg)
start=$(date +%s)
emu-dgl compare --config "$here/configs/encoders/fb15k-237-rgcn-distmult.yaml" \
    --out "$out/compare" --jobs 1 "$@" 2>&1 | tee "$out/compare.log"
after=$(cut -d' ' -f1-3 /proc/loadavg)
python - "$out" "$before" "$after" "$(( $(date +%s) - start ))" <<'PY'
import json, sys
from pathlib import Path

out, before, after, seconds = Path(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
results = json.loads((out / "compare" / "results.json").read_text())
keys = ("mrr", "hits@1", "hits@3", "hits@10")
arms = {
    run["arm"]: {
        "test": {k: run["test"][k] for k in keys},
        "valid": {k: run["valid"][k] for k in keys},
        "best_step": run.get("best_step"),
        "wall_minutes": run["wall_seconds"] / 60,
    }
    for run in results["runs"]
}
summary = {
    "dataset": "fb15k-237",
    "config": "configs/encoders/fb15k-237-rgcn-distmult.yaml",
    "arms": arms,
    "load_average_before": before,
    "load_average_after": after,
    "total_minutes": seconds / 60,
    "machine": results.get("machine"),
    "dgl_example": {
        "figure": 0.2397,
        "what": "FB15k-237 filtered test MRR, 'Best MRR ~0.2397', examples/pytorch/rgcn/README.md "
        "(link.py: 2-layer R-GCN, block-diagonal 100 blocks, width 500, DistMult, 6,000 steps "
        "of 30,000 sampled edges, 10 negatives per edge, binary cross-entropy, Adam 0.01)",
    },
}
(out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
print(json.dumps(summary, indent=2))
PY
