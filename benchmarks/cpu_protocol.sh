#!/usr/bin/env bash
# EMU against the base loss at equal budget, on a 2-core CPU (no GPU).
#
# The paper trains 100k steps at batch 1000 with 256 negatives; on 2 CPU cores an
# EMU step at that size takes about 0.4 s, so the full protocol would take weeks.
# This protocol keeps everything of the paper's reference configs (configs/paper/)
# except the budget, which is the same for every arm:
#   2,000 steps, batch 512, 128 negatives, validation on the first 1,000 valid
#   triples every 250 steps, reference schedule (Adagrad, Adam at lr/10 from
#   step 1,000), final metrics on the full valid and test splits.
# A GPU user runs the same commands without the budget overrides.
#
#   bash benchmarks/cpu_protocol.sh OUT_DIR        (EMU_DGL_DATA must point at the data)
set -euo pipefail
out=${1:?usage: cpu_protocol.sh OUT_DIR}
budget=(--set train.max_steps=2000 --set train.batch_size=512 --set sampler.num_negatives=128
        --set train.valid_every=250 --set eval.valid_max_triples=1000 --set train.checkpoint_every=0
        --set train.progress=false --set train.device=cpu)
arms=(--arm uniform-base:sampler.name=uniform,emu.enabled=false
      --arm uniform-emu:sampler.name=uniform,emu.enabled=true
      --arm sans-base:sampler.name=sans,emu.enabled=false
      --arm sans-emu:sampler.name=sans,emu.enabled=true)

for dataset in wn18rr fb15k-237; do
  for model in distmult transe; do
    emu-dgl compare --config "configs/paper/$dataset/$model.yaml" "${budget[@]}" "${arms[@]}" \
      --seeds 0 --out "$out/$dataset-$model"
  done
done

# Nations: small enough for three seeds (same budget, full batch of its 1,592 triples).
emu-dgl compare --config configs/paper/wn18rr/distmult.yaml --set dataset.name=nations "${budget[@]}" \
  --set train.batch_size=512 --set sampler.num_negatives=13 \
  --arm base:sampler.name=uniform,emu.enabled=false --arm emu:sampler.name=uniform,emu.enabled=true \
  --seeds 0,1,2 --out "$out/nations-distmult"

# The width question: d = 100 with EMU against d = 500 without, WN18RR, DistMult, same budget.
# The d = 100 EMU run is the uniform-emu run above (same config); it is reused, not repeated.
mkdir -p "$out/wn18rr-distmult-width/d100-emu"
[ -d "$out/wn18rr-distmult-width/d100-emu/seed0" ] || cp -r "$out/wn18rr-distmult/uniform-emu/seed0" "$out/wn18rr-distmult-width/d100-emu/seed0"
emu-dgl compare --config configs/paper/wn18rr/distmult.yaml "${budget[@]}" \
  --arm d100-emu:sampler.name=uniform,emu.enabled=true,model.dim=100 \
  --arm d500-base:sampler.name=uniform,emu.enabled=false,model.dim=500 \
  --seeds 0 --out "$out/wn18rr-distmult-width"
