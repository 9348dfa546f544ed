"""Video as it crosses to the device: uint8 frames in, the normalised float32 model input out.

The pre-training and evaluation pipelines send frames as uint8 [B, T, S, S, 3] (a quarter of
the bytes of float32); every consumer of a batch's video (the models, the pre-training targets,
the reconstruction figures) calls `model_input` first, inside its jitted function. It looks each
byte up in the same float32 table (`normalize_table`) as the host's `data.frames.normalize`, so
the device gets the very bits the host used to send. Float input (fine-tuning batches, which
are normalised on the host before their crop, erasing and mixing) passes through unchanged.
"""
from __future__ import annotations

import functools
import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

# The original's (ImageNet) normalisation of RGB in [0, 1]; the configs' data.mean / data.std.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalize_table(mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
  """[256, C] float32: (v / 255 - mean) / std for every byte value, in float32 like torch."""
  v = np.arange(256, dtype=np.float32)[:, None] / np.float32(255.0)
  return (v - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)


def model_input(video: jax.Array, mean: Sequence[float] = IMAGENET_MEAN,
                std: Sequence[float] = IMAGENET_STD) -> jax.Array:
  """uint8 [..., C] -> float32 (x / 255 - mean) / std, bit-identical to the host's table;
  any other dtype is returned as it is (already normalised)."""
  if video.dtype != jnp.uint8:
    return video
  table = jnp.asarray(normalize_table(tuple(mean), tuple(std)))  # [256, C] float32
  return table[video.astype(jnp.int32), jnp.arange(table.shape[1])]


# ------------------------------------------------------------------ PIL's bilinear resize --
# PIL (Pillow's Resample.c) resizes uint8 images with 22-bit fixed-point coefficients, a
# horizontal pass rounded to uint8, then a vertical pass. The same integer arithmetic in jnp
# gives the same bytes on the device, so the host can send a crop and skip the resize.

PIL_PRECISION_BITS = 22  # 32 - 8 - 2: Pillow's fixed-point precision for 8-bit images


def pil_bilinear_taps(in_size: int, out_size: int, num_taps: int | None = None
                      ) -> tuple[np.ndarray, np.ndarray]:
  """Pillow's BILINEAR coefficients for in_size -> out_size (float64 then fixed point, as
  `precompute_coeffs` and `normalize_coeffs_8bpc`).

  Returns (index int32 [out_size, num_taps], weight int32 [out_size, num_taps]); unused taps
  have weight 0 and index 0. num_taps defaults to Pillow's ksize for this scale."""
  scale = in_size / out_size
  filterscale = max(scale, 1.0)
  support = 1.0 * filterscale  # the bilinear (triangle) filter's support is 1
  ksize = int(math.ceil(support)) * 2 + 1
  num_taps = ksize if num_taps is None else num_taps
  if num_taps < ksize:
    raise ValueError(f"{in_size} -> {out_size} needs {ksize} taps, got {num_taps}")
  index = np.zeros((out_size, num_taps), np.int32)
  weight = np.zeros((out_size, num_taps), np.int32)
  for xx in range(out_size):
    center = (xx + 0.5) * scale
    xmin = max(int(center - support + 0.5), 0)  # C's (int) truncates toward zero
    xmax = min(int(center + support + 0.5), in_size) - xmin
    x = np.arange(xmax)
    k = np.maximum(1.0 - np.abs((x + xmin - center + 0.5) / filterscale), 0.0)
    total = k.sum()
    if total != 0.0:
      k = k / total
    fixed = np.where(k < 0, -0.5 + k * (1 << PIL_PRECISION_BITS),
                     0.5 + k * (1 << PIL_PRECISION_BITS))
    index[xx, :xmax] = x + xmin
    weight[xx, :xmax] = np.trunc(fixed).astype(np.int32)
  return index, weight


