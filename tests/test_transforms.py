"""Unit tests of the data transforms (sampling, frames, video_augment, rand_augment, masks,
mixing): samplers against hand-written indices (SPEC 2a), augmentations keep shapes/dtypes and
apply one draw to every frame, masks, mixup/cutmix."""
import numpy as np
import pytest
from PIL import Image

from hicmae_jax.data import (
  frames as frames_lib,
  masks as host_masks,
  mixing,
  rand_augment as RA,
  sampling,
  video_augment,
)


class _FixedStart:
  """Stands in for a Generator: integers(hi) -> hi - 1 (the latest allowed start)."""

  def integers(self, hi):
    return hi - 1


def _clip(t=6, h=24, w=20, same=True, seed=0):
  """uint8 [t, h, w, 3]; every frame identical when `same` (so one draw -> identical output)."""
  rng = np.random.default_rng(seed)
  if same:
    return np.repeat(rng.integers(0, 256, (1, h, w, 3), dtype=np.uint8), t, axis=0)
  return rng.integers(0, 256, (t, h, w, 3), dtype=np.uint8)


# --- frame sampling (SPEC 2a worked examples, written out by hand) ---------------------------

def test_test_mode_indices_n20():
  views = sampling.test_frame_indices(20, num_frames=16, sampling_rate=4, num_segments=2)
  expected = [0, 4, 8, 12, 16] + [16] * 11
  assert len(views) == 2
  for ids, span in views:  # T = 16: both segments start at 0
    assert ids.tolist() == expected
    assert span == (0, 19)  # f1 = min(16 + 4, 19)


def test_test_mode_indices_n100():
  (ids0, span0), (ids1, span1) = sampling.test_frame_indices(100, num_frames=16,
                                                             sampling_rate=4, num_segments=2)
  assert ids0.tolist() == [0, 4, 8, 12, 16, 20, 24, 28, 32, 36, 40, 44, 48, 52, 56, 60]
  assert span0 == (0, 64)
  # idx has 25 entries, segment 1 starts at int(1 * (25 - 16)) = 9 -> idx[9:25]
  assert ids1.tolist() == [36, 40, 44, 48, 52, 56, 60, 64, 68, 72, 76, 80, 84, 88, 92, 96]
  assert span1 == (36, 99)  # min(96 + 4, 99)


def test_val_mode_indices_n20():
  ids, span = sampling.segment_frame_indices(20, num_frames=16, sampling_rate=4)
  # linspace(0, 20, 5) = 0, 5, 10, 15, 20, then 11 copies of 20, clipped to 19
  assert ids.tolist() == [0, 5, 10, 15, 19] + [19] * 11
  assert span == (0, 19)


def test_val_mode_indices_n100_centred_and_random():
  ids, span = sampling.segment_frame_indices(100, num_frames=16, sampling_rate=4)
  # centred end e = (64 + 99) // 2 = 81, s = 17: linspace(17, 81, 16) clipped to [17, 80]
  assert ids.tolist() == [17, 21, 25, 29, 34, 38, 42, 46, 51, 55, 59, 63, 68, 72, 76, 80]
  assert span == (17, 81)
  ids, (f0, f1) = sampling.segment_frame_indices(100, num_frames=16, sampling_rate=4,
                                                 rng=np.random.default_rng(3))
  end = f0 + 64  # the original: e in [64, n), s = e - 64
  assert 64 <= end < 100 and f1 == min(f0 + 64, 99)
  expected = np.clip(np.linspace(f0, end, 16), f0, end - 1).astype(np.int64)
  np.testing.assert_array_equal(ids, expected)


