"""Per-clip data transforms in numpy/PIL: frame sampling, crops, RandAugment, erasing, masks, mixup.

Every random function takes an explicit `np.random.Generator`, so the pipeline can make each
example a pure function of (seed, position). Sizes are keyword arguments with the original's
values as defaults. Layout conventions: video uint8 [T, H, W, 3] before normalisation, float32
[T, H, W, 3] after; masks bool with True = masked.

What follows the original HiCMAE (github sunlicai/HiCMAE, itself built on VideoMAE/timm) and
where we differ is said at each function; see SPEC.md sections 2, 2a and 11.
"""
from __future__ import annotations

import dataclasses
import io
import math
from typing import Any, Mapping, Sequence

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Normalisation of the log-mel fbank (AudioSet statistics, used by the original for every
# dataset). Kept here so the pipeline's defaults have one home.
FBANK_MEAN = -4.2677393
FBANK_STD = 4.5689974

_RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
}


# ----------------------------------------------------------------------------------------------
# Frame index sampling (which stored frames a clip uses) and the matching audio span.
# ----------------------------------------------------------------------------------------------

def pretrain_frame_indices(num_available: int, rng: np.random.Generator, *,
                           num_frames: int = 16, sampling_rate: int = 4,
                           ) -> tuple[np.ndarray, tuple[int, int]]:
  """The original's pre-training sampler (VideoMAE `_sample_train_indices` + TSN loader).

  A random start s in [0, n - num_frames*rate] (0 when the video is shorter), then frames
  s, s+rate, ...; the walk stops advancing once `offset + rate < n` fails (offset 1-based), so
  short clips repeat their last reachable frame. As in the original, frame n-1 is only ever
  used as a start frame (the advance test is strict).

  Returns (indices int64 [num_frames], (f0, f1)): f0 = first frame, f1 = min(last frame +
  rate, n - 1), the frame span the audio is cut to.
  """
  n = int(num_available)
  skip_length = num_frames * sampling_rate
  average_duration = n - skip_length + 1
  offset = int(rng.integers(average_duration)) + 1 if average_duration > 0 else 1
  ids = []
  for _ in range(num_frames):
    ids.append(offset - 1)
    if offset + sampling_rate < n:
      offset += sampling_rate
  ids = np.asarray(ids, dtype=np.int64)
  return ids, (int(ids[0]), int(min(ids[-1] + sampling_rate, n - 1)))


def segment_frame_indices(num_available: int, *, num_frames: int = 16, sampling_rate: int = 4,
                          rng: np.random.Generator | None = None,
                          ) -> tuple[np.ndarray, tuple[int, int]]:
  """The original's fine-tuning train/validation sampler (SPEC 2a 'Validation mode').

  n <= num_frames*rate: `linspace(0, n, n // rate)` then copies of n up to num_frames,
  clipped to [0, n-1], truncated to int. n > num_frames*rate: a window of num_frames*rate
  frames ending at e, `linspace(e - span, e, num_frames)` clipped to [s, e-1]. With `rng`, e is
  drawn from [span, n) as the original does (training, and validation when reproducing the
  original); without it e is the middle of that range (our deterministic validation).

  Returns (indices int64 [num_frames], (f0, f1)) with f0 = indices[0] and
  f1 = min(f0 + num_frames*rate, n - 1) (the original's audio span).
  """
  n = int(num_available)
  span = num_frames * sampling_rate
  if n <= span:
    count = n // sampling_rate
    index = np.linspace(0, n, num=count)
    index = np.concatenate([index, np.full(num_frames - count, float(n))])
    index = np.clip(index, 0, n - 1).astype(np.int64)
  else:
    if rng is None:
      end = (span + n - 1) // 2  # middle of the original's randint(span, n) range
    else:
      end = int(rng.integers(span, n))
    start = end - span
    index = np.linspace(start, end, num=num_frames)
    index = np.clip(index, start, end - 1).astype(np.int64)
  f0 = int(index[0])
  return index, (f0, int(min(f0 + span, n - 1)))


