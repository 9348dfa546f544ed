#!/bin/bash
# interleaved before (/tmp/pipe_orig) / after (/work/wt-pipe), 3 rounds, pinned to core 1
for r in 1 2 3; do
  for side in before after; do
    if [ $side = before ]; then cd /tmp/pipe_orig; else cd /work/wt-pipe; fi
    out=/tmp/pipe_bench/final_$side; mkdir -p $out
    uptime >> $out/load.txt
    taskset -c 1 python -m hicmae_jax.tools.benchmark --config=configs/pretrain_base.py --what=pipeline --split_dir=/tmp/pipe_synth/train --batch_size=8 --worker_counts=0 --stage_records=16 --out=$out/pre_r$r.json > $out/pre_r$r.txt 2>&1
    taskset -c 1 python -m hicmae_jax.tools.benchmark --config=configs/finetune_crema_d.py --what=pipeline --split_dir=/tmp/pipe_synth/train --batch_size=8 --worker_counts=0 --stage_records=16 --out=$out/ft_r$r.json > $out/ft_r$r.txt 2>&1
    taskset -c 1 python -m hicmae_jax.data.pipeline_benchmark --config=configs/finetune_crema_d.py --split_dir=/tmp/pipe_synth/test --eval_mode=test --worker_counts=0 --batch_size=8 --num_batches=10 --stage_records=16 > $out/eval_r$r.txt 2>&1
  done
done
cd /work/wt-pipe
uptime >> /tmp/pipe_bench/final_after/load.txt
taskset -c 1 python -m hicmae_jax.tools.benchmark --config=configs/pretrain_tiny.py --what=all --split_dir=/tmp/pipe_synth/train --batch_size=8 --steps=5 --worker_counts=0 --stage_records=16 --out=/tmp/pipe_bench/all_tiny.json > /tmp/pipe_bench/all_tiny.txt 2>&1
echo done > /tmp/pipe_bench/final.done