def test_pretrain_indices_pad_by_repeating_last():
  ids, span = sampling.pretrain_frame_indices(20, np.random.default_rng(0), num_frames=16,
                                              sampling_rate=4)
  assert ids.tolist() == [0, 4, 8, 12, 16] + [16] * 11
  assert span == (0, 19)
  # n = 21: the original's strict advance test never reaches frame 20.
  ids, _ = sampling.pretrain_frame_indices(21, _FixedStart(), num_frames=16, sampling_rate=4)
  assert ids.tolist() == [0, 4, 8, 12, 16] + [16] * 11
  # n = 66: starts 0..2; the latest start walks 2, 6, ..., 62.
  ids, span = sampling.pretrain_frame_indices(66, _FixedStart(), num_frames=16, sampling_rate=4)
  assert ids.tolist() == list(range(2, 63, 4))
  assert span == (2, 65)


def test_audio_spans():
  assert sampling.relative_audio_span(0, 19, 20, 12800) == (0, 12800)
  assert sampling.relative_audio_span(36, 99, 100, 64000) == (int(36 / 99 * 64000), 64000)
  assert sampling.relative_audio_span(0, 0, 1, 5000) == (0, 0)
  assert sampling.timestamp_audio_span(4, 19, 25.0, 16000) == (2560, 2560 + 10240)
  wave = np.arange(30000, dtype=np.float32)
  assert sampling.cut_audio(wave, 100, 2000).shape == (1900,)
  assert sampling.cut_audio(wave, 0, 0).shape == (30000,)  # too short a span, file < 2.56 s
  with pytest.raises(ValueError):
    sampling.cut_audio(np.zeros(50000, np.float32), 0, 10)


# --- crops, RandAugment, erasing: shapes, dtypes, one draw for all frames ---------------------

def test_multi_scale_crop_same_crop_for_all_frames():
  frames = _clip(t=5, h=40, w=48)
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


def test_parse_rand_augment():
  assert RA.parse_rand_augment("rand-m7-n4-mstd0.5-inc1") == dict(
      magnitude=7.0, num_layers=4, magnitude_std=0.5, increasing=True)


@pytest.mark.parametrize("name", sorted(set(RA.RAND_INCREASING_OPS + RA.RAND_OPS)))
def test_every_rand_augment_op_keeps_shape(name):
  img = Image.fromarray(_clip(t=1, h=20, w=24)[0])
  args = RA._op_args(name, 7.0, np.random.default_rng(0), 0.45)
  out = np.asarray(RA._apply_op(img, name, args, Image.Resampling.BICUBIC, (128, 128, 128)))
  assert out.shape == (20, 24, 3) and out.dtype == np.uint8


def test_rand_augment_same_ops_on_every_frame():
  frames = _clip(t=4, h=32, w=32)
  changed = 0
  for seed in range(8):
    out = RA.rand_augment(frames, np.random.default_rng(seed))
    assert out.shape == frames.shape and out.dtype == np.uint8
    assert all(np.array_equal(out[0], f) for f in out[1:])
    changed += not np.array_equal(out, frames)
  assert changed > 0
  # Same seed, same result; distinct frames stay distinct.
  varied = _clip(t=3, same=False)
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


def test_resize_bilinear_matches_torch_rule():
  x = np.random.default_rng(0).random((2, 8, 6, 3)).astype(np.float32)
  np.testing.assert_allclose(video_augment.resize_bilinear(x, 8, 6), x, rtol=0, atol=0)
  # Halving with align_corners=False samples between each 2x2 block: the block mean.
  half = video_augment.resize_bilinear(x, 4, 3)
  block = x.reshape(2, 4, 2, 3, 2, 3).mean(axis=(2, 4))
  np.testing.assert_allclose(half, block, atol=1e-6)


def test_random_resized_crop_and_flip_same_for_all_frames():
  video = frames_lib.normalize(_clip(t=4, h=30, w=26))
  for seed in range(6):
    rng = np.random.default_rng(seed)
    out = video_augment.horizontal_flip(
        video_augment.random_resized_crop(video, rng, output_size=16), rng)
    assert out.shape == (4, 16, 16, 3) and out.dtype == np.float32
    assert all(np.array_equal(out[0], f) for f in out[1:])
  flipped = video_augment.horizontal_flip(video, np.random.default_rng(0), prob=1.0)
  np.testing.assert_array_equal(flipped, video[:, :, ::-1])


