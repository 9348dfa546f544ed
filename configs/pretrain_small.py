"""HiCMAE-Small pre-training (same recipe as Base, smaller model).

  python -m hicmae_jax.main --config=configs/pretrain_small.py --workdir=/ckpt/hicmae_small \
      --config.data.train_dir=/data/voxceleb2/pretrain
"""
from configs import pretrain_base


def get_config():
  return pretrain_base.get_config("small")
