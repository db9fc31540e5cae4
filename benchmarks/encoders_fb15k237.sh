#!/usr/bin/env bash
# FB15k-237, R-GCN encoder + DistMult decoder, base loss and EMU, on the CPU: the runs
# behind the README's "FB15k-237: R-GCN + DistMult against DGL's own example".
#
# Runs both arms of configs/encoders/fb15k-237-rgcn-distmult.yaml one after the other
# (emu-dgl compare, one job, train.threads=2), and writes OUT/summary.json: each arm's
# filtered test and valid metrics of its best validated checkpoint, its wall time and CPU
# time (user + system: on a shared machine the wall time grows with the other jobs, the
# CPU time much less; 60 minutes on 2 cores are 120 CPU minutes), and the machine's load
# average before and after each arm (quote the load with the numbers).
#
#   bash benchmarks/encoders_fb15k237.sh OUT [--set KEY=VALUE ...]
#   (EMU_DGL_DATA must point at a folder holding fb15k-237/)
set -euo pipefail
out=${1:?usage: encoders_fb15k237.sh OUT [--set KEY=VALUE ...]}
shift
here=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$out"
config="$here/configs/encoders/fb15k-237-rgcn-distmult.yaml"
for arm in base emu; do
  echo "{\"before\": \"$(cut -d' ' -f1-3 /proc/loadavg)\"," > "$out/load-$arm.json"
  /usr/bin/time -o "$out/time-$arm.json" -f '{"wall": %e, "user": %U, "system": %S}' \
      emu-dgl compare --config "$config" --arm "$arm" --out "$out/compare" --jobs 1 "$@" \
      > "$out/$arm.log" 2>&1
  echo "\"after\": \"$(cut -d' ' -f1-3 /proc/loadavg)\"}" >> "$out/load-$arm.json"
done
# both arms in one table (the finished runs are reused, not trained again)
emu-dgl compare --config "$config" --out "$out/compare" --jobs 1 "$@" > "$out/join.log" 2>&1
python - "$out" <<'PY'
import json, sys
from pathlib import Path

import yaml

out = Path(sys.argv[1])
results = json.loads((out / "compare" / "results.json").read_text())
keys = ("mrr", "hits@1", "hits@3", "hits@10")
arms = {
    run["arm"]: {
        "test": {k: run["test"][k] for k in keys},
        "valid": {k: run["valid"][k] for k in keys},
        "best_step": run.get("best_step"),
        "run_wall_minutes": run["wall_seconds"] / 60,
        "process": json.loads((out / f"time-{run['arm']}.json").read_text()),
        "load_average": json.loads((out / f"load-{run['arm']}.json").read_text()),
    }
    for run in results["runs"]
}
summary = {
    "dataset": yaml.safe_load(next((out / "compare").rglob("config.yaml")).read_text())[
        "dataset"
    ]["name"],
    "config": "configs/encoders/fb15k-237-rgcn-distmult.yaml",
    "arms": arms,
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
