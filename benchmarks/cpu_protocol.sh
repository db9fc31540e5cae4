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
# Four lanes run side by side with one thread each.
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

lane_wn18rr_distmult() {
  emu-dgl compare --config configs/paper/wn18rr/distmult.yaml "${budget[@]}" \
    --seeds 0,1,2 --out "$out/wn18rr-distmult"
}

lane_transe() {
  emu-dgl compare --config configs/paper/fb15k-237/transe.yaml "${budget[@]}" \
    --seeds 0,1,2 --out "$out/fb15k-237-transe"
  emu-dgl compare --config configs/paper/wn18rr/transe.yaml "${budget[@]}" \
    --seeds 0 --out "$out/wn18rr-transe"
  emu-dgl compare --config configs/paper/fb15k-237/distmult.yaml "${budget[@]}" \
    --seeds 0 --out "$out/fb15k-237-distmult"
}

# The longer pair: 10x the steps (the reference schedule switches at step 5,000), one
# lane per arm; a last compare call (which skips finished runs) writes their table.
long=(--config configs/paper/wn18rr/distmult.yaml "${budget[@]}" --set train.max_steps=10000
      --set train.valid_every=1000 --seeds 0 --out "$out/wn18rr-distmult-10k")

lane_wn18rr_distmult > "$out.lane1.log" 2>&1 &
lane_transe > "$out.lane2.log" 2>&1 &
emu-dgl compare "${long[@]}" --arm sans-base > "$out.long-sans-base.log" 2>&1 &
emu-dgl compare "${long[@]}" --arm sans-emu > "$out.long-sans-emu.log" 2>&1 &
wait
emu-dgl compare "${long[@]}" --arm sans-base --arm sans-emu > "$out.long.log" 2>&1
