"""Fine-tuning's float augmentation in the train step (`device_augment`) against the host's
(issue 18): the crop, flip and mixing from the same draws give the host's floats (bound below),
erasing fills the host's region with jax.random noise, and whole pipelines with the switch on
and off agree."""
from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest

from hicmae_jax import device_augment, pixels
from hicmae_jax.data.transforms import frames, mixing, video_augment

# The same float32 operations in the same order, but XLA (CPU and GPU) fuses (b - a) * w + a
# and x * lam + y * rest into FMAs, which round once where numpy rounds twice: about a third of
# the values differ by 1-2 ulp (measured max 4.8e-7 on normalised values up to 2.6).
ATOL, RTOL = 1e-6, 1e-6


def _clip(rng, t=3, s=24):
  return rng.integers(0, 256, (t, s, s, 3), dtype=np.uint8)


@pytest.mark.parametrize("box", [(0, 0, 24, 24), (3, 5, 10, 17), (20, 0, 4, 24), (0, 23, 1, 1)])
def test_resized_crop_equals_host(box):
  clip = frames.normalize(_clip(np.random.default_rng(sum(box))))
  top, left, h, w = box
  want = video_augment.resize_bilinear(clip[:, top:top + h, left:left + w], 24, 24)
  got = np.asarray(jax.jit(device_augment.resized_crop, static_argnums=2)(
      clip[None], np.array([box], np.int32), 24))[0]
  np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


def test_flip_and_erase():
  rng = np.random.default_rng(0)
  video = frames.normalize(np.stack([_clip(rng), _clip(rng)]))
  flipped = np.asarray(device_augment.flip(video, np.array([True, False])))
  np.testing.assert_array_equal(flipped[0], video[0, :, :, ::-1])
  np.testing.assert_array_equal(flipped[1], video[1])
  boxes = np.array([[2, 3, 5, 7], [0, 0, 0, 0]], np.int32)
  seeds = np.array([11, 12], np.int32)
  erased = np.asarray(device_augment.erase(video, boxes, seeds, "pixel"))
  np.testing.assert_array_equal(erased[1], video[1])  # h = 0: untouched
  noise = np.asarray(jax.random.normal(jax.random.key(11), video.shape[1:]))
  np.testing.assert_array_equal(erased[0, :, 2:7, 3:10], noise[:, 2:7, 3:10])
  outside = np.ones(video.shape[1:], bool)
  outside[:, 2:7, 3:10] = False
  np.testing.assert_array_equal(erased[0][outside], video[0][outside])
  zeros = np.asarray(device_augment.erase(video, boxes, seeds, "const"))
  assert not zeros[0, :, 2:7, 3:10].any()
  with pytest.raises(ValueError, match="erase mode"):
    device_augment.erase(video, boxes, seeds, "blur")


@pytest.mark.parametrize("mode", ["pixel", "rand", "const"])
def test_erase_on_a_split_batch_equals_the_loop(mode):
  """Under a mesh of several devices (the train step's) erasing is vectorised instead of a
  loop over the batch (a loop would gather every clip on every device: tests/test_aot_compile
  checks the compiled step): same values."""
  rng = np.random.default_rng(1)
  video = frames.normalize(np.stack([_clip(rng) for _ in range(4)]))
  boxes = np.array([[2, 3, 5, 7], [0, 0, 0, 0], [1, 1, 3, 2], [0, 0, 0, 0]], np.int32)
  seeds = np.array([11, 12, 13, 14], np.int32)
  loop = np.asarray(jax.jit(lambda v: device_augment.erase(v, boxes, seeds, mode))(video))

  def split(v):
    with jax.sharding.use_abstract_mesh(jax.sharding.AbstractMesh((2,), ("data",))):
      return device_augment.erase(v, boxes, seeds, mode)
  np.testing.assert_array_equal(np.asarray(jax.jit(split)(video)), loop)


