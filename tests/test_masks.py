"""data/transforms/masks.py: the numpy masks (tube and random) have the exact counts."""
import numpy as np

from hicmae_jax.data.transforms import masks as host_masks


def test_tube_mask_exact_and_shared_over_time():
  masks = [host_masks.tube_mask(np.random.default_rng(s), grid=(8, 10, 10), mask_ratio=0.9)
           for s in range(4)]
  for m in masks:
    assert m.shape == (800,) and m.dtype == np.bool_
    assert m.sum() == 8 * 90
    per_t = m.reshape(8, 100)
    assert (per_t == per_t[0]).all()
  assert len({m.tobytes() for m in masks}) == 4


def test_random_mask_exact_count():
  masks = [host_masks.random_mask(np.random.default_rng(s), num_patches=128, mask_ratio=0.8)
           for s in range(4)]
  assert all(m.shape == (128,) and m.sum() == 102 for m in masks)
  assert len({m.tobytes() for m in masks}) == 4