def test_frame_indices(num_available: int, *, num_frames: int = 16, sampling_rate: int = 4,
                       num_segments: int = 2,
                       ) -> list[tuple[np.ndarray, tuple[int, int]]]:
  """The original's test-mode temporal views (SPEC 2a 'Test mode'), one entry per segment.

  idx = range(0, n, rate) padded with its last element to num_frames; T = len(idx); segment k
  starts at int(k * max((T - num_frames) / (num_segments - 1), 0)) and takes num_frames
  entries. Audio span: f0 = idx[start], f1 = min(idx[min(start + num_frames - 1, T - 1)] + rate,
  n - 1).
  """
  n = int(num_available)
  idx = list(range(0, n, sampling_rate))
  while len(idx) < num_frames:
    idx.append(idx[-1])
  total = len(idx)
  step = max((total - num_frames) / (num_segments - 1), 0.0) if num_segments > 1 else 0.0
  views = []
  for k in range(num_segments):
    start = int(k * step)
    sel = np.asarray(idx[start:start + num_frames], dtype=np.int64)
    f0 = idx[start]
    f1 = min(idx[min(start + num_frames - 1, total - 1)] + sampling_rate, n - 1)
    views.append((sel, (int(f0), int(f1))))
  return views


def relative_audio_span(f0: int, f1: int, num_video_frames: int, num_samples: int,
                        ) -> tuple[int, int]:
  """Sample span [a0, a1) of the frames f0..f1 by relative position (the original's
  fine-tuning rule): a = int(f / (n - 1) * N), 0 when n == 1. A wav whose length differs from
  the video is therefore stretched, not cut."""
  if num_video_frames <= 1:
    return 0, 0
  denom = num_video_frames - 1.0
  return int(f0 / denom * num_samples), int(f1 / denom * num_samples)


def timestamp_audio_span(f0: int, f1: int, fps: float, sample_rate: int) -> tuple[int, int]:
  """Sample span of frames f0..f1 from frame timestamps (the original's pre-training rule,
  decord's [start of f0, end of f1)): a0 = int(f0/fps*sr), a1 = a0 + int((f1+1-f0)/fps*sr)."""
  a0 = int(f0 / fps * sample_rate)
  return a0, a0 + int(((f1 + 1) / fps - f0 / fps) * sample_rate)


def cut_audio(waveform: np.ndarray, a0: int, a1: int, *, min_samples: int = 1024,
              whole_if_shorter_than: int = 40960) -> np.ndarray:
  """The original's span rule: waveform[a0:a1], or the whole file when the span has
  <= min_samples samples and the file is shorter than `whole_if_shorter_than` (2.56 s at
  16 kHz: the fbank's 256 frames). Otherwise raises ValueError (the original raises too).

  waveform: [N] -> [M]."""
  if a1 - a0 <= min_samples:
    if waveform.shape[0] < whole_if_shorter_than:
      return waveform
    raise ValueError(f"audio span [{a0}, {a1}) has <= {min_samples} samples in a "
                     f"{waveform.shape[0]}-sample file")
  return waveform[a0:a1]


# ----------------------------------------------------------------------------------------------
# Frame decoding and resizing (PIL, uint8).
# ----------------------------------------------------------------------------------------------

def decode_frames(encoded: Sequence[bytes], indices: Sequence[int]) -> dict[int, Image.Image]:
  """Decodes each distinct frame of `indices` once -> {index: RGB PIL image}.

  Raises OSError/ValueError on undecodable bytes (PIL refuses truncated JPEGs by default)
  and ValueError when frames differ in size."""
  out: dict[int, Image.Image] = {}
  size = None
  for i in sorted(set(int(i) for i in indices)):
    img = Image.open(io.BytesIO(encoded[i]))
    img.load()  # force the decode here so a bad frame fails now, naming this stage
    img = img.convert("RGB")
    if size is None:
      size = img.size
    elif img.size != size:
      raise ValueError(f"frame {i} is {img.size}, frame {min(out)} is {size}")
    out[i] = img
  return out


