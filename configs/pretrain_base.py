"""HiCMAE-Base pre-training on VoxCeleb2 dev, the paper's recipe (SPEC 6).

  python -m hicmae_jax.main --config=configs/pretrain_base.py --workdir=/ckpt/hicmae_base \
      --config.data.train_dir=/data/voxceleb2/pretrain

Expect ~99.6M parameters, global batch 160 (4 x 40 in the original; negatives in groups of 40),
lr 1.875e-4, 100 epochs, the loss falling from ~2.4 towards ~0.9 (MSE video + audio).

On TPU (BUILD.md's table, compiled with tools/aot_compile 2026-12-07): add
--config.model.dtype=bfloat16; batch 160 fits every v4/v5e/v5p/v6e slice of 8-16 chips
data-parallel without remat or fsdp (v5e-16: 5.5 GiB of 16 per chip). Check a slice first:
  python -m hicmae_jax.tools.aot_compile --config=configs/pretrain_base.py --topology=v5e-16 \
      --config.model.dtype=bfloat16
"""
from configs import common


def get_config(size: str = "base"):
  c = common.base_config("pretrain", size)
  c.global_batch_size = 160
  c.num_epochs = 100
  c.optim.b2 = 0.95
  return c
