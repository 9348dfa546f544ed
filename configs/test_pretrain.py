"""CPU-sized pre-training on the synthetic data, used by the test suite (a few steps).

  python -m hicmae_jax.main --config=configs/test_pretrain.py --workdir=/tmp/hicmae_test
"""
from configs import common


def get_config(kind: str = "pretrain"):
  c = common.base_config(kind, "test")
  m = c.model
  # Shallow (2 layers per encoder, 2 decoder layers: one Block, one CSBlock reading the
  # hierarchy) to keep CPU compile times short.
  m.video_depth = m.audio_depth = 2
  m.decoder_depth = 2
  m.hierarchy_layers = (1,)
  m.input_size = 32          # synthetic frames are stored at 32x32 here
  m.num_frames = 8
  m.audio_frames = 64
  m.audio_mel_bins = 128
  m.video_mask_ratio = 0.75
  m.audio_mask_ratio = 0.75
  d = c.data
  d.synthetic_dir = "workdirs/synthetic_test"
  d.synthetic_num_train = 24
  d.synthetic_num_val = 8
  d.synthetic_num_test = 8
  d.synthetic_num_classes = 3
  d.synthetic_frame_size = 32
  d.synthetic_num_frames = 24
  d.sampling_rate = 2
  d.fixed_crop = None
  d.rand_augment = ""
  d.read_threads = 1
  c.global_batch_size = 4
  c.eval_batch_size = 4
  c.loss.contrastive_group_size = 0
  c.num_epochs = 1
  c.num_train_steps = 4
  c.checkpoint_every_steps = 2
  c.log_every_steps = 2
  c.eval_every_epochs = 1
  c.async_checkpointing = False
  if kind != "pretrain":
    m.num_classes = 3
    m.drop_path = 0.1
    c.optim.layer_decay = 0.75
    c.optim.b2 = 0.999
  return c
