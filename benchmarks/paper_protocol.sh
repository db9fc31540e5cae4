#!/usr/bin/env bash
# The paper's arms (configs/paper/, as the published code runs them) at one budget, on
# any machine: a CPU, or a GPU with several runs at once (--jobs).
#
#   bash benchmarks/paper_protocol.sh OUT [--budget cpu|gpu|paper] [--steps N] [--batch N]
#        [--negatives N] [--valid-every N] [--valid-triples N] [--datasets wn18rr,fb15k-237]
#        [--decoders distmult,transe] [--arms uniform-base,uniform-emu,sans-base,sans-emu]
#        [--seeds 0,1,2] [--jobs N] [--device auto|cpu|cuda] [--dest DIR] [--set KEY=VALUE]...
#
# Budgets (every other setting is the paper config's; the reference schedule switches
# to Adam at lr/10 at half the steps, whatever the step count):
#   cpu    1,000 steps, batch 512, 128 negatives, validation every 250 steps on the first
#          1,000 valid triples (the CPU protocol of benchmarks/results/cpu-protocol/)
#   gpu    13,000 steps, batch 1000, 256 negatives, validation every 1,300 steps on the
#          full valid split (the H200 runs of benchmarks/results/h200-aaf41b5/)
#   paper  100,000 steps, batch 1000, 256 negatives, validation every 500 steps on the
#          full valid split (the published runs)
# --steps, --batch, --negatives, --valid-every and --valid-triples (0 = all) change one
# part of the budget. Each dataset x decoder is one `emu-dgl compare` of the chosen arms
# and seeds into OUT/<dataset>-<decoder>/, its runs --jobs at a time; runs finished
# earlier are reused, so the same command again continues an interrupted protocol.
# At the end, benchmarks/summarize_protocol.py writes into DEST (default OUT/summary):
# SUMMARY.md (every arm's test and valid metrics, best step, wall time), table.md (the
# README's table: test MRR, arms side by side) and per comparison its results.json,
# table.md and valid_mrr.png. EMU_DGL_DATA (or --set dataset.data_dir=...) must point
# at the data.
set -euo pipefail
usage() { sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
repo=$(cd "$(dirname "$0")/.." && pwd)  # the configs are the checkout's, wherever this runs
[[ $# -ge 1 && $1 != -* ]] || usage
out=$1
shift
budget=cpu steps="" batch="" negatives="" valid_every="" valid_triples=""
datasets=wn18rr,fb15k-237 decoders=distmult,transe arms=uniform-base,uniform-emu,sans-base,sans-emu
seeds=0 jobs=1 device=auto dest=""
extra=()
while [[ $# -gt 0 ]]; do
  [[ $# -ge 2 ]] || { echo "error: $1 needs a value" >&2; exit 2; }
  case $1 in
    --budget) budget=$2 ;;
    --steps) steps=$2 ;;
    --batch) batch=$2 ;;
    --negatives) negatives=$2 ;;
    --valid-every) valid_every=$2 ;;
    --valid-triples) valid_triples=$2 ;;
    --datasets) datasets=$2 ;;
    --decoders) decoders=$2 ;;
    --arms) arms=$2 ;;
    --seeds) seeds=$2 ;;
    --jobs) jobs=$2 ;;
    --device) device=$2 ;;
    --dest) dest=$2 ;;
    --set) extra+=(--set "$2") ;;
    *) echo "error: unknown option $1 (see: bash $0)" >&2; exit 2 ;;
  esac
  shift 2
done
case $budget in
  cpu) p_steps=1000 p_batch=512 p_neg=128 p_valid=250 p_triples=1000 ;;
  gpu) p_steps=13000 p_batch=1000 p_neg=256 p_valid=1300 p_triples=0 ;;
  paper) p_steps=100000 p_batch=1000 p_neg=256 p_valid=500 p_triples=0 ;;
  *) echo "error: --budget must be cpu, gpu or paper, got '$budget'" >&2; exit 2 ;;
esac
set_budget=(--set "train.max_steps=${steps:-$p_steps}" --set "train.batch_size=${batch:-$p_batch}"
            --set "sampler.num_negatives=${negatives:-$p_neg}" --set "train.valid_every=${valid_every:-$p_valid}"
            --set "eval.valid_max_triples=${valid_triples:-$p_triples}" --set train.checkpoint_every=0
            --set train.progress=false --set "train.device=$device")
for option in arms datasets decoders seeds; do  # an empty list would mean "all" to compare
  value=${!option}
  if [[ -z $value || $value == ,* || $value == *, || $value == *,,* ]]; then
    echo "error: --$option '$value' holds an empty item; give a comma-separated list of names (an empty list is not 'all')" >&2
    exit 2
  fi
done
arm_args=()
IFS=, read -ra arm_list <<< "$arms"
for arm in "${arm_list[@]}"; do arm_args+=(--arm "$arm"); done
IFS=, read -ra dataset_list <<< "$datasets"
IFS=, read -ra decoder_list <<< "$decoders"
for dataset in "${dataset_list[@]}"; do
  for decoder in "${decoder_list[@]}"; do
    config=configs/paper/$dataset/$decoder.yaml
    [[ -f $repo/$config ]] || { echo "error: no paper config $config (datasets: wn18rr, fb15k-237)" >&2; exit 2; }
  done
done
mkdir -p "$out"
for dataset in "${dataset_list[@]}"; do
  for decoder in "${decoder_list[@]}"; do
    echo "== $dataset $decoder: ${arms//,/, } (seeds $seeds), budget $budget, --jobs $jobs"
    emu-dgl compare --config "$repo/configs/paper/$dataset/$decoder.yaml" "${arm_args[@]}" --seeds "$seeds" \
      --jobs "$jobs" --out "$out/$dataset-$decoder" "${set_budget[@]}" "${extra[@]}"
  done
done
python "$(dirname "$0")/summarize_protocol.py" "$out" "${dest:-$out/summary}"
