"""Video as it crosses to the device: uint8 frames in, the normalised float32 model input out.

The pre-training and evaluation pipelines send frames as uint8 [B, T, S, S, 3] (a quarter of
the bytes of float32); every consumer of a batch's video (the models, the pre-training targets,
the reconstruction figures) calls `model_input` first, inside its jitted function. It looks each
byte up in the same float32 table (`normalize_table`) as the host's `data.frames.normalize`, so the device gets the
very bits the host used to send. Float input (fine-tuning batches, which are normalised on the
host before their crop, erasing and mixing) passes through unchanged.
"""
from __future__ import annotations

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
