"""Video as it crosses to the device: uint8 frames in, the normalised float32 model input out.

The pre-training and evaluation pipelines send frames as uint8 [B, T, S, S, 3] (a quarter of
the bytes of float32); every consumer of a batch's video (the models, the pre-training targets,
the reconstruction figures) calls `model_input` first, inside its jitted function. It looks each
byte up in the same float32 table as the host's `data.frames.normalize`, so the device gets the
very bits the host used to send. Float input (fine-tuning batches, which are normalised on the
host before their crop, erasing and mixing) passes through unchanged.
"""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

from hicmae_jax.data.frames import IMAGENET_MEAN, IMAGENET_STD, normalize_table


def model_input(video: jax.Array, mean: Sequence[float] = IMAGENET_MEAN,
                std: Sequence[float] = IMAGENET_STD) -> jax.Array:
  """uint8 [..., C] -> float32 (x / 255 - mean) / std, bit-identical to the host's table;
  any other dtype is returned as it is (already normalised)."""
  if video.dtype != jnp.uint8:
    return video
  table = jnp.asarray(normalize_table(tuple(mean), tuple(std)))  # [256, C] float32
  return table[video.astype(jnp.int32), jnp.arange(table.shape[1])]
