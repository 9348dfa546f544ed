"""Patch embeddings (video tubelets, audio spectrogram patches) and fixed sinusoid positions.

Inputs are channels-last: video [B, T, H, W, C], audio [B, time, freq]. A patch embedding is
a stride=kernel convolution, done here as patchify + one matmul (same numbers, simpler and
faster on every backend). The kernel keeps the conv layout [kt, kh, kw, C_in, D] so it maps
one-to-one onto the original's Conv3d/Conv2d weight.
"""
from __future__ import annotations

import jax
import numpy as np
from flax import nnx

from hicmae_jax.models.layers import torch_default_uniform
from hicmae_jax.models.matmul import matmul
from hicmae_jax.patches import patchify_audio, patchify_video


def sinusoid_table(num_positions: int, dim: int) -> np.ndarray:
  """Fixed 1-D sinusoid table [num_positions, dim] (float32).

  angle(pos, j) = pos / 10000^(2*(j//2)/dim); even j take sin, odd j take cos (interleaved).
  Computed in float64 and rounded to float32 like the original (also for float64 runs).
  """
  pos = np.arange(num_positions, dtype=np.float64)[:, None]
  j = np.arange(dim)
  angle = pos / np.power(10000.0, 2 * (j // 2) / dim)[None, :]
  table = np.where(j % 2 == 0, np.sin(angle), np.cos(angle))
  return table.astype(np.float32)


class PatchProjection(nnx.Module):
  """The conv-as-matmul projection: kernel [*kernel_size, C_in, D] and bias [D]."""

  def __init__(self, kernel_size: tuple[int, ...], in_channels: int, dim: int, *, dtype,
               param_dtype, rngs: nnx.Rngs):
    fan_in = int(np.prod(kernel_size)) * in_channels
    init = torch_default_uniform(fan_in)  # PyTorch's default conv init, as the original
    self.kernel = nnx.Param(init(rngs.params(), (*kernel_size, in_channels, dim), param_dtype))
    self.bias = nnx.Param(init(rngs.params(), (dim,), param_dtype))
    self.dtype = dtype

  def __call__(self, patches: jax.Array) -> jax.Array:
    """patches [B, N, prod(kernel)*C_in] -> [B, N, D]."""
    k = self.kernel[...]
    k = k.reshape(-1, k.shape[-1]).astype(self.dtype)
    return matmul(patches.astype(self.dtype), k) + self.bias[...].astype(self.dtype)


class VideoPatchEmbed(nnx.Module):
  """Tubelet embedding: [B, T, H, W, 3] -> [B, (T/2)(H/16)(W/16), D]."""

  def __init__(self, dim: int, *, tubelet: int, patch: int, in_channels: int = 3, dtype,
               param_dtype, rngs: nnx.Rngs):
    self.tubelet = tubelet
    self.patch = patch
    self.proj = PatchProjection((tubelet, patch, patch), in_channels, dim, dtype=dtype,
                                param_dtype=param_dtype, rngs=rngs)

  def patchify(self, video: jax.Array) -> jax.Array:
    return patchify_video(video, self.tubelet, self.patch)

  def __call__(self, video: jax.Array) -> jax.Array:
    return self.proj(self.patchify(video))


class AudioPatchEmbed(nnx.Module):
  """Spectrogram patch embedding: [B, time, freq] -> [B, (time/16)(freq/16), D]."""

  def __init__(self, dim: int, *, patch: int, dtype, param_dtype, rngs: nnx.Rngs):
    self.patch = patch
    self.proj = PatchProjection((patch, patch), 1, dim, dtype=dtype, param_dtype=param_dtype,
                                rngs=rngs)

  def patchify(self, audio: jax.Array) -> jax.Array:
    return patchify_audio(audio, self.patch)

  def __call__(self, audio: jax.Array) -> jax.Array:
    return self.proj(self.patchify(audio))
