"""Training augmentation of a clip's frames: one random draw per clip, applied to every frame.

Pre-training (VideoMAE): a fixed crop and the multi-scale crop, on uint8 frames. Fine-tuning
(SlowFast/VideoMAE, after normalisation as the original): random resized crop with torch-style
bilinear resizing, horizontal flip, random erasing. RandAugment is `rand_augment.py`.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from PIL import Image

from hicmae_jax.data.transforms.frames import RESAMPLE


def fixed_crop(frames: np.ndarray, crop: tuple[int, int, int, int] | None) -> np.ndarray:
  """Crops rows crop[0]:crop[1], cols crop[2]:crop[3] (the original's VoxCeleb2 crop
  (0, 160, 32, 192) of 224x224 frames) when the frames are large enough; else unchanged.

  frames: [T, H, W, 3] -> [T, crop[1]-crop[0], crop[3]-crop[2], 3]."""
  if crop is None:
    return frames
  r0, r1, c0, c1 = crop
  if frames.shape[1] < r1 or frames.shape[2] < c1:
    return frames
  return frames[:, r0:r1, c0:c1]


def multi_scale_box(image_h: int, image_w: int, rng: np.random.Generator, *,
                    output_size: int, scales: Sequence[float] = (1, .875, .75, .66),
                    max_distort: int = 1, more_fix_crop: bool = True,
                    ) -> tuple[int, int, int, int]:
  """VideoMAE's GroupMultiScaleCrop (fix_crop=True) draw: one crop size pair (w, h) from
  int(min(H, W) * scale) (snapped to output_size when within 3 px, |i - j| <= max_distort),
  one of the 13 fixed offsets -> (top, left, h, w), the same for all frames."""
  base = min(image_w, image_h)
  sizes = [int(base * s) for s in scales]
  crop_h = [output_size if abs(x - output_size) < 3 else x for x in sizes]
  crop_w = [output_size if abs(x - output_size) < 3 else x for x in sizes]
  pairs = [(w, h) for i, h in enumerate(crop_h) for j, w in enumerate(crop_w)
           if abs(i - j) <= max_distort]
  cw, ch = pairs[int(rng.integers(len(pairs)))]
  w_step, h_step = (image_w - cw) // 4, (image_h - ch) // 4
  offsets = [(0, 0), (4 * w_step, 0), (0, 4 * h_step), (4 * w_step, 4 * h_step),
             (2 * w_step, 2 * h_step)]
  if more_fix_crop:
    offsets += [(0, 2 * h_step), (4 * w_step, 2 * h_step), (2 * w_step, 4 * h_step),
                (2 * w_step, 0), (w_step, h_step), (3 * w_step, h_step), (w_step, 3 * h_step),
                (3 * w_step, 3 * h_step)]
  ow, oh = offsets[int(rng.integers(len(offsets)))]
  return oh, ow, ch, cw


def pil_resize_clip(crop: np.ndarray, output_size: int, interpolation: str = "bilinear"
                    ) -> np.ndarray:
  """PIL resize of every frame to output_size square. uint8 [T, h, w, 3] -> uint8
  [T, output_size, output_size, 3]; a crop already at that size is returned as it is (PIL's
  resize to the same size is a copy)."""
  if crop.shape[1:3] == (output_size, output_size):
    return np.ascontiguousarray(crop)
  out = np.empty((crop.shape[0], output_size, output_size, crop.shape[3]), np.uint8)
  for k, frame in enumerate(crop):
    out[k] = Image.fromarray(np.ascontiguousarray(frame)).resize(
        (output_size, output_size), RESAMPLE[interpolation])
  return out


def multi_scale_crop(frames: np.ndarray, rng: np.random.Generator, *, output_size: int,
                     scales: Sequence[float] = (1, .875, .75, .66), max_distort: int = 1,
                     more_fix_crop: bool = True, interpolation: str = "bilinear",
                     ) -> np.ndarray:
  """`multi_scale_box`, then PIL resize to output_size, on the host.

  frames: uint8 [T, H, W, 3] -> uint8 [T, output_size, output_size, 3]."""
  top, left, ch, cw = multi_scale_box(frames.shape[1], frames.shape[2], rng,
                                      output_size=output_size, scales=scales,
                                      max_distort=max_distort, more_fix_crop=more_fix_crop)
  return pil_resize_clip(frames[:, top:top + ch, left:left + cw], output_size, interpolation)


def multi_scale_crop_for_device(frames: np.ndarray, rng: np.random.Generator, *,
                                output_size: int, scales: Sequence[float] = (1, .875, .75, .66),
                                ) -> tuple[np.ndarray, np.ndarray]:
  """`multi_scale_crop` with the resize left to the device: the crop goes out at the top left
  of an output_size square canvas with its size, and `hicmae_jax.pixels.resize_crops` makes
  the same bytes as PIL there. A crop larger than the canvas is resized here with PIL (then
  its size is the canvas's: the device's resize is the identity).

  frames: uint8 [T, H, W, 3] -> (canvas uint8 [T, S, S, 3], crop_size int32 [2] (h, w))."""
  top, left, ch, cw = multi_scale_box(frames.shape[1], frames.shape[2], rng,
                                      output_size=output_size, scales=scales)
  crop = frames[:, top:top + ch, left:left + cw]
  if ch > output_size or cw > output_size:
    return pil_resize_clip(crop, output_size), np.array([output_size] * 2, np.int32)
  canvas = np.zeros((frames.shape[0], output_size, output_size, frames.shape[3]), np.uint8)
  canvas[:, :ch, :cw] = crop
  return canvas, np.array([ch, cw], np.int32)


def _linear_taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Two source taps and the second tap's weight per output index, as torch
  `interpolate(mode='bilinear', align_corners=False)`: x = (o + 0.5) * in / out - 0.5,
  clamped at 0."""
  src = (np.arange(out_size, dtype=np.float64) + 0.5) * (in_size / out_size) - 0.5
  src = np.maximum(src, 0.0)
  i0 = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
  i1 = np.minimum(i0 + 1, in_size - 1)
  return i0, i1, (src - i0).astype(np.float32)