def test_random_erasing_one_region_for_all_frames():
  video = frames_lib.normalize(_clip(t=4, h=32, w=32))
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


def test_normalize_values():
  frames = np.array([[[[0, 255, 128]]]], np.uint8)
  out = frames_lib.normalize(frames)
  expected = (np.array([0, 1, 128 / 255]) - frames_lib.IMAGENET_MEAN) / frames_lib.IMAGENET_STD
  assert out.dtype == np.float32
  np.testing.assert_allclose(out[0, 0, 0], expected, rtol=1e-6)


# --- masks --------------------------------------------------------------------------------

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


# --- mixup / cutmix ------------------------------------------------------------------------

def _batch(b=6, c=5):
  rng = np.random.default_rng(0)
  return {"video": rng.standard_normal((b, 4, 16, 16, 3)).astype(np.float32),
          "audio": rng.standard_normal((b, 32, 8)).astype(np.float32),
          "label": np.array([0, 1, 2, 3, 4, 0][:b], np.int32)}


def test_label_smoothing_without_mixing():
  batch = _batch()
  out = mixing.mixup_cutmix(batch, np.random.default_rng(0), num_classes=5, mixup_alpha=0.0,
                       cutmix_alpha=0.0, label_smoothing=0.1)
  t = out["targets"]
  assert t.dtype == np.float32 and t.shape == (6, 5)
  np.testing.assert_allclose(t[np.arange(6), batch["label"]], 0.9 + 0.02, rtol=1e-6)
  np.testing.assert_allclose(t.sum(1), 1.0, rtol=1e-6)
  assert np.isclose(t[0, 1], 0.02)
  np.testing.assert_array_equal(out["video"], batch["video"])


@pytest.mark.parametrize("seed", range(6))
def test_mixup_cutmix_targets_lam_and_modalities(seed):
  batch = _batch()
  params = mixing.sample_mix_params(np.random.default_rng(seed), 16, 16)
  out = mixing.mixup_cutmix(batch, np.random.default_rng(seed), num_classes=5)
  lam = params.lam
  assert 0.0 <= lam <= 1.0
  t = out["targets"]
  np.testing.assert_allclose(t.sum(1), 1.0, rtol=1e-5)
  on, off = 0.9 + 0.02, 0.02
  # Sample 1 (label 1) pairs with sample 4 (label 4): targets = lam * y1 + (1 - lam) * y4.
  np.testing.assert_allclose(t[1, 1], lam * on + (1 - lam) * off, rtol=1e-5)
  np.testing.assert_allclose(t[1, 4], (1 - lam) * on + lam * off, rtol=1e-5)
  np.testing.assert_array_equal(out["audio"], batch["audio"])  # audio untouched by default
  v, flipped = batch["video"], batch["video"][::-1]
  if params.use_cutmix:
    yl, yh, xl, xh = params.box
    np.testing.assert_array_equal(out["video"][:, :, yl:yh, xl:xh],
                                  flipped[:, :, yl:yh, xl:xh])
    outside = np.ones((16, 16), bool)
    outside[yl:yh, xl:xh] = False
    np.testing.assert_array_equal(out["video"][:, :, outside], v[:, :, outside])
    np.testing.assert_allclose(lam, 1 - (yh - yl) * (xh - xl) / 256)
  else:
    np.testing.assert_allclose(out["video"], lam * v + (1 - lam) * flipped, atol=1e-6)
  assert out["video"].dtype == np.float32
  np.testing.assert_array_equal(batch["video"], _batch()["video"])  # input not modified


def test_mix_audio_switch():
  batch = _batch()
  params = mixing.sample_mix_params(np.random.default_rng(2), 16, 16)
  out = mixing.mixup_cutmix(batch, np.random.default_rng(2), num_classes=5, mix_audio=True)
  a = batch["audio"]
  np.testing.assert_allclose(out["audio"], params.lam * a + (1 - params.lam) * a[::-1],
                             atol=1e-6)
