"""Shared config pieces: the experiment defaults, plus the size table and the feature tools'
settings, which live in the package (hicmae_jax/models/sizes.py,
hicmae_jax/representations/settings.py) and are re-exported here.

Configs import nothing heavy: ml_collections and those two ml_collections-only modules.
"""
import ml_collections

from hicmae_jax.models.sizes import SIZES, model_config, model_config_for_tests  # noqa: F401
from hicmae_jax.representations.settings import (  # noqa: F401
  embedding_plot_config,
  feature_probe_config,
)


def base_config(kind: str, size: str) -> ml_collections.ConfigDict:
  """Everything but the experiment-specific values; `kind` is pretrain | finetune | linear_probe."""
  if kind not in ("pretrain", "finetune", "linear_probe"):
    raise ValueError(f"unknown kind {kind!r}; allowed: pretrain, finetune, linear_probe")
  c = ml_collections.ConfigDict()
  c.kind = kind
  c.seed = 0
  c.model = model_config(size)

  # ---- data ------------------------------------------------------------------------------
  c.data = d = ml_collections.ConfigDict()
  d.train_dir = ""          # a prepared split folder (python -m hicmae_jax.data.prepare)
  d.val_dir = ""            # optional: model selection happens here, never on test
  d.test_dir = ""           # optional: evaluated once at the end
  d.synthetic_dir = ""      # if set, generate the synthetic dataset there when absent
  d.synthetic_num_train = 400
  d.synthetic_num_val = 100
  d.synthetic_num_test = 100
  d.synthetic_num_classes = 4
  d.synthetic_frame_size = 64
  d.synthetic_num_frames = 48
  d.sampling_rate = 4       # temporal stride (Werewolf-XL: 3)
  d.fixed_crop = (0, 160, 32, 192)  # VoxCeleb2 pre-training crop (rows, cols); None: off
  d.multiscale = (1.0, 0.875, 0.75, 0.66)
  d.resize_on_device = True  # pre-training: the host sends the crop, the step resizes it
  d.num_repeats = 1         # clips drawn per decoded record (repeated sampling)
  d.masks_in_pipeline = False  # draw masks on the host (numpy) instead of on device
  d.magnitude_aug = True
  d.roll_aug = False        # the original's roll never moves; a real roll behind this switch
  d.eval_magnitude_aug = False  # the original also scales at eval; True reproduces it
  d.random_long_val_start = False
  d.rand_augment = "rand-m7-n4-mstd0.5-inc1"
  d.erase_prob = 0.25
  # Fine-tuning's normalise, crop, flip, erase, mix: in the train step ("device": a quarter of
  # the bytes, ~9 ms less host work per clip on an EPYC core, 2026-12-03), on the host
  # ("host": cheaper where the "device" is the same CPU), or "auto": the device on GPU/TPU,
  # the host on CPU.
  d.finetune_float_augment = "auto"
  d.mixup_alpha = 0.8
  d.cutmix_alpha = 1.0
  d.mixup_switch_prob = 0.5
  d.label_smoothing = 0.1
  d.mix_audio = False       # the original mixes only the video (labels fully)
  d.test_num_segments = 2
  d.test_num_crops = 2
  d.eval_resize_on_device = True  # evaluation: frames go out as stored, the step resizes
  d.worker_count = 0        # grain worker processes per host (0 = in-process threads)
  d.read_threads = 2
  d.max_skip_fraction = 0.01  # stop when more records than this are corrupt
  d.skip_check_min_records = 100

  # ---- objective ---------------------------------------------------------------------------
  c.loss = loss = ml_collections.ConfigDict()
  loss.frame_difference = True   # the released recipe's video target
  loss.contrastive_temperature = 0.07
  loss.contrastive_weight = 0.0025
  loss.contrastive_group_size = 40  # negatives per group of G clips (original: per GPU); 0 = global
  loss.video_weight = 1.0
  loss.audio_weight = 1.0

  # ---- optimisation ------------------------------------------------------------------------
  c.global_batch_size = 160
  c.num_epochs = 100
  c.num_train_steps = 0       # > 0 overrides num_epochs
  c.optim = o = ml_collections.ConfigDict()
  o.base_lr = 3e-4            # per 256 clips; lr = base_lr * global_batch / 256 (the original)
  o.min_base_lr = 1e-5
  o.warmup_epochs = 5
  o.weight_decay = 0.05
  o.b1 = 0.9
  o.b2 = 0.95
  o.eps = 1e-8
  o.layer_decay = 1.0         # fine-tuning: 0.75
  o.clip_grad_norm = 0.0      # 0 = off (the original clips nothing)
  o.accum_steps = 1           # gradient accumulation (reproduce batch 160 on a small machine)
  o.freeze = "none"           # linear_probe: "encoders"
  c.nonfinite = "stop"        # stop | skip: a non-finite loss/grad-norm stops (or skips the update)

  # ---- parallelism -------------------------------------------------------------------------
  c.mesh = ml_collections.ConfigDict()
  c.mesh.data = -1            # -1: all remaining devices
  c.mesh.fsdp = 1             # > 1 shards parameters and optimizer state
  c.mesh.dcn_data = 1         # TPU slices (multi-slice): data parallel across them over DCN

  # ---- checkpoints, logs, evaluation -------------------------------------------------------
  c.checkpoint_every_steps = 1000
  c.keep_checkpoints = 3
  c.async_checkpointing = True
  c.log_every_steps = 50
  c.eval_every_epochs = 5
  c.eval_batch_size = 32
  c.resume = ""               # another run's workdir/checkpoint folder to continue from
  c.init_from = ""            # weights only: our checkpoint, an original .pth, an exported folder
  c.allow_config_change = False  # refuse to resume a workdir written with another config
  c.checkpoint_fallback = False   # a damaged latest checkpoint: use the previous one
  c.profile_steps = ()        # e.g. (10, 20): profiler trace window
  # JAX's persistent compilation cache (local folder or gs://...): a restarted job or an eval
  # of the same model loads its compiled programs. '' leaves JAX's own setting alone.
  c.compilation_cache_dir = ""
  # Reconstruction figure (frames + spectrogram) in TensorBoard every N pre-training steps
  # (0 = never), of the first recon_num_clips clips of the run's first batch.
  c.recon_every_steps = 1000 if kind == "pretrain" else 0
  c.recon_num_clips = 2
  return c
