"""Pre-training masks drawn on the host (numpy), for config.data.masks_in_pipeline.

The same rule as the device masks of `hicmae_jax/masking.py` (`mask_counts.num_masked`):
exactly int(ratio * count) tokens masked per sample, so the model can gather with fixed
shapes; True = masked. Each mask is one `np.random.Generator` permutation (the pipeline's
per-example stream), which is why the draw itself differs from the device one.
"""
from __future__ import annotations

import numpy as np

from hicmae_jax.mask_counts import num_masked


def _exact_count(rng: np.random.Generator, n: int, count: int) -> np.ndarray:
  """bool [n] with exactly `count` True at random positions."""
  mask = np.zeros(n, dtype=bool)
  mask[rng.permutation(n)[:count]] = True
  return mask


def tube_mask(rng: np.random.Generator, *, grid: tuple[int, int, int],
              mask_ratio: float) -> np.ndarray:
  """Tube masking: one spatial mask with exactly num_masked(h * w, ratio) True, repeated over
  all t temporal slots. grid = (t, h, w) patches -> bool [t * h * w] in (t, h, w) order."""
  t, h, w = grid
  return np.tile(_exact_count(rng, h * w, num_masked(h * w, mask_ratio)), t)


def random_mask(rng: np.random.Generator, *, num_patches: int, mask_ratio: float) -> np.ndarray:
  """Random masking with exactly num_masked(num_patches, ratio) True -> bool [num_patches]."""
  return _exact_count(rng, num_patches, num_masked(num_patches, mask_ratio))