@pytest.mark.parametrize("seed", range(6))
def test_mix_equals_host_mixup_cutmix(seed):
  """Both methods (the seeds cover Mixup and CutMix), pairs within blocks of the batch."""
  rng = np.random.default_rng(seed)
  video = frames.normalize(np.stack([_clip(rng) for _ in range(6)]))
  labels = np.arange(6, dtype=np.int32) % 3
  kw = dict(num_classes=3, mixup_alpha=0.8, cutmix_alpha=1.0, switch_prob=0.5)
  host = mixing.mixup_cutmix({"video": video, "label": labels}, np.random.default_rng(seed), **kw)
  draws = mixing.mixup_cutmix({"video": video, "label": labels}, np.random.default_rng(seed),
                              video_on_device=True, **kw)
  np.testing.assert_array_equal(draws["targets"], host["targets"])
  np.testing.assert_array_equal(draws["video"], video)  # left to the device
  got = np.asarray(device_augment.mix(video, draws["mix_weights"], draws["mix_box"], 6))
  np.testing.assert_allclose(got, host["video"], rtol=RTOL, atol=ATOL)
  # two processes' batches of 3 in one global batch: each block pairs within itself
  halves = [mixing.mixup_cutmix({"video": video[i:i + 3], "label": labels[i:i + 3]},
                                np.random.default_rng(seed), **kw)["video"] for i in (0, 3)]
  weights = np.concatenate([draws["mix_weights"][:3]] * 2)
  boxes = np.concatenate([draws["mix_box"][:3]] * 2)
  got = np.asarray(device_augment.mix(video, weights, boxes, 3))
  np.testing.assert_allclose(got, np.concatenate(halves), rtol=RTOL, atol=ATOL)


def test_train_video_passes_host_augmented_video_through():
  video = frames.normalize(_clip(np.random.default_rng(0)))[None]
  assert device_augment.train_video({"video": video}, 24) is video
  uint8 = _clip(np.random.default_rng(0))[None]
  np.testing.assert_array_equal(np.asarray(device_augment.train_video({"video": uint8}, 24)),
                                np.asarray(pixels.model_input(uint8)))


def test_finetune_pipeline_with_float_on_device_equals_host(tmp_path):
  """The fine-tuning pipeline, switch on and off (no erasing, so the random streams stay
  aligned): the train step's video equals the host's, labels, targets and audio are equal;
  with erasing the regions are the host's (its noise is jax.random's)."""
  from hicmae_jax.data.pipeline import factories as pipeline, options
  from tests.test_device_resize import _write_clips
  split = str(tmp_path / "s")
  _write_clips(split, [(40, 48), (40, 48), (24, 20), (56, 64)] * 2)
  video = options.VideoOptions(num_frames=4, sampling_rate=2, input_size=32)
  audio = options.AudioOptions(audio_frames=64, num_mel_bins=32, magnitude=True, roll=False)
  loader = options.LoaderOptions(shard_index=0, shard_count=1, read_threads=1)
  labels = options.LabelOptions(task=None, num_classes=0, label_smoothing=0.1,
                                mixup_alpha=0.8, cutmix_alpha=1.0, mixup_switch_prob=0.5,
                                mix_audio=False)
  base = options.AugmentOptions(fixed_crop=None, multiscale=(1.0,), num_repeats=1,
                                rand_augment="rand-m7-n4-mstd0.5-inc1", erase_prob=0.0)

  def batches(**kw):
    ds = pipeline.make_finetune_train_dataset(
        split, batch_size=4, seed=5, video=video, audio=audio,
        augment=dataclasses.replace(base, **kw), labels=labels, loader=loader)
    it = iter(ds)
    return [next(it) for _ in range(4)]

  step_video = jax.jit(device_augment.train_video, static_argnums=1)
  for h, d in zip(batches(), batches(float_on_device=True)):
    assert d["video"].dtype == np.uint8 and h["video"].dtype == np.float32
    np.testing.assert_allclose(np.asarray(step_video(d, 32)), h["video"], rtol=RTOL, atol=ATOL)
    for k in ("audio", "label", "targets"):
      np.testing.assert_array_equal(d[k], h[k], err_msg=k)
  erased = 0
  for h, d in zip(batches(erase_prob=1.0), batches(erase_prob=1.0, float_on_device=True)):
    for box in d["aug_erase"]:
      top, left, hh, ww = box
      erased += int(hh > 0)
  assert erased > 0


@pytest.mark.parametrize("seed", range(8))
def test_erase_draw_is_the_host_region(seed):
  """The device's box is the region the host's random_erasing fills, from the same draws."""
  video = np.full((2, 32, 32, 3), 100.0, np.float32)
  host = video_augment.random_erasing(video, np.random.default_rng(seed), probability=0.6)
  box, _ = video_augment.erase_draw_for_device(np.random.default_rng(seed), 32, 32,
                                               probability=0.6)
  filled = np.argwhere((host != 100.0).any(axis=(0, 3)))
  if box[2] == 0:
    assert filled.size == 0
  else:
    top, left, h, w = box
    assert (filled.min(0).tolist(), filled.max(0).tolist()) == (
        [top, left], [top + h - 1, left + w - 1])
