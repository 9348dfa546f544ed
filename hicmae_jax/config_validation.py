"""Config checks that run before a job creates any file: one line naming the key and the fix.

`validate_config` covers one trainable config (pre-training, fine-tuning, linear probe) and the
devices it will run on; the binaries call it before the workdir, the log or the synthetic data
exist, and the trainer calls it again first thing (cheap: no backend work beyond the mesh).
"""
from __future__ import annotations

import math

import jax
import ml_collections

from hicmae_jax import mask_counts, sharding
from hicmae_jax.models.options import check_attention_impl


def validate_config(config: ml_collections.ConfigDict, prefix: str = "config") -> None:
  """Fails fast, one line naming the key and the allowed values.

  prefix: how the config is named in messages, e.g. "config.pretrain" for the demo's part."""
  m = config.model
  if config.kind not in ("pretrain", "finetune", "linear_probe"):
    raise ValueError(f"{prefix}.kind={config.kind!r}; allowed: pretrain, finetune, linear_probe")
  check_attention_impl(m.attention_impl)
  for key in ("video_mask_ratio", "audio_mask_ratio"):
    mask_counts.check_ratio(m[key], f"{prefix}.model.{key}")
  if m.input_size % m.patch_size:
    raise ValueError(f"{prefix}.model.input_size={m.input_size} is not divisible by "
                     f"{prefix}.model.patch_size={m.patch_size}")
  if m.num_frames % m.tubelet_size:
    raise ValueError(f"{prefix}.model.num_frames={m.num_frames} is not divisible by "
                     f"{prefix}.model.tubelet_size={m.tubelet_size}")
  if m.audio_frames % m.audio_patch_size or m.audio_mel_bins % m.audio_patch_size:
    raise ValueError(f"{prefix}.model.audio_frames/audio_mel_bins ({m.audio_frames}, "
                     f"{m.audio_mel_bins}) must be divisible by audio_patch_size "
                     f"{m.audio_patch_size}")
  if config.kind == "pretrain":
    if len(m.hierarchy_layers) != m.decoder_depth - 1:
      raise ValueError(f"{prefix}.model.hierarchy_layers={tuple(m.hierarchy_layers)} must "
                       f"have decoder_depth - 1 = {m.decoder_depth - 1} entries")
    bad = [i for i in m.hierarchy_layers if not 0 <= i < min(m.video_depth, m.audio_depth)]
    if bad:
      raise ValueError(f"{prefix}.model.hierarchy_layers={tuple(m.hierarchy_layers)}: layers "
                       f"must be in [0, {min(m.video_depth, m.audio_depth)})")
    g = config.loss.contrastive_group_size
    if g > 0 and config.global_batch_size % g and g < config.global_batch_size:
      raise ValueError(f"{prefix}.loss.contrastive_group_size={g} must divide "
                       f"{prefix}.global_batch_size={config.global_batch_size} (or be 0: "
                       f"global)")
  if config.nonfinite not in ("stop", "skip"):
    raise ValueError(f"{prefix}.nonfinite={config.nonfinite!r}; allowed: stop, skip")
  if config.optim.accum_steps < 1:
    raise ValueError(f"{prefix}.optim.accum_steps={config.optim.accum_steps} must be >= 1")
  if not config.data.train_dir and not config.data.synthetic_dir:
    raise ValueError(f"{prefix}.data.train_dir is empty: pass --{prefix}.data.train_dir="
                     f"<prepared split> (or {prefix}.data.synthetic_dir for the built-in "
                     f"synthetic data)")
  check_devices(config, prefix)


def check_devices(config: ml_collections.ConfigDict, prefix: str = "config") -> None:
  """The mesh fits the devices and the global batch splits evenly over devices and processes.

  Starts the backend (after jax.distributed, which the binaries initialise first)."""
  mesh = sharding.make_mesh(config.mesh)
  step = math.lcm(int(mesh.devices.size), jax.process_count())
  batch = config.global_batch_size
  if batch < 1 or batch % step:
    raise ValueError(f"{prefix}.global_batch_size={batch} does not split over the "
                     f"{mesh.devices.size} devices of {jax.process_count()} process(es): pass "
                     f"--{prefix}.global_batch_size=<a multiple of {step}>")
