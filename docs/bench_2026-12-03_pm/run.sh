#!/bin/bash
# Issue 18 final figures: before (/tmp/base_wt = 23c78c9) and after (/work/main) interleaved,
# 3 rounds, pinned to core 1. Splits: /tmp/pipe_synth (224 px source JPEGs), /tmp/pipe_synth_crop
# (prepare --crop=0,160,32,192), /tmp/pipe_synth_160 (prepare --frame_size=160).
B="--batch_size=8 --worker_counts=0 --stage_records=16"
for r in 1 2 3; do
  for side in before after; do
    if [ $side = before ]; then cd /tmp/base_wt; else cd /work/main; fi
    out=/tmp/pb3/$side; mkdir -p $out
    uptime >> $out/load.txt
    taskset -c 1 python -m hicmae_jax.tools.benchmark --config=configs/pretrain_base.py --what=pipeline --split_dir=/tmp/pipe_synth/train $B --out=$out/pre_r$r.json > $out/pre_r$r.txt 2>&1
    taskset -c 1 python -m hicmae_jax.tools.benchmark --config=configs/finetune_crema_d.py --what=pipeline --split_dir=/tmp/pipe_synth/train $B --out=$out/ft_r$r.json > $out/ft_r$r.txt 2>&1
    taskset -c 1 python -m hicmae_jax.data.pipeline_benchmark --config=configs/finetune_crema_d.py --split_dir=/tmp/pipe_synth/test --eval_mode=test --worker_counts=0 --batch_size=8 --num_batches=10 --stage_records=16 > $out/eval_r$r.txt 2>&1
    if [ $side = after ]; then
      taskset -c 1 python -m hicmae_jax.tools.benchmark --config=configs/pretrain_base.py --what=pipeline --split_dir=/tmp/pipe_synth_crop/train $B --out=$out/precrop_r$r.json > $out/precrop_r$r.txt 2>&1
      taskset -c 1 python -m hicmae_jax.tools.benchmark --config=configs/finetune_crema_d.py --what=pipeline --split_dir=/tmp/pipe_synth/train $B --float_augment=device --out=$out/ftdev_r$r.json > $out/ftdev_r$r.txt 2>&1
      taskset -c 1 python -m hicmae_jax.tools.benchmark --config=configs/finetune_crema_d.py --what=pipeline --split_dir=/tmp/pipe_synth_160/train $B --float_augment=device --out=$out/ftdev160_r$r.json > $out/ftdev160_r$r.txt 2>&1
      taskset -c 1 python -m hicmae_jax.tools.benchmark --config=configs/finetune_crema_d.py --what=pipeline --split_dir=/tmp/pipe_synth_160/train $B --out=$out/ft160_r$r.json > $out/ft160_r$r.txt 2>&1
    fi
  done
done
cd /work/main
uptime >> /tmp/pb3/after/load.txt
taskset -c 1 python -m hicmae_jax.tools.benchmark --config=configs/pretrain_tiny.py --what=all --split_dir=/tmp/pipe_synth_crop/train --batch_size=8 --steps=5 --worker_counts=0 --stage_records=16 --out=/tmp/pb3/all_tiny.json > /tmp/pb3/all_tiny.txt 2>&1
echo done > /tmp/pb3/done
