"""Mask invariants: exact counts, tubes shared over time, independent per sample, one trace;
the device (JAX) and host (numpy) masks follow the one count rule of `mask_counts`."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hicmae_jax import mask_counts, masking
from hicmae_jax.data.transforms import masks as host_masks


def test_counts_match_original():
  assert mask_counts.num_masked(100, 0.9) == 90
  assert mask_counts.num_masked(128, 0.8) == 102
  with pytest.raises(ValueError, match="mask ratio"):
    mask_counts.num_masked(100, 1.0)


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
  mask_counts.check_mask_counts(good, 8, "mask_video")
  bad = good.copy()
  bad[1, 8] = True
  with pytest.raises(ValueError, match="mask_video"):
    mask_counts.check_mask_counts(bad, 8, "mask_video")


@pytest.mark.parametrize("grid,num_audio,ratios", [((8, 10, 10), 128, (0.9, 0.8)),
                                                    ((4, 2, 2), 8, (0.75, 0.75)),
                                                    ((2, 3, 3), 7, (0.5, 0.3))])
def test_device_and_host_masks_share_the_count_rule(grid, num_audio, ratios):
  video, audio = mask_counts.masked_counts(grid, num_audio, *ratios)
  on_device = (np.asarray(masking.tube_mask(jax.random.key(0), 3, grid, ratios[0])),
               np.asarray(masking.random_mask(jax.random.key(1), 3, num_audio, ratios[1])))
  rng = np.random.default_rng(0)
  on_host = (np.stack([host_masks.tube_mask(rng, grid=grid, mask_ratio=ratios[0])
                       for _ in range(3)]),
             np.stack([host_masks.random_mask(rng, num_patches=num_audio, mask_ratio=ratios[1])
                       for _ in range(3)]))
  for mask_v, mask_a in (on_device, on_host):
    mask_counts.check_mask_counts(mask_v, video, "mask_video")
    mask_counts.check_mask_counts(mask_a, audio, "mask_audio")


def test_one_ratio_check_names_the_setting():
  with pytest.raises(ValueError, match=r"MaskOptions.video_ratio must be in \(0, 1\)"):
    mask_counts.check_ratio(0.0, "MaskOptions.video_ratio")
  with pytest.raises(ValueError, match="mask ratio"):
    host_masks.random_mask(np.random.default_rng(0), num_patches=8, mask_ratio=1.5)
