"""Frames as pixels: JPEG/PNG decoding, PIL resizing, stacking and normalisation.

Layout: uint8 [T, H, W, 3] before normalisation, float32 [T, H, W, 3] after.
"""
from __future__ import annotations

import io
from typing import Mapping, Sequence

import numpy as np
import simplejpeg
from PIL import Image

from hicmae_jax.pixels import IMAGENET_MEAN, IMAGENET_STD, normalize_table

_JPEG_SOI = b"\xff\xd8"

RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
}


def decode_frame(data: bytes) -> np.ndarray:
  """One encoded frame -> RGB uint8 [H, W, 3]. JPEGs go to libjpeg-turbo directly
  (simplejpeg: the library and settings of PIL's decoder, bit-identical pixels, without PIL's
  image object and its copy out); a JPEG it rejects (strict: any libjpeg warning), PNG and
  other formats go through PIL, which keeps PIL's rules for what decodes.

  Raises OSError/ValueError on undecodable bytes (PIL refuses truncated JPEGs by default)."""
  if data[:2] == _JPEG_SOI:
    try:
      return simplejpeg.decode_jpeg(data, colorspace="RGB")
    except ValueError:
      pass
  img = Image.open(io.BytesIO(data))
  img.load()  # force the decode here so a bad frame fails now, naming this stage
  return np.asarray(img.convert("RGB"))


def decode_frames(encoded: Sequence[bytes], indices: Sequence[int]) -> dict[int, np.ndarray]:
  """Decodes each distinct frame of `indices` once (only those) -> {index: uint8 [H, W, 3]}.

  Raises OSError/ValueError on undecodable bytes and ValueError when frames differ in size."""
  out: dict[int, np.ndarray] = {}
  shape = None
  for i in sorted(set(int(i) for i in indices)):
    pixels = decode_frame(encoded[i])
    if shape is None:
      shape = pixels.shape
    elif pixels.shape != shape:
      raise ValueError(f"frame {i} is {pixels.shape[1]}x{pixels.shape[0]}, frame {min(out)} "
                       f"is {shape[1]}x{shape[0]}")
    out[i] = pixels
  return out


def pil_resize(frame: np.ndarray, height: int, width: int, *,
               interpolation: str = "bilinear") -> np.ndarray:
  """PIL resize of uint8 [H, W, 3] to exactly (height, width) (aspect not kept, as the
  original); PIL's bilinear is antialiased and rounds between passes, so PIL itself is needed
  to match the original."""
  if frame.shape[:2] == (height, width):
    return frame
  return np.asarray(Image.fromarray(frame).resize((width, height), RESAMPLE[interpolation]))


def pil_image(frame: np.ndarray, height: int, width: int, *,
              interpolation: str = "bilinear") -> Image.Image:
  """`pil_resize`, but the result as a PIL image (for PIL work that follows, RandAugment)."""
  img = Image.fromarray(frame)
  if frame.shape[:2] == (height, width):
    return img
  return img.resize((width, height), RESAMPLE[interpolation])


def stack_frames(images: Mapping[int, np.ndarray], indices: Sequence[int]) -> np.ndarray:
  """Gathers decoded frames by frame index -> uint8 [len(indices), H, W, 3]."""
  return np.stack([images[int(i)] for i in indices])


def normalize(frames: np.ndarray, *, mean: Sequence[float] = IMAGENET_MEAN,
              std: Sequence[float] = IMAGENET_STD) -> np.ndarray:
  """uint8 [..., C] -> float32 (x / 255 - mean) / std, computed in float32 like torch.

  A per-channel lookup table gives the same bits as the arithmetic at a fraction of the
  cost (one gather per channel instead of three passes over the clip)."""
  table = normalize_table(tuple(mean), tuple(std))
  out = np.empty(frames.shape, np.float32)
  for ch in range(table.shape[1]):
    out[..., ch] = table[:, ch][frames[..., ch]]
  return out
