"""Reconstruction targets (pure functions): normalised video tubelet patches with the
frame-difference option, and normalised spectrogram patches."""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

from hicmae_jax.patches import patchify_audio, patchify_video
from hicmae_jax.pixels import IMAGENET_MEAN, IMAGENET_STD

PATCH_NORM_EPS = 1e-6


def _normalise_patches(p: jax.Array, axis: int) -> jax.Array:
  """(p - mean) / (unbiased std + 1e-6) over `axis` (the original's per-patch normalisation)."""
  mean = p.mean(axis=axis, keepdims=True)
  std = jnp.sqrt(jnp.var(p, axis=axis, keepdims=True, ddof=1))
  return (p - mean) / (std + PATCH_NORM_EPS)


def video_targets(video: jax.Array, *, tubelet: int, patch: int, frame_difference: bool,
                  mean: Sequence[float] = IMAGENET_MEAN,
                  std: Sequence[float] = IMAGENET_STD) -> jax.Array:
  """Normalised video patch targets.

  video [B, T, H, W, C] ImageNet-normalised -> [B, N, tubelet*patch*patch*C], values in
  (frame, row, col, channel) order. Pixels are un-normalised to [0, 1]; each tubelet patch is
  normalised per channel over its tubelet*patch*patch values. With `frame_difference` (the
  released recipe) frame t >= 1 of a tubelet becomes normalised(t) - normalised(t-1).
  """
  ct = jnp.promote_types(video.dtype, jnp.float32)
  x = video.astype(ct) * jnp.asarray(std, ct) + jnp.asarray(mean, ct)
  b, _, _, _, c = x.shape
  p = patchify_video(x, tubelet, patch)                      # [B, N, tub*p*p*C]
  n = p.shape[1]
  p = p.reshape(b, n, tubelet * patch * patch, c)
  p = _normalise_patches(p, axis=2)
  if frame_difference:
    p = p.reshape(b, n, tubelet, patch * patch, c)
    p = jnp.concatenate([p[:, :, :1], p[:, :, 1:] - p[:, :, :-1]], axis=2)
  return p.reshape(b, n, tubelet * patch * patch * c)


def audio_targets(audio: jax.Array, *, patch: int) -> jax.Array:
  """audio [B, time, freq] normalised fbank -> [B, N, patch*patch] per-patch normalised,
  values time-major (patch rows of time, each `patch` frequency values)."""
  ct = jnp.promote_types(audio.dtype, jnp.float32)
  return _normalise_patches(patchify_audio(audio.astype(ct), patch), axis=2)
