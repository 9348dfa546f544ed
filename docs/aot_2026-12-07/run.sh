#!/usr/bin/env bash
# The compiles behind BUILD.md's TPU table (2026-12-07, a 2-core AMD EPYC VM shared with other
# jobs; libtpu 0.0.42.1). One JSON report per row in this folder; summary.py makes the table.
set -u
cd "$(dirname "$0")/../.."
out=docs/aot_2026-12-07
run() {  # name, then the tool's flags
  local name=$1; shift
  [[ -f $out/$name.json ]] && return
  echo "== $name $(date -u +%H:%M:%S)"
  timeout 2400 python -m hicmae_jax.tools.aot_compile "$@" --output=$out/$name.json \
    > $out/$name.log 2>&1 || echo "   failed: see $out/$name.log"
}
P=configs/pretrain_base.py
F=configs/finetune_crema_d.py
bf16=--config.model.dtype=bfloat16
lane=${1:-all}  # two lanes run side by side on the 2 cores: a, b
if [[ $lane != b ]]; then
  run pretrain_v5e-16_bf16 --config=$P --topology=v5e-16 $bf16
  run pretrain_v4-16_bf16 --config=$P --topology=v4-16 $bf16
  run pretrain_v6e-16_bf16 --config=$P --topology=v6e-16 $bf16
  run pretrain_v5e-16_f32 --config=$P --topology=v5e-16
  # 256 does not split into groups of 40 (the tool says so): 1280 is 5 a chip
  run pretrain_v5e-256_bf16_b1280 --config=$P --topology=v5e-256 $bf16 --config.global_batch_size=1280 --steps=train
fi
if [[ $lane != a ]]; then
  run finetune_v5e-8_bf16 --config=$F --topology=v5e-8 $bf16
  run pretrain_v5p-16_bf16 --config=$P --topology=v5p-16 $bf16
  run pretrain_v5e-16_bf16_remat --config=$P --topology=v5e-16 $bf16 --config.model.remat=True
  run pretrain_v5e-16_bf16_fsdp16 --config=$P --topology=v5e-16 $bf16 --config.mesh.data=1 --config.mesh.fsdp=16
  run pretrain_v5e-32_bf16_x2slices --config=$P --topology=v5e-16 --num_slices=2 $bf16
fi
