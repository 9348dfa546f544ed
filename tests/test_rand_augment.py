"""data/transforms/rand_augment.py: the RandAugment string, every op keeps the shape, one draw of
ops for every frame."""
import numpy as np
import pytest
from PIL import Image

from hicmae_jax.data.transforms import rand_augment as RA
from tests.test_video_augment import clip


def test_parse_rand_augment():
  assert RA.parse_rand_augment("rand-m7-n4-mstd0.5-inc1") == dict(
      magnitude=7.0, num_layers=4, magnitude_std=0.5, increasing=True)


@pytest.mark.parametrize("name", sorted(set(RA.RAND_INCREASING_OPS + RA.RAND_OPS)))
def test_every_rand_augment_op_keeps_shape(name):
  img = Image.fromarray(clip(t=1, h=20, w=24)[0])
  args = RA._op_args(name, 7.0, np.random.default_rng(0), 0.45)
  out = np.asarray(RA._apply_op(img, name, args, Image.Resampling.BICUBIC, (128, 128, 128)))
  assert out.shape == (20, 24, 3) and out.dtype == np.uint8


def test_rand_augment_same_ops_on_every_frame():
  frames = clip(t=4, h=32, w=32)
  changed = 0
  for seed in range(8):
    out = RA.rand_augment(frames, np.random.default_rng(seed))
    assert out.shape == frames.shape and out.dtype == np.uint8
    assert all(np.array_equal(out[0], f) for f in out[1:])
    changed += not np.array_equal(out, frames)
  assert changed > 0
  # Same seed, same result; distinct frames stay distinct.
  varied = clip(t=3, same=False)
  a = RA.rand_augment(varied, np.random.default_rng(5))
  np.testing.assert_array_equal(a, RA.rand_augment(varied, np.random.default_rng(5)))


def test_sample_rand_augment_parameters():
  for seed in range(20):
    for op in RA.sample_rand_augment(np.random.default_rng(seed)):
      assert op.name in RA.RAND_INCREASING_OPS
      if op.name == "Rotate":
        assert abs(op.args[0]) <= 30
      if op.name.endswith("Increasing") and op.name[:5] in ("Color", "Contr", "Brigh", "Sharp"):
        assert 0.1 <= op.args[0] <= 1.9
