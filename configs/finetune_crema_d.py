"""HiCMAE-Base fine-tuning on CREMA-D (6 classes, 5 folds), the paper's recipe (SPEC 7).

  python -m hicmae_jax.main --config=configs/finetune_crema_d.py --workdir=/ckpt/crema_fold1 \
      --config.data.train_dir=/data/crema_d/fold1/train \
      --config.data.test_dir=/data/crema_d/fold1/test \
      --config.init_from=/ckpt/hicmae_base_converted

Paper result (HiCMAE-B, audio+video): UAR 84.91, WAR 84.89 (averaged over 5 folds).

On TPU: --config.model.dtype=bfloat16; batch 56 fits a v5e-8 slice data-parallel (4.5 GiB of
16 per chip; BUILD.md's table, tools/aot_compile). The batch must split over the chips (56:
8 chips; 16 chips need e.g. --config.global_batch_size=64).
"""
from configs import common


def get_config(size: str = "base"):
  c = common.base_config("finetune", size)
  c.model.num_classes = 6
  c.model.drop_path = 0.1
  c.global_batch_size = 56
  c.num_epochs = 50
  c.optim.base_lr = 1e-3
  c.optim.min_base_lr = 1e-6
  c.optim.b2 = 0.999
  c.optim.layer_decay = 0.75
  c.data.fixed_crop = None
  c.eval_every_epochs = 5
  return c
