"""Mask invariants: exact counts, tubes shared over time, independent per sample, one trace."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hicmae_jax import masking


def test_counts_match_original():
  assert masking.num_masked(100, 0.9) == 90
  assert masking.num_masked(128, 0.8) == 102
  with pytest.raises(ValueError, match="mask ratio"):
    masking.num_masked(100, 1.0)


def test_tube_mask_invariants():
  mask = np.asarray(masking.tube_mask(jax.random.key(0), 6, (8, 10, 10), 0.9))
  assert mask.shape == (6, 800) and mask.dtype == bool
  assert (mask.sum(1) == 720).all()
  grid = mask.reshape(6, 8, 100)
  assert (grid == grid[:, :1]).all()  # one spatial mask shared by all temporal slots
  assert len({row.tobytes() for row in grid[:, 0]}) == 6  # each sample its own mask


def test_random_mask_invariants():
  mask = np.asarray(masking.random_mask(jax.random.key(1), 5, 128, 0.8))
  assert (mask.sum(1) == 102).all()
  assert len({row.tobytes() for row in mask}) == 5
  other = np.asarray(masking.random_mask(jax.random.key(2), 5, 128, 0.8))
  assert not (other == mask).all()


def test_mask_to_ids_keeps_raster_order():
  mask = jnp.array([[True, False, True, False, False], [False, True, True, True, False]])
  vis, masked = masking.mask_to_ids(mask[:1], 3)
  np.testing.assert_array_equal(vis, [[1, 3, 4]])
  np.testing.assert_array_equal(masked, [[0, 2]])


def test_one_compilation_per_shape():
  traces = []

  @jax.jit
  def draw(key):
    traces.append(1)
    return masking.tube_mask(key, 4, (8, 10, 10), 0.9), masking.random_mask(key, 4, 128, 0.8)

  for seed in range(3):
    draw(jax.random.key(seed))
  assert len(traces) == 1


def test_check_mask_counts():
  good = np.zeros((2, 10), bool)
  good[:, :8] = True
  masking.check_mask_counts(good, 8, "mask_video")
  bad = good.copy()
  bad[1, 8] = True
  with pytest.raises(ValueError, match="mask_video"):
    masking.check_mask_counts(bad, 8, "mask_video")
