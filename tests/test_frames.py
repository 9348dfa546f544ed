"""data/transforms/frames.py: the ImageNet normalisation of uint8 frames."""
import numpy as np

from hicmae_jax.data.transforms import frames as frames_lib


def test_normalize_values():
  frames = np.array([[[[0, 255, 128]]]], np.uint8)
  out = frames_lib.normalize(frames)
  expected = (np.array([0, 1, 128 / 255]) - frames_lib.IMAGENET_MEAN) / frames_lib.IMAGENET_STD
  assert out.dtype == np.float32
  np.testing.assert_allclose(out[0, 0, 0], expected, rtol=1e-6)