def pil_resize(img: Image.Image, height: int, width: int, *,
               interpolation: str = "bilinear") -> Image.Image:
  """PIL resize to exactly (height, width) (aspect not kept, as the original); PIL's bilinear
  is antialiased and rounds between passes, so PIL itself is needed to match the original."""
  if img.size == (width, height):
    return img
  return img.resize((width, height), _RESAMPLE[interpolation])


def stack_frames(images: Mapping[int, Image.Image], indices: Sequence[int]) -> np.ndarray:
  """Gathers decoded images by frame index -> uint8 [len(indices), H, W, 3]."""
  arrays = {i: np.asarray(img, dtype=np.uint8) for i, img in images.items()}
  return np.stack([arrays[int(i)] for i in indices])


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


def multi_scale_crop(frames: np.ndarray, rng: np.random.Generator, *, output_size: int,
                     scales: Sequence[float] = (1, .875, .75, .66), max_distort: int = 1,
                     more_fix_crop: bool = True, interpolation: str = "bilinear",
                     ) -> np.ndarray:
  """VideoMAE's GroupMultiScaleCrop (fix_crop=True): one crop size pair (w, h) drawn from
  int(min(H, W) * scale) (snapped to output_size when within 3 px, |i - j| <= max_distort),
  one of the 13 fixed offsets, the same for all frames; then PIL resize to output_size.

  frames: uint8 [T, H, W, 3] -> uint8 [T, output_size, output_size, 3]."""
  image_h, image_w = frames.shape[1], frames.shape[2]
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
  out = []
  for frame in frames:
    img = Image.fromarray(frame).crop((ow, oh, ow + cw, oh + ch))
    out.append(np.asarray(img.resize((output_size, output_size), _RESAMPLE[interpolation])))
  return np.stack(out)


