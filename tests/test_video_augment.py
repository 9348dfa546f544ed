"""data/transforms/video_augment.py: crops, resize, flip and erasing keep shapes and dtypes and
apply one draw to every frame."""
import numpy as np

from hicmae_jax.data.transforms import frames as frames_lib, video_augment


def clip(t=6, h=24, w=20, same=True, seed=0):
  """uint8 [t, h, w, 3]; every frame identical when `same` (so one draw -> identical output)."""
  rng = np.random.default_rng(seed)
  if same:
    return np.repeat(rng.integers(0, 256, (1, h, w, 3), dtype=np.uint8), t, axis=0)
  return rng.integers(0, 256, (t, h, w, 3), dtype=np.uint8)


def test_multi_scale_crop_same_crop_for_all_frames():
  frames = clip(t=5, h=40, w=48)
  for seed in range(5):
    out = video_augment.multi_scale_crop(frames, np.random.default_rng(seed), output_size=32)
    assert out.shape == (5, 32, 32, 3) and out.dtype == np.uint8
    assert all(np.array_equal(out[0], f) for f in out[1:])


def test_fixed_crop_only_when_large_enough():
  big = np.zeros((2, 224, 224, 3), np.uint8)
  assert video_augment.fixed_crop(big, (0, 160, 32, 192)).shape == (2, 160, 160, 3)
  small = np.zeros((2, 64, 64, 3), np.uint8)
  assert video_augment.fixed_crop(small, (0, 160, 32, 192)).shape == (2, 64, 64, 3)
  assert video_augment.fixed_crop(big, None).shape == big.shape


def test_resize_bilinear_matches_torch_rule():
  x = np.random.default_rng(0).random((2, 8, 6, 3)).astype(np.float32)
  np.testing.assert_allclose(video_augment.resize_bilinear(x, 8, 6), x, rtol=0, atol=0)
  # Halving with align_corners=False samples between each 2x2 block: the block mean.
  half = video_augment.resize_bilinear(x, 4, 3)
  block = x.reshape(2, 4, 2, 3, 2, 3).mean(axis=(2, 4))
  np.testing.assert_allclose(half, block, atol=1e-6)


def test_random_resized_crop_and_flip_same_for_all_frames():
  video = frames_lib.normalize(clip(t=4, h=30, w=26))
  for seed in range(6):
    rng = np.random.default_rng(seed)
    out = video_augment.horizontal_flip(
        video_augment.random_resized_crop(video, rng, output_size=16), rng)
    assert out.shape == (4, 16, 16, 3) and out.dtype == np.float32
    assert all(np.array_equal(out[0], f) for f in out[1:])
  flipped = video_augment.horizontal_flip(video, np.random.default_rng(0), prob=1.0)
  np.testing.assert_array_equal(flipped, video[:, :, ::-1])


def test_random_erasing_one_region_for_all_frames():
  video = frames_lib.normalize(clip(t=4, h=32, w=32))
  out = video_augment.random_erasing(video, np.random.default_rng(1), probability=1.0)
  assert out.shape == video.shape and out.dtype == np.float32
  erased = (out != video).any(axis=-1)  # [T, H, W]
  assert erased[0].any()
  assert all(np.array_equal(erased[0], e) for e in erased[1:])
  rows, cols = np.nonzero(erased[0])
  box = erased[0][rows.min():rows.max() + 1, cols.min():cols.max() + 1]
  assert box.all()  # a rectangle
  assert not np.array_equal(out[0][erased[0]], out[1][erased[1]])  # fresh noise per frame
  untouched = video_augment.random_erasing(video, np.random.default_rng(1), probability=0.0)
  assert untouched is video
