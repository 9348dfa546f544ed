"""HiCMAE-Base fine-tuning on DFEW (the original's recipe, SPEC 7; epochs not stated in SPEC;
100 as MAFW).

  python -m hicmae_jax.main --config=configs/finetune_dfew.py --workdir=/ckpt/dfew_fold1 \
      --config.data.train_dir=/data/dfew/fold1/train --config.data.test_dir=/data/dfew/fold1/test \
      --config.init_from=/ckpt/hicmae_base_converted

Paper result (HiCMAE-B, audio+video): WAR 75.01.
"""
from configs import finetune_crema_d


def get_config(size: str = "base"):
  c = finetune_crema_d.get_config(size)
  c.model.num_classes = 7
  c.num_epochs = 100
  c.data.sampling_rate = 4
  return c
