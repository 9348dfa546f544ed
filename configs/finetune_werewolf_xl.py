"""HiCMAE-Base fine-tuning on Werewolf-XL (the original's recipe, SPEC 7;
arousal/valence/dominance regression, temporal stride 3).

  python -m hicmae_jax.main --config=configs/finetune_werewolf_xl.py \
      --workdir=/ckpt/werewolf_xl_fold1 \
      --config.data.train_dir=/data/werewolf_xl/fold1/train \
      --config.data.test_dir=/data/werewolf_xl/fold1/test \
      --config.init_from=/ckpt/hicmae_base_converted

Paper result (HiCMAE-B, audio+video): valence PCC 69.23, CCC 64.81.
"""
from configs import finetune_crema_d


def get_config(size: str = "base"):
  c = finetune_crema_d.get_config(size)
  c.model.task = "regression"
  c.model.num_classes = 0
  c.model.num_targets = 3
  c.data.mixup_alpha = 0.0   # no mixing for regression targets
  c.data.cutmix_alpha = 0.0
  c.num_epochs = 30
  c.data.sampling_rate = 3
  return c
