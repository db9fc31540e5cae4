#!/usr/bin/env bash
# The GPU check: one command, sized to at most 8 minutes on one GPU; JSON and a markdown
# table under OUT.
#
#   bash benchmarks/gpu_check.sh OUT                      # on the GPU machine (CUDA)
#   bash benchmarks/gpu_check.sh OUT --device cpu --quick # dry run on a CPU, tiny sizes
#
# Phases (each time-boxed; a phase that fails or runs out of time is recorded and the
# next one runs):
#   1. tests     the test suite on CUDA alone (pytest -n auto; train.device=auto picks CUDA)
#   2. steps     ms per step, every decoder x paper arm (WN18RR), eager vs CUDA graph;
#      shared    the same for negatives shared by the batch against per-positive ones
#   3. eval      filtered test evaluation, WN18RR and FB15k-237, DistMult and TransE
#   4. scale     DistMult EMU step at 40k / 4M / 40M entities
#   5. runs      one paper run (WN18RR DistMult uniform-emu) alone, then 4 seeds of it at
#                once (emu-dgl compare --jobs 4 when it exists, else 4 background
#                processes): aggregate steps/s against the one alone
#   6. summary   OUT/summary.json and OUT/summary.md
# Prepare the machine as CONTRIBUTING.md ('On a GPU') describes (DGL wheel, data in $EMU_DGL_DATA).
#
# OUT is taken relative to where the command runs (not the checkout). Every file the
# script writes under OUT is created afresh (a link, FIFO or hard link planted under its
# name is removed, never written through), and a phase still running when the script is
# stopped (Ctrl-C, SIGTERM) is stopped with it.
set -u
if [ $# -lt 1 ]; then
    echo "usage: bash benchmarks/gpu_check.sh OUT [--device cpu|cuda] [--quick]" >&2
    exit 2
fi
OUT=$1
shift
DEVICE=cuda
QUICK=""
while [ $# -gt 0 ]; do
    case "$1" in
        --device)
            if [ $# -lt 2 ] || [ -z "$2" ]; then
                echo "error: --device needs a value (cpu or cuda)" >&2
                exit 2
            fi
            DEVICE=$2; shift 2 ;;
        --quick) QUICK="--quick"; shift ;;
        *) echo "error: unknown option '$1' (use --device cpu|cuda, --quick)" >&2; exit 2 ;;
    esac