@functools.lru_cache(maxsize=16)
def pil_bilinear_table(max_in: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
  """Taps for every input size 1..max_in -> out_size, one shape for all:
  (index int32 [max_in + 1, out_size, K], weight int32 [max_in + 1, out_size, K]); row 0 is
  unused (all-zero weights). Cached (read-only arrays): ~0.5 s to build at 224 -> 160 (AMD
  EPYC, 2026-12-03), and every trace of a step that resizes asks for it."""
  num_taps = int(math.ceil(max(max_in / out_size, 1.0))) * 2 + 1
  index = np.zeros((max_in + 1, out_size, num_taps), np.int32)
  weight = np.zeros((max_in + 1, out_size, num_taps), np.int32)
  for n in range(1, max_in + 1):
    index[n], weight[n] = pil_bilinear_taps(n, out_size, num_taps)
  index.flags.writeable = weight.flags.writeable = False
  return index, weight


def _pil_pass(x: jax.Array, index: jax.Array, weight: jax.Array) -> jax.Array:
  """One fixed-point pass along axis 0 of uint8 pixels [N, ...]: per output row the sum of its
  tap rows x weights, + half, >> PRECISION_BITS, clipped to [0, 255] (Pillow's clip8).

  index, weight: [S, K] -> uint8 [S, ...]. The taps are gathered as whole rows of the leading
  axis, one tap at a time (a fused row gather, multiply and add): 4-5x faster on XLA:CPU (AMD
  EPYC, AVX-512, 2026-12-03) than gathering all K taps along an inner axis."""
  acc = jnp.full((index.shape[0],) + x.shape[1:], 1 << (PIL_PRECISION_BITS - 1), jnp.int32)
  for k in range(index.shape[1]):
    w = weight[:, k].reshape((-1,) + (1,) * (x.ndim - 1))
    acc = acc + x[index[:, k]].astype(jnp.int32) * w
  return jnp.clip(acc >> PIL_PRECISION_BITS, 0, 255).astype(jnp.uint8)


def resize_crops(video: jax.Array, crop_size: jax.Array, out_size: int) -> jax.Array:
  """Resizes each example's top-left crop to out_size square, exactly as PIL's
  `Image.resize((out, out), BILINEAR)` on every frame of that crop (same bytes).

  video: uint8 [B, T, H, W, C] (the crop in rows :h, cols :w, the rest ignored);
  crop_size: int32 [B, 2] (h, w), 1 <= h <= H, 1 <= w <= W -> uint8 [B, T, out, out, C]."""
  index_h, weight_h = (jnp.asarray(a) for a in pil_bilinear_table(video.shape[2], out_size))
  index_w, weight_w = (jnp.asarray(a) for a in pil_bilinear_table(video.shape[3], out_size))

  def one(clip, hw):
    x = jnp.transpose(clip, (2, 0, 1, 3))  # [W, T, H, C]: columns lead
    x = _pil_pass(x, index_w[hw[1]], weight_w[hw[1]])  # PIL: horizontal first -> [S, T, H, C]
    x = jnp.transpose(x, (2, 0, 1, 3))  # [H, S, T, C]: rows lead
    x = _pil_pass(x, index_h[hw[0]], weight_h[hw[0]])  # [S, S, T, C]
    return jnp.transpose(x, (2, 0, 1, 3))  # [T, S, S, C]

  return jax.vmap(one)(video, crop_size)


def batch_video(batch: dict, input_size: int, mean: Sequence[float] = IMAGENET_MEAN,
                std: Sequence[float] = IMAGENET_STD) -> jax.Array:
  """A batch's model input video: its crops resized on the device when the batch carries
  `video_crop_size` (pre-training: the host sends the multi-scale crop, `resize_crops`), then
  `model_input`. -> [B, T, input_size, input_size, C]."""
  video = batch["video"]
  if "video_crop_size" in batch:
    video = resize_crops(video, batch["video_crop_size"], input_size)
  return model_input(video, mean, std)
