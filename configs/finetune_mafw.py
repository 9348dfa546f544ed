"""HiCMAE-Base fine-tuning on MAFW (the original's recipe, SPEC 7; 11-class single-label split
(43-class compound: --config.model.num_classes=43)).

  python -m hicmae_jax.main --config=configs/finetune_mafw.py --workdir=/ckpt/mafw_fold1 \
      --config.data.train_dir=/data/mafw/fold1/train --config.data.test_dir=/data/mafw/fold1/test \
      --config.init_from=/ckpt/hicmae_base_converted

Paper result (HiCMAE-B, audio+video): UAR 42.65, WAR 56.17.
"""
from configs import finetune_crema_d


def get_config(size: str = "base"):
  c = finetune_crema_d.get_config(size)
  c.model.num_classes = 11
  c.num_epochs = 100
  c.data.sampling_rate = 4
  return c
