"""HiCMAE-Base fine-tuning on IEMOCAP (the original's recipe, SPEC 7; 5 folds; epochs not stated
in SPEC; 100).

  python -m hicmae_jax.main --config=configs/finetune_iemocap.py --workdir=/ckpt/iemocap_fold1 \
      --config.data.train_dir=/data/iemocap/fold1/train \
      --config.data.test_dir=/data/iemocap/fold1/test \
      --config.init_from=/ckpt/hicmae_base_converted

Paper result (HiCMAE-B, audio+video): UAR 68.21, WAR 68.36.
"""
from configs import finetune_crema_d


def get_config(size: str = "base"):
  c = finetune_crema_d.get_config(size)
  c.model.num_classes = 4
  c.num_epochs = 100
  c.data.sampling_rate = 4
  return c