done
case "$OUT" in
    /*) ;;
    *) OUT="$PWD/$OUT" ;;  # before the cd below: OUT stays where the caller meant it
esac
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
mkdir -p "$OUT"
set -o noclobber  # '>' never truncates an existing file: fresh() clears each name first

fresh() {  # fresh FILE...: remove what is there (a planted link goes, not its target)
    local file
    for file in "$@"; do
        rm -f -- "$file"
    done
}

PHASE_PID=""
stop_phase() {  # the running phase and everything it started (timeout leads a process group)
    if [ -n "$PHASE_PID" ]; then
        kill -TERM -- "-$PHASE_PID" 2> /dev/null || kill -TERM "$PHASE_PID" 2> /dev/null
        wait "$PHASE_PID" 2> /dev/null
        PHASE_PID=""
    fi
}
trap 'stop_phase; exit 130' INT
trap 'stop_phase; exit 143' TERM
trap stop_phase EXIT

fresh "$OUT/phases.txt"
: > "$OUT/phases.txt"

phase() {  # phase NAME SECONDS COMMAND...: stdout to OUT/NAME.json|.out, stderr to OUT/NAME.err
    local name=$1 limit=$2 start rc
    shift 2
    start=$(date +%s)
    fresh "$OUT/$name.out" "$OUT/$name.err"
    timeout --kill-after=10 "$limit" "$@" > "$OUT/$name.out" 2> "$OUT/$name.err" &
    PHASE_PID=$!
    wait "$PHASE_PID"
    rc=$?
    PHASE_PID=""
    echo "$name rc=$rc seconds=$(( $(date +%s) - start )) limit=$limit" | tee -a "$OUT/phases.txt"
}

fresh "$OUT/env.txt"
$PY -c "import torch, sys; print('torch', torch.__version__, 'python', sys.version.split()[0], 'cuda', torch.cuda.is_available())" > "$OUT/env.txt" 2>&1
command -v nvidia-smi > /dev/null && nvidia-smi >> "$OUT/env.txt" 2>&1

# 1. tests
if [ -n "$QUICK" ]; then
    phase tests 120 $PY -m pytest -q -x -p no:cacheprovider tests/test_step.py -m "not slow"
else
    phase tests 150 $PY -m pytest -q -p no:cacheprovider -n auto
fi

# 2-4. step table, evaluation, scale
BENCH="$PY benchmarks/bench_gpu.py"
phase steps 120 $BENCH steps --device "$DEVICE" $QUICK
phase shared 60 $BENCH shared --device "$DEVICE" --decoders distmult complex transe rotate $QUICK
phase eval 30 $BENCH eval --device "$DEVICE" $QUICK
phase scale 90 $BENCH scale --device "$DEVICE" $QUICK

# 5. one paper run alone, then 4 at once, at a fixed budget each
if [ -n "$QUICK" ]; then
    BUDGET=(--set dataset.name=synthetic --set train.max_steps=40 --set train.batch_size=64
            --set sampler.num_negatives=16 --set model.dim=16)
else
    BUDGET=(--set train.max_steps=5000)
fi
RUN=(--config configs/paper/wn18rr/distmult.yaml "${BUDGET[@]}" --set "train.device=$DEVICE"
     --set train.threads=1 --set train.valid_every=0 --set train.checkpoint_every=0
     --set train.progress=false --set eval.valid_max_triples=500)
phase run_alone 30 $PY -m emu_dgl train --arm uniform-emu --out "$OUT/runs/alone" "${RUN[@]}"
if $PY -m emu_dgl compare --help 2>/dev/null | grep -q -- --jobs; then
    phase runs_4 60 $PY -m emu_dgl compare "${RUN[@]}" --arm uniform-emu --jobs 4 --seeds 0,1,2,3 \
        --out "$OUT/runs/compare"
    FOUR=$(find "$OUT/runs/compare" -name metrics.json -printf '%h\n' 2>/dev/null)
else
    echo "compare --jobs is not available here: 4 background 'emu-dgl train' processes instead" \
        | tee -a "$OUT/phases.txt"
    start=$(date +%s)
    pids=()
    for seed in 0 1 2 3; do
        fresh "$OUT/runs_seed$seed.out" "$OUT/runs_seed$seed.err"
        timeout --kill-after=10 60 $PY -m emu_dgl train --arm uniform-emu --out "$OUT/runs/seed$seed" \
            "${RUN[@]}" --set "train.seed=$seed" > "$OUT/runs_seed$seed.out" 2> "$OUT/runs_seed$seed.err" &
        pids+=($!)
    done
    for pid in "${pids[@]}"; do wait "$pid"; done
    echo "runs_4 seconds=$(( $(date +%s) - start )) limit=60 (background processes)" | tee -a "$OUT/phases.txt"
    FOUR=$(for seed in 0 1 2 3; do echo "$OUT/runs/seed$seed"; done)
fi
fresh "$OUT/runs_alone.json" "$OUT/runs_4.json" "$OUT/summary.md"
# shellcheck disable=SC2086
$PY benchmarks/bench_gpu.py runs "$OUT/runs/alone" > "$OUT/runs_alone.json" 2>> "$OUT/phases.txt"
# shellcheck disable=SC2086
$PY benchmarks/bench_gpu.py runs $FOUR > "$OUT/runs_4.json" 2>> "$OUT/phases.txt"

# 6. summary
$PY benchmarks/summarize_gpu_check.py "$OUT" > "$OUT/summary.md"
cat "$OUT/summary.md"
