"""HiCMAE-Base pre-training on VoxCeleb2 dev, the paper's recipe (SPEC 6).

  python -m hicmae_jax.main --config=configs/pretrain_base.py --workdir=/ckpt/hicmae_base \
      --config.data.train_dir=/data/voxceleb2/pretrain

Expect ~99.6M parameters, global batch 160 (4 x 40 in the original; negatives in groups of 40),
lr 1.875e-4, 100 epochs, the loss falling from ~2.4 towards ~0.9 (MSE video + audio).
"""
from configs import common


def get_config(size: str = "base"):
  c = common.base_config("pretrain", size)
  c.global_batch_size = 160
  c.num_epochs = 100
  c.optim.b2 = 0.95
  return c
