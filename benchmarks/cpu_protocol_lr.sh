#!/usr/bin/env bash
# Learning-rate sensitivity of both arms where EMU did not beat the base loss in the
# CPU protocol (SANS negatives, WN18RR, DistMult). Same budget as cpu_protocol.sh;
# the lr of the paper config (0.1) is the middle value.
#
#   bash benchmarks/cpu_protocol_lr.sh OUT_DIR
set -euo pipefail
out=${1:?usage: cpu_protocol_lr.sh OUT_DIR}
budget=(--set train.max_steps=2000 --set train.batch_size=512 --set sampler.num_negatives=128
        --set train.valid_every=250 --set eval.valid_max_triples=1000 --set train.checkpoint_every=0
        --set train.progress=false --set train.device=cpu)
emu-dgl compare --config configs/paper/wn18rr/distmult.yaml "${budget[@]}" \
  --arm sans-base-lr0p03:sampler.name=sans,emu.enabled=false,train.lr=0.03 \
  --arm sans-emu-lr0p03:sampler.name=sans,emu.enabled=true,train.lr=0.03 \
  --arm sans-base-lr0p3:sampler.name=sans,emu.enabled=false,train.lr=0.3 \
  --arm sans-emu-lr0p3:sampler.name=sans,emu.enabled=true,train.lr=0.3 \
  --seeds 0 --out "$out/wn18rr-distmult-sans-lr"
