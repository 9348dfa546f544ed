"""RandAugment (timm's, as vendored by VideoMAE/HiCMAE): one draw of op parameters per clip,
applied to every frame (PIL)."""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from hicmae_jax.data.transforms.frames import RESAMPLE

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
  resample = RESAMPLE[interpolation]
  for op in ops:
    images = [_apply_op(img, op.name, op.args, resample, fill) for img in images]
  return np.stack([np.asarray(img, dtype=np.uint8) for img in images])
