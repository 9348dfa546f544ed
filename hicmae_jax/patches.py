"""Patchify / unpatchify of channels-last video and spectrograms (pure jnp reshapes).

The bottom layer shared by the patch embeddings (`models/embed.py`), the reconstruction
targets (`targets.py`) and the reconstruction pictures: video [B, T, H, W, C] <-> tubelet
tokens [B, N, tubelet*patch*patch*C] in (t, h, w) order; audio [B, time, freq] <-> patch tokens
[B, N, patch*patch], time-major.
"""
from __future__ import annotations

import jax


def patchify_video(video: jax.Array, tubelet: int, patch: int) -> jax.Array:
  """[B, T, H, W, C] -> [B, N, tubelet*patch*patch*C], tokens in (t, h, w) order.

  Values inside a patch are flattened in (frame, row, col, channel) order.
  """
  b, t, h, w, c = video.shape
  if t % tubelet or h % patch or w % patch:
    raise ValueError(f"video {video.shape} is not divisible into {tubelet}x{patch}x{patch} "
                     f"tubelets: frames must be a multiple of {tubelet}, sizes of {patch}")
  x = video.reshape(b, t // tubelet, tubelet, h // patch, patch, w // patch, patch, c)
  x = x.transpose(0, 1, 3, 5, 2, 4, 6, 7)
  return x.reshape(b, (t // tubelet) * (h // patch) * (w // patch), tubelet * patch * patch * c)


def unpatchify_video(patches: jax.Array, shape: tuple[int, ...], tubelet: int,
                     patch: int) -> jax.Array:
  """Inverse of patchify_video: [B, N, tubelet*patch*patch*C] -> [B, T, H, W, C]."""
  b, t, h, w, c = shape
  x = patches.reshape(b, t // tubelet, h // patch, w // patch, tubelet, patch, patch, c)
  x = x.transpose(0, 1, 4, 2, 5, 3, 6, 7)
  return x.reshape(b, t, h, w, c)


def patchify_audio(audio: jax.Array, patch: int) -> jax.Array:
  """[B, time, freq] -> [B, N, patch*patch], tokens time-major, values (time row, freq col)."""
  b, t, f = audio.shape
  if t % patch or f % patch:
    raise ValueError(f"spectrogram {audio.shape[1:]} is not divisible into {patch}x{patch} "
                     f"patches")
  x = audio.reshape(b, t // patch, patch, f // patch, patch).transpose(0, 1, 3, 2, 4)
  return x.reshape(b, (t // patch) * (f // patch), patch * patch)


def unpatchify_audio(patches: jax.Array, shape: tuple[int, int, int], patch: int) -> jax.Array:
  """Inverse of patchify_audio: [B, N, patch*patch] -> [B, time, freq]."""
  b, t, f = shape
  x = patches.reshape(b, t // patch, f // patch, patch, patch).transpose(0, 1, 3, 2, 4)
  return x.reshape(b, t, f)
