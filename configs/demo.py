"""The built-in demo: synthetic data -> pre-train a small model -> fine-tune -> evaluate.

  python -m hicmae_jax.main --config=configs/demo.py --workdir=workdirs/demo
  python -m hicmae_jax.eval_main --config=configs/demo.py --checkpoint=workdirs/demo/finetune

Needs no download and runs on a laptop CPU in a few minutes (the README gives the measured time
and accuracy). It generates the synthetic audio-visual dataset (4 classes whose face motion and
tone rhythm correspond) under workdirs/synthetic_demo (relative to the current folder) when
absent, pre-trains, fine-tunes from that checkpoint and evaluates on the test split (2 segments x
2 crops); test accuracy ends far above chance (25 %). The second command evaluates the fine-tuned
model again (the synthetic test split by default).

The top level holds only the two runs, so an override names the run it changes:
--config.pretrain.global_batch_size=8, --config.finetune.num_epochs=4 (a top-level key such as
--config.global_batch_size is refused). `configs/demo.py:pretrain` / `:finetune` is one run on
its own. The same trainer with configs/pretrain_base.py and a data path is the real job.
"""
import ml_collections

from configs import common


def _shared(c):
  m = c.model
  m.size = "demo"
  m.dim, m.num_heads = 64, 2
  m.video_depth = m.audio_depth = 4
  m.fusion_depth = 1
  m.decoder_dim, m.decoder_heads, m.decoder_depth = 32, 2, 4
  m.hierarchy_layers = (1, 2, 3)
  m.input_size = 64
  m.num_frames = 8
  m.audio_frames = 128
  m.audio_mel_bins = 128
  d = c.data
  d.synthetic_dir = "workdirs/synthetic_demo"
  d.synthetic_num_train = 320
  d.synthetic_num_val = 80
  d.synthetic_num_test = 80
  d.synthetic_num_classes = 4
  d.synthetic_frame_size = 64
  d.synthetic_num_frames = 40
  d.sampling_rate = 4
  d.fixed_crop = None
  d.read_threads = 2
  c.loss.contrastive_group_size = 0
  c.checkpoint_every_steps = 100
  c.log_every_steps = 20
  c.eval_batch_size = 16
  return c


def get_config(part: str = ""):
  """The demo (both runs), or with part "pretrain" / "finetune" that run alone."""
  c = ml_collections.ConfigDict()
  c.demo = True
  c.pretrain = p = _shared(common.base_config("pretrain", "test"))
  p.global_batch_size = 16
  p.num_epochs = 20
  p.optim.base_lr = 3e-3
  p.optim.warmup_epochs = 1
  p.recon_every_steps = 100  # reconstruction figures in TensorBoard
  c.finetune = f = _shared(common.base_config("finetune", "test"))
  f.model.num_classes = 4
  f.model.drop_path = 0.1
  f.global_batch_size = 16
  f.num_epochs = 16
  f.optim.base_lr = 8e-3
  f.optim.min_base_lr = 1e-5
  f.optim.b2 = 0.999
  f.optim.warmup_epochs = 1
  f.optim.layer_decay = 0.75
  f.data.rand_augment = "rand-m7-n2-mstd0.5-inc1"
  f.eval_every_epochs = 4
  if part:
    if part not in ("pretrain", "finetune"):
      raise ValueError(f"configs/demo.py:{part}: allowed parts are pretrain and finetune")
    return c[part]
  return c