def resize_bilinear(video: np.ndarray, height: int, width: int) -> np.ndarray:
  """Non-antialiased bilinear resize (torch interpolate, align_corners=False), float32.

  Two-tap gathers (rows, then columns), each lerp a + (b - a) * w in float32: every frame goes
  through the same element-wise arithmetic, so identical frames stay bit-identical (a BLAS
  matmul would not promise that). The column taps index the flattened (W, C) axis, so both
  gathers take contiguous rows (4-6x faster than fancy indexing on the W axis; same bits).

  video: [T, H, W, C] -> [T, height, width, C]."""
  video = np.asarray(video, np.float32)
  t, _, w, c = video.shape
  r0, r1, rw = _linear_taps(video.shape[1], height)
  c0, c1, cw = _linear_taps(w, width)
  top = np.take(video, r0, axis=1)
  rows = np.take(video, r1, axis=1)  # [T, height, W, C]
  rows -= top
  rows *= rw[None, :, None, None]
  rows += top
  flat = rows.reshape(t * height, w * c)
  chan = np.arange(c)
  left = np.take(flat, (c0[:, None] * c + chan).ravel(), axis=1)
  out = np.take(flat, (c1[:, None] * c + chan).ravel(), axis=1)  # [T*height, width*C]
  out -= left
  out *= np.repeat(cw, c)
  out += left
  return out.reshape(t, height, width, c)


def sample_resized_crop(rng: np.random.Generator, height: int, width: int, *,
                        scale: tuple[float, float] = (0.08, 1.0),
                        ratio: tuple[float, float] = (0.75, 1.3333), attempts: int = 10,
                        ) -> tuple[int, int, int, int]:
  """SlowFast/VideoMAE `_get_param_spatial_crop` (log-uniform aspect, 10 tries, then the
  central fallback) -> (top, left, h, w)."""
  area = height * width
  log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
  for _ in range(attempts):
    target_area = rng.uniform(*scale) * area
    aspect = math.exp(rng.uniform(*log_ratio))
    w = int(round(math.sqrt(target_area * aspect)))
    h = int(round(math.sqrt(target_area / aspect)))
    if 0 < w <= width and 0 < h <= height:
      return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
  in_ratio = width / height
  if in_ratio < min(ratio):
    w, h = width, int(round(width / min(ratio)))
  elif in_ratio > max(ratio):
    h, w = height, int(round(height * max(ratio)))
  else:
    w, h = width, height
  return (height - h) // 2, (width - w) // 2, h, w