def _normalize_table(mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
  """[256, C] float32: (v / 255 - mean) / std for every byte value, in float32 like torch."""
  v = np.arange(256, dtype=np.float32)[:, None] / np.float32(255.0)
  return (v - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)


def normalize(frames: np.ndarray, *, mean: Sequence[float] = IMAGENET_MEAN,
              std: Sequence[float] = IMAGENET_STD) -> np.ndarray:
  """uint8 [..., C] -> float32 (x / 255 - mean) / std, computed in float32 like torch.

  A per-channel lookup table gives the same bits as the arithmetic at a fraction of the
  cost (one gather per channel instead of three passes over the clip)."""
  table = _normalize_table(tuple(mean), tuple(std))
  out = np.empty(frames.shape, np.float32)
  for ch in range(table.shape[1]):
    out[..., ch] = table[:, ch][frames[..., ch]]
  return out


# ----------------------------------------------------------------------------------------------
# RandAugment (timm's, as vendored by VideoMAE/HiCMAE: one draw of op parameters per clip,
# applied to every frame).
# ----------------------------------------------------------------------------------------------

_MAX_LEVEL = 10.0
RAND_INCREASING_OPS = (
    "AutoContrast", "Equalize", "Invert", "Rotate", "PosterizeIncreasing", "SolarizeIncreasing",
    "SolarizeAdd", "ColorIncreasing", "ContrastIncreasing", "BrightnessIncreasing",
    "SharpnessIncreasing", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel")
RAND_OPS = (
    "AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize", "SolarizeAdd",
    "Color", "Contrast", "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateXRel",
    "TranslateYRel")


def parse_rand_augment(spec: str) -> dict[str, Any]:
  """'rand-m7-n4-mstd0.5-inc1' -> rand_augment keyword arguments (timm's config string)."""
  parts = spec.split("-")
  if parts[0] != "rand":
    raise ValueError(f"not a RandAugment spec: {spec!r}")
  kwargs: dict[str, Any] = {"increasing": False}
  for part in parts[1:]:
    if part.startswith("mstd"):
      kwargs["magnitude_std"] = float(part[4:])
    elif part.startswith("inc"):
      kwargs["increasing"] = bool(int(part[3:]))
    elif part.startswith("m"):
      kwargs["magnitude"] = float(part[1:])
    elif part.startswith("n"):
      kwargs["num_layers"] = int(part[1:])
    else:
      raise ValueError(f"unknown RandAugment field {part!r} in {spec!r}")
  return kwargs


def _negate(v: float, rng: np.random.Generator) -> float:
  return -v if rng.random() > 0.5 else v


def _op_args(name: str, m: float, rng: np.random.Generator, translate_pct: float) -> tuple:
  """timm's level -> argument functions for magnitude m in [0, 10]."""
  if name in ("AutoContrast", "Equalize", "Invert"):
    return ()
  if name == "Rotate":
    return (_negate(m / _MAX_LEVEL * 30.0, rng),)
  if name == "Posterize":
    return (int(m / _MAX_LEVEL * 4),)
  if name == "PosterizeIncreasing":
    return (4 - int(m / _MAX_LEVEL * 4),)
  if name == "Solarize":
    return (int(m / _MAX_LEVEL * 256),)
  if name == "SolarizeIncreasing":
    return (256 - int(m / _MAX_LEVEL * 256),)
  if name == "SolarizeAdd":
    return (int(m / _MAX_LEVEL * 110),)
  if name in ("Color", "Contrast", "Brightness", "Sharpness"):
    return (m / _MAX_LEVEL * 1.8 + 0.1,)
  if name.endswith("Increasing"):  # Color/Contrast/Brightness/SharpnessIncreasing
    return (1.0 + _negate(m / _MAX_LEVEL * 0.9, rng),)
  if name in ("ShearX", "ShearY"):
    return (_negate(m / _MAX_LEVEL * 0.3, rng),)
  if name in ("TranslateXRel", "TranslateYRel"):
    return (_negate(m / _MAX_LEVEL * translate_pct, rng),)
  raise ValueError(f"unknown RandAugment op {name!r}")


def _apply_op(img: Image.Image, name: str, args: tuple, resample: int,
              fill: tuple[int, int, int]) -> Image.Image:
  """One timm op on one RGB image (PIL)."""
  geo = dict(resample=resample, fillcolor=fill)
  if name == "AutoContrast":
    return ImageOps.autocontrast(img)
  if name == "Equalize":
    return ImageOps.equalize(img)
  if name == "Invert":
    return ImageOps.invert(img)
  if name == "Rotate":
    return img.rotate(args[0], **geo)
  if name.startswith("Posterize"):
    return img if args[0] >= 8 else ImageOps.posterize(img, args[0])
  if name.startswith("Solarize") and name != "SolarizeAdd":
    return ImageOps.solarize(img, args[0])
  if name == "SolarizeAdd":
    lut = [min(255, i + args[0]) if i < 128 else i for i in range(256)]
    return img.point(lut * 3)
  if name.startswith("Color"):
    return ImageEnhance.Color(img).enhance(args[0])
  if name.startswith("Contrast"):
    return ImageEnhance.Contrast(img).enhance(args[0])
  if name.startswith("Brightness"):
    return ImageEnhance.Brightness(img).enhance(args[0])
  if name.startswith("Sharpness"):
    return ImageEnhance.Sharpness(img).enhance(args[0])
  affine = Image.Transform.AFFINE
  if name == "ShearX":
    return img.transform(img.size, affine, (1, args[0], 0, 0, 1, 0), **geo)
  if name == "ShearY":
    return img.transform(img.size, affine, (1, 0, 0, args[0], 1, 0), **geo)
  if name == "TranslateXRel":
    return img.transform(img.size, affine, (1, 0, args[0] * img.size[0], 0, 1, 0), **geo)
  if name == "TranslateYRel":
    return img.transform(img.size, affine, (1, 0, 0, 0, 1, args[0] * img.size[1]), **geo)
  raise ValueError(f"unknown RandAugment op {name!r}")


@dataclasses.dataclass(frozen=True)
class RandAugmentOp:
  """One drawn op: name and its arguments (same for every frame of the clip)."""
  name: str
  args: tuple


def sample_rand_augment(rng: np.random.Generator, *, magnitude: float = 7.0,
                        num_layers: int = 4, magnitude_std: float = 0.5,
                        increasing: bool = True, prob: float = 0.5,
                        translate_pct: float = 0.45) -> list[RandAugmentOp]:
  """Draws timm's RandAugment for one clip: num_layers ops with replacement; each applies with
  probability `prob`, magnitude ~ N(magnitude, magnitude_std) clipped to [0, 10], then its
  level function (with its random sign). Returns the ops that apply, in order."""
  names = RAND_INCREASING_OPS if increasing else RAND_OPS
  chosen = rng.choice(len(names), size=num_layers, replace=True)
  ops = []
  for c in chosen:
    name = names[int(c)]
    if prob < 1.0 and rng.random() > prob:
      continue
    m = magnitude
    if magnitude_std == float("inf"):
      m = rng.uniform(0, m)
    elif magnitude_std > 0:
      m = rng.normal(m, magnitude_std)
    m = min(_MAX_LEVEL, max(0.0, float(m)))
    ops.append(RandAugmentOp(name, _op_args(name, m, rng, translate_pct)))
  return ops


def rand_augment(frames: Sequence[Image.Image] | np.ndarray, rng: np.random.Generator, *,
                 magnitude: float = 7.0, num_layers: int = 4, magnitude_std: float = 0.5,
                 increasing: bool = True, prob: float = 0.5, translate_pct: float = 0.45,
                 interpolation: str = "bicubic", fill: tuple[int, int, int] = (128, 128, 128),
                 ) -> np.ndarray:
  """RandAugment rand-m7-n4-mstd0.5-inc1 by default, the same ops and parameters on every frame.

  `interpolation` is the geometric ops' resample filter: the original passes its
  `--train_interpolation` (bicubic); fill is timm's (128, 128, 128).

  frames: uint8 [T, H, W, 3] (or T PIL images) -> uint8 [T, H, W, 3]."""
  images = [f if isinstance(f, Image.Image) else Image.fromarray(f) for f in frames]
  ops = sample_rand_augment(rng, magnitude=magnitude, num_layers=num_layers,
                            magnitude_std=magnitude_std, increasing=increasing, prob=prob,
                            translate_pct=translate_pct)
  resample = _RESAMPLE[interpolation]
  for op in ops:
    images = [_apply_op(img, op.name, op.args, resample, fill) for img in images]
  return np.stack([np.asarray(img, dtype=np.uint8) for img in images])


# ----------------------------------------------------------------------------------------------
# Float-tensor spatial augmentations (after normalisation, as the original).
# ----------------------------------------------------------------------------------------------

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

  Two-tap gathers (rows, then columns): every frame goes through the same element-wise
  arithmetic, so identical frames stay bit-identical (a BLAS matmul would not promise that).

  video: [T, H, W, C] -> [T, height, width, C]."""
  r0, r1, rw = _linear_taps(video.shape[1], height)
  c0, c1, cw = _linear_taps(video.shape[2], width)
  rw, cw = rw[None, :, None, None], cw[None, None, :, None]
  top = video[:, r0]
  rows = top + (video[:, r1] - top) * rw  # [T, height, W, C]
  left = rows[:, :, c0]
  out = left + (rows[:, :, c1] - left) * cw  # [T, height, width, C]
  return out.astype(np.float32, copy=False)


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


def random_erasing(video: np.ndarray, rng: np.random.Generator, *, probability: float = 0.25,
                   min_area: float = 0.02, max_area: float = 1 / 3, min_aspect: float = 0.3,
                   max_aspect: float | None = None, mode: str = "pixel", min_count: int = 1,
                   max_count: int | None = None, attempts: int = 100) -> np.ndarray:
  """timm/SlowFast RandomErasing in 'cube' form: one region for all frames, on the normalised
  clip. mode 'pixel': N(0, 1) per pixel and per frame; 'rand': N(0, 1) per channel and frame;
  'const': zeros.

  video: float32 [T, H, W, C] -> same shape (a copy when erased)."""
  if rng.random() > probability:
    return video
  t, img_h, img_w, chan = video.shape
  max_aspect = max_aspect or 1 / min_aspect
  log_aspect = (math.log(min_aspect), math.log(max_aspect))
  max_count = max_count or min_count
  count = min_count if min_count == max_count else int(rng.integers(min_count, max_count + 1))
  out = video.copy()
  for _ in range(count):
    for _ in range(attempts):
      target_area = rng.uniform(min_area, max_area) * img_h * img_w / count
      aspect = math.exp(rng.uniform(*log_aspect))
      h = int(round(math.sqrt(target_area * aspect)))
      w = int(round(math.sqrt(target_area / aspect)))
      if w < img_w and h < img_h:
        top = int(rng.integers(0, img_h - h + 1))
        left = int(rng.integers(0, img_w - w + 1))
        if mode == "pixel":
          fill = rng.standard_normal((t, h, w, chan), dtype=np.float32)
        elif mode == "rand":
          fill = rng.standard_normal((t, 1, 1, chan), dtype=np.float32)
        else:
          fill = np.zeros((t, 1, 1, chan), np.float32)
        out[:, top:top + h, left:left + w] = fill
        break
  return out


# ----------------------------------------------------------------------------------------------
# Masks (pre-training). Static counts per sample so the model can gather with fixed shapes.
# ----------------------------------------------------------------------------------------------

def tube_mask(rng: np.random.Generator, *, grid: tuple[int, int, int],
              mask_ratio: float = 0.9) -> np.ndarray:
  """Tube masking: one spatial mask with exactly int(ratio * h * w) True, repeated over all t
  temporal slots. grid = (t, h, w) patches -> bool [t * h * w] in (t, h, w) order."""
  t, h, w = grid
  per_frame = h * w
  num_masked = int(mask_ratio * per_frame)
  spatial = np.zeros(per_frame, dtype=bool)
  spatial[rng.permutation(per_frame)[:num_masked]] = True
  return np.tile(spatial, t)


def random_mask(rng: np.random.Generator, *, num_patches: int, mask_ratio: float = 0.8,
                ) -> np.ndarray:
  """Random masking with exactly int(ratio * num_patches) True -> bool [num_patches]."""
  mask = np.zeros(num_patches, dtype=bool)
  mask[rng.permutation(num_patches)[:int(mask_ratio * num_patches)]] = True
  return mask


# ----------------------------------------------------------------------------------------------
# Mixup / CutMix with label smoothing (timm's Mixup, mode 'batch'), a batch transform.
# ----------------------------------------------------------------------------------------------

def smooth_one_hot(labels: np.ndarray, num_classes: int, smoothing: float = 0.1) -> np.ndarray:
  """int [B] -> float32 [B, C]: off = smoothing / C, on = 1 - smoothing + off."""
  off = smoothing / num_classes
  out = np.full((labels.shape[0], num_classes), off, dtype=np.float32)
  out[np.arange(labels.shape[0]), labels.astype(np.int64)] = 1.0 - smoothing + off
  return out


@dataclasses.dataclass(frozen=True)
class MixParams:
  """One batch's mixing: lam (label weight of the unflipped batch), whether CutMix, and the
  CutMix box (rows yl:yh, cols xl:xh) or None."""
  lam: float
  use_cutmix: bool
  box: tuple[int, int, int, int] | None


def sample_mix_params(rng: np.random.Generator, height: int, width: int, *,
                      mixup_alpha: float = 0.8, cutmix_alpha: float = 1.0,
                      switch_prob: float = 0.5, prob: float = 1.0,
                      correct_lam: bool = True) -> MixParams:
  """timm `_params_per_batch` + `cutmix_bbox_and_lam` (no minmax): lam ~ Beta(a, a) of the
  chosen method; CutMix box of side sqrt(1 - lam) around a uniform centre, clipped, and lam
  corrected to the kept area."""
  if not (mixup_alpha > 0 or cutmix_alpha > 0) or rng.random() >= prob:
    return MixParams(1.0, False, None)
  if mixup_alpha > 0 and cutmix_alpha > 0:
    use_cutmix = bool(rng.random() < switch_prob)
    alpha = cutmix_alpha if use_cutmix else mixup_alpha
  else:
    use_cutmix = cutmix_alpha > 0
    alpha = cutmix_alpha if use_cutmix else mixup_alpha
  lam = float(rng.beta(alpha, alpha))
  if not use_cutmix:
    return MixParams(lam, False, None)
  cut = math.sqrt(1.0 - lam)
  cut_h, cut_w = int(height * cut), int(width * cut)
  cy, cx = int(rng.integers(0, height)), int(rng.integers(0, width))
  yl, yh = int(np.clip(cy - cut_h // 2, 0, height)), int(np.clip(cy + cut_h // 2, 0, height))
  xl, xh = int(np.clip(cx - cut_w // 2, 0, width)), int(np.clip(cx + cut_w // 2, 0, width))
  if correct_lam:
    lam = 1.0 - (yh - yl) * (xh - xl) / float(height * width)
  return MixParams(lam, True, (yl, yh, xl, xh))


def mixup_cutmix(batch: Mapping[str, np.ndarray], rng: np.random.Generator, *,
                 num_classes: int, mixup_alpha: float = 0.8, cutmix_alpha: float = 1.0,
                 switch_prob: float = 0.5, prob: float = 1.0, label_smoothing: float = 0.1,
                 mix_audio: bool = False, correct_lam: bool = True) -> dict[str, np.ndarray]:
  """Whole-batch Mixup/CutMix pairing each sample with the flipped batch (timm mode 'batch').

  Mixes `video` [B, T, H, W, 3] (CutMix: the same H x W box in every frame) and, with
  mix_audio, `audio` [B, Ta, F] (linear mix with the final lam for both methods: a
  spectrogram box has no meaning tied to the video box). The original mixes the video only
  but the labels fully (SPEC 11). Adds `targets` float32 [B, C] = lam * smooth(y) +
  (1 - lam) * smooth(flip(y)); the input is not modified."""
  out = dict(batch)
  video = np.asarray(batch["video"])
  params = sample_mix_params(rng, video.shape[2], video.shape[3], mixup_alpha=mixup_alpha,
                             cutmix_alpha=cutmix_alpha, switch_prob=switch_prob, prob=prob,
                             correct_lam=correct_lam)
  lam = params.lam
  if lam != 1.0:
    if params.use_cutmix:
      yl, yh, xl, xh = params.box
      mixed = video.copy()
      mixed[:, :, yl:yh, xl:xh] = video[::-1, :, yl:yh, xl:xh]
    else:
      mixed = video * np.float32(lam) + video[::-1] * np.float32(1.0 - lam)
    out["video"] = mixed.astype(np.float32, copy=False)
    if mix_audio:
      audio = np.asarray(batch["audio"])
      out["audio"] = (audio * np.float32(lam) + audio[::-1] * np.float32(1.0 - lam)).astype(
          np.float32, copy=False)
  labels = np.asarray(batch["label"])
  y1 = smooth_one_hot(labels, num_classes, label_smoothing)
  out["targets"] = (y1 * np.float32(lam) + y1[::-1] * np.float32(1.0 - lam)).astype(np.float32)
  return out
