#!/usr/bin/env bash
# The paper's four arms (configs/paper/, as the published code runs them) at equal
# budget on a 2-core CPU (no GPU).
#
# The arms (uniform-base, uniform-emu, sans-base, sans-emu) are the named arms of
# configs/paper/<dataset>/<model>.yaml: gamma 24, SANS from continued walks (k = 3,
# w = 1000) drawn uniformly over the distinct recorded entities and filtered, the
# base arms with the whole-table L3 penalty, the uniform EMU arm with separate
# unfiltered draws for its two terms, the reference schedule (Adagrad, then Adam
# at lr/10 from max_steps/2).
#
# Budget. The paper trains 100k steps at batch 1000 with 256 negatives; on 2 CPU
# cores that is weeks. This protocol keeps every setting of the paper configs but
# the budget, which is the same for every arm: 1,000 steps at batch 512 with 128
# negatives (about 6 epochs of WN18RR, 2 of FB15k-237), validation on the first
# 1,000 valid triples every 250 steps, final metrics on the full valid and test
# splits. 1,000 steps is what lets 3 seeds of two dataset/model pairs, one seed of
# two more, and one pair at 10x the steps fit in about 100 minutes on 2 cores.
#
#   bash benchmarks/cpu_protocol.sh OUT_DIR        (EMU_DGL_DATA must point at the data)
# then
#   python benchmarks/summarize_protocol.py OUT_DIR benchmarks/results/cpu-protocol
set -euo pipefail
out=${1:?usage: cpu_protocol.sh OUT_DIR}
budget=(--set train.max_steps=1000 --set train.batch_size=512 --set sampler.num_negatives=128
        --set train.valid_every=250 --set eval.valid_max_triples=1000 --set train.checkpoint_every=0
        --set train.progress=false --set train.device=cpu)
export OMP_NUM_THREADS=1

# Ten lanes, one thread each, so the long runs and the costly TransE evaluations
# overlap; a comparison split over lanes is completed by a last compare call that
# skips the finished runs and writes the joint results.json / table.md.
run() { emu-dgl compare "${budget[@]}" "$@"; }
# the four arms by name (the paper configs also name the d = 500 base arms, not run here)
four=(--arm uniform-base --arm uniform-emu --arm sans-base --arm sans-emu)
wn_distmult=(--config configs/paper/wn18rr/distmult.yaml --seeds 0,1,2 --out "$out/wn18rr-distmult")
fb_transe=(--config configs/paper/fb15k-237/transe.yaml --seeds 0,1,2 --out "$out/fb15k-237-transe")
long=(--config configs/paper/wn18rr/distmult.yaml --set train.max_steps=10000
      --set train.valid_every=1000 --seeds 0 --out "$out/wn18rr-distmult-10k")
mkdir -p "$out"
lane=0
for three_seeds in wn_distmult fb_transe; do
  spec="$three_seeds[@]"
  for arms in "--arm uniform-base --arm uniform-emu" "--arm sans-base" "--arm sans-emu"; do
    lane=$((lane + 1))
    # shellcheck disable=SC2086
    run "${!spec}" $arms > "$out/lane$lane.log" 2>&1 &
  done
done
run --config configs/paper/wn18rr/transe.yaml "${four[@]}" --seeds 0 --out "$out/wn18rr-transe" > "$out/lane7.log" 2>&1 &
run --config configs/paper/fb15k-237/distmult.yaml "${four[@]}" --seeds 0 --out "$out/fb15k-237-distmult" > "$out/lane8.log" 2>&1 &
# The longer pair: 10x the steps (the reference schedule switches at step 5,000).
run "${long[@]}" --arm sans-base > "$out/lane9.log" 2>&1 &
run "${long[@]}" --arm sans-emu > "$out/lane10.log" 2>&1 &
wait
run "${wn_distmult[@]}" "${four[@]}" > "$out/join.log" 2>&1
run "${fb_transe[@]}" "${four[@]}" >> "$out/join.log" 2>&1
run "${long[@]}" --arm sans-base --arm sans-emu >> "$out/join.log" 2>&1