def random_resized_crop(video: np.ndarray, rng: np.random.Generator, *, output_size: int,
                        scale: tuple[float, float] = (0.08, 1.0),
                        ratio: tuple[float, float] = (0.75, 1.3333)) -> np.ndarray:
  """One crop box for the whole clip, resized with torch-style bilinear.

  video: float32 [T, H, W, C] -> float32 [T, output_size, output_size, C]."""
  top, left, h, w = sample_resized_crop(rng, video.shape[1], video.shape[2], scale=scale,
                                        ratio=ratio)
  return resize_bilinear(video[:, top:top + h, left:left + w], output_size, output_size)


def horizontal_flip(video: np.ndarray, rng: np.random.Generator, *, prob: float = 0.5,
                    ) -> np.ndarray:
  """Flips all frames left-right with probability `prob`. video: [T, H, W, C]."""
  if rng.uniform() < prob:
    return np.ascontiguousarray(video[:, :, ::-1])
  return video


def _erase_region(rng: np.random.Generator, img_h: int, img_w: int, count: int,
                  min_area: float, max_area: float, log_aspect: tuple[float, float],
                  attempts: int) -> tuple[int, int, int, int] | None:
  """One erasing region's draws (timm): up to `attempts` tries of area and aspect ->
  (top, left, h, w), or None when none fits."""
  for _ in range(attempts):
    target_area = rng.uniform(min_area, max_area) * img_h * img_w / count
    aspect = math.exp(rng.uniform(*log_aspect))
    h = int(round(math.sqrt(target_area * aspect)))
    w = int(round(math.sqrt(target_area / aspect)))
    if w < img_w and h < img_h:
      return (int(rng.integers(0, img_h - h + 1)), int(rng.integers(0, img_w - w + 1)), h, w)
  return None


def random_erasing(video: np.ndarray, rng: np.random.Generator, *, probability: float = 0.25,
                   min_area: float = 0.02, max_area: float = 1 / 3, min_aspect: float = 0.3,
                   max_aspect: float | None = None, mode: str = "pixel", min_count: int = 1,
                   max_count: int | None = None, attempts: int = 100,
                   copy: bool = True) -> np.ndarray:
  """timm/SlowFast RandomErasing in 'cube' form: one region for all frames, on the normalised
  clip. mode 'pixel': N(0, 1) per pixel and per frame; 'rand': N(0, 1) per channel and frame;
  'const': zeros.

  video: float32 [T, H, W, C] -> same shape (a copy when erased; copy=False erases in place,
  for a caller that owns `video`)."""
  if rng.random() > probability:
    return video
  t, img_h, img_w, chan = video.shape
  max_aspect = max_aspect or 1 / min_aspect
  log_aspect = (math.log(min_aspect), math.log(max_aspect))
  max_count = max_count or min_count
  count = min_count if min_count == max_count else int(rng.integers(min_count, max_count + 1))
  out = video.copy() if copy else video
  for _ in range(count):
    region = _erase_region(rng, img_h, img_w, count, min_area, max_area, log_aspect, attempts)
    if region is None:
      continue
    top, left, h, w = region
    if mode == "pixel":
      fill = rng.standard_normal((t, h, w, chan), dtype=np.float32)
    elif mode == "rand":
      fill = rng.standard_normal((t, 1, 1, chan), dtype=np.float32)
    else:
      fill = np.zeros((t, 1, 1, chan), np.float32)
    out[:, top:top + h, left:left + w] = fill
  return out


def erase_draw_for_device(rng: np.random.Generator, img_h: int, img_w: int, *,
                          probability: float = 0.25, min_area: float = 0.02,
                          max_area: float = 1 / 3, min_aspect: float = 0.3,
                          attempts: int = 100) -> tuple[np.ndarray, np.ndarray]:
  """`random_erasing`'s draws (one region) for `hicmae_jax.device_augment.erase`: the same
  region draws, then a seed for the device's noise in place of the numpy noise ->
  (box int32 [4] (top, left, h, w; h = 0: no erasing), seed int32 [])."""
  none = np.zeros(4, np.int32), np.int32(0)
  if rng.random() > probability:
    return none
  log_aspect = (math.log(min_aspect), math.log(1 / min_aspect))
  region = _erase_region(rng, img_h, img_w, 1, min_area, max_area, log_aspect, attempts)
  if region is None:
    return none
  return np.array(region, np.int32), np.int32(rng.integers(0, 2**31 - 1))
