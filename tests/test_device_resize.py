"""PIL's bilinear resize on the device (`pixels.resize_crops`) makes PIL's bytes, and the
pre-training pipeline that sends the multi-scale crop unresized gives the device the very
model input the host-resizing pipeline gave (issue 18). Every bound here is exact equality."""
from __future__ import annotations

import jax
import numpy as np
import pytest
from PIL import Image

from hicmae_jax import pixels
from hicmae_jax.data.pipeline import stages
from hicmae_jax.data.pipeline.options import AugmentOptions, VideoOptions
from hicmae_jax.data.transforms import video_augment


def _pil(frames: np.ndarray, h: int, w: int, out: int) -> np.ndarray:
  return np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(f[:h, :w])).resize(
      (out, out), Image.Resampling.BILINEAR)) for f in frames])


_resize = jax.jit(pixels.resize_crops, static_argnums=2)


@pytest.mark.parametrize("h,w,out", [
    (160, 160, 160), (140, 160, 160), (105, 120, 160), (120, 105, 160),  # pre-training crops
    (224, 224, 160), (300, 181, 160),  # downscaling (more taps, antialiased)
    (1, 5, 16), (37, 91, 64), (63, 64, 64), (64, 63, 64)])
def test_resize_crops_equals_pil(h, w, out):
  rng = np.random.default_rng(h * 1000 + w)
  clip = rng.integers(0, 256, (3, max(h, w) + 3, max(h, w) + 5, 3), dtype=np.uint8)
  clip[0, 0, 0] = [0, 255, 128]  # the extremes reach the clip to [0, 255]
  got = np.asarray(_resize(clip[None], np.array([[h, w]], np.int32), out))[0]
  assert got.dtype == np.uint8 and got.shape == (3, out, out, 3)
  np.testing.assert_array_equal(got, _pil(clip, h, w, out))


def test_resize_crops_per_example_sizes_and_padding_ignored():
  """Each example uses its own size; what lies outside its crop does not matter."""
  rng = np.random.default_rng(0)
  clips = rng.integers(0, 256, (3, 2, 48, 48, 3), dtype=np.uint8)
  sizes = np.array([[48, 48], [31, 40], [20, 17]], np.int32)
  got = np.asarray(_resize(clips, sizes, 48))
  for b, (h, w) in enumerate(sizes):
    np.testing.assert_array_equal(got[b], _pil(clips[b], h, w, 48))
  noisy = clips.copy()
  noisy[1, :, 31:] = 7
  noisy[2, :, :, 17:] = 200
  np.testing.assert_array_equal(np.asarray(_resize(noisy, sizes, 48)), got)


def test_taps_sum_to_one_in_fixed_point_and_fail_when_too_few():
  index, weight = pixels.pil_bilinear_taps(105, 160)
  assert index.shape == (160, 3)
  assert np.all(np.abs(weight.sum(1) - (1 << pixels.PIL_PRECISION_BITS)) <= 2)
  with pytest.raises(ValueError, match="needs 5 taps"):
    pixels.pil_bilinear_taps(224, 160, num_taps=3)


def _smooth_clip(rng, t, h, w):
  noise = rng.integers(0, 256, (t, h, w, 3)).astype(np.uint16)
  return (np.cumsum(noise, axis=2) // np.arange(1, w + 1)[None, None, :, None]).astype(np.uint8)


@pytest.mark.parametrize("stored,fixed", [((224, 224), (0, 160, 32, 192)),
                                          ((160, 160), (0, 160, 32, 192)),
                                          ((96, 120), (0, 160, 32, 192)),
                                          ((240, 260), None)])
def test_pretrain_video_resized_on_device_equals_host_resize(stored, fixed):
  """Same seed, same draws: the host-resized video equals the device-resized crop, for frames
  the fixed crop applies to (224), already cropped at prepare (160), smaller than the input
  (upscaled) and, with no fixed crop, crops larger than the canvas (resized on the host)."""
  rng = np.random.default_rng(stored[0])
  images = dict(enumerate(_smooth_clip(rng, 6, *stored)))
  view = stages.View(np.array([0, 2, 2, 5]), (0, 5))
  video = VideoOptions(num_frames=4, sampling_rate=1, input_size=160)
  sizes = set()
  for seed in range(8):
    on_host = AugmentOptions(fixed_crop=fixed, multiscale=(1, .875, .75, .66), num_repeats=1,
                             rand_augment="", erase_prob=0.0)
    on_device = AugmentOptions(fixed_crop=fixed, multiscale=(1, .875, .75, .66),
                               num_repeats=1, rand_augment="", erase_prob=0.0,
                               resize_on_device=True)
    host = stages.pretrain_video(images, view, np.random.default_rng(seed), video, on_host)
    dev = stages.pretrain_video(images, view, np.random.default_rng(seed), video, on_device)
    assert set(host) == {"video"} and set(dev) == {"video", "video_crop_size"}
    assert dev["video"].shape == host["video"].shape == (4, 160, 160, 3)
    sizes.add(tuple(dev["video_crop_size"]))
    batch = {k: v[None] for k, v in dev.items()}
    np.testing.assert_array_equal(np.asarray(_resize(batch["video"], batch["video_crop_size"],
                                                     160))[0], host["video"])
    np.testing.assert_array_equal(
        np.asarray(jax.jit(pixels.batch_video, static_argnums=1)(batch, 160))[0],
        np.asarray(pixels.model_input(host["video"])))
  if fixed is None:  # crops above 160 were resized on the host and go out at the canvas size
    assert (160, 160) in sizes


def test_device_crop_box_is_the_host_box():
  rng = np.random.default_rng(0)
  clip = _smooth_clip(rng, 2, 160, 160)
  canvas, size = video_augment.multi_scale_crop_for_device(clip, np.random.default_rng(3),
                                                           output_size=160)
  top, left, h, w = video_augment.multi_scale_box(160, 160, np.random.default_rng(3),
                                                  output_size=160)
  assert tuple(size) == (h, w)
  np.testing.assert_array_equal(canvas[:, :h, :w], clip[:, top:top + h, left:left + w])
  assert not canvas[:, h:].any() and not canvas[:, :, w:].any()


def test_fixed_crop_done_at_prepare_is_not_applied_again(caplog):
  import logging
  import types

  from hicmae_jax.data.pipeline import factories as pipeline
  augment = AugmentOptions(fixed_crop=(0, 160, 32, 192), multiscale=(1.0,), num_repeats=1,
                           rand_augment="", erase_prob=0.0, resize_on_device=True)
  info = lambda crop: types.SimpleNamespace(extra={} if crop is None else {"crop": crop},
                                            frame_width=160, frame_height=160)
  assert pipeline._fixed_crop_done_at_prepare(info(None), augment) is augment
  done = pipeline._fixed_crop_done_at_prepare(info([0, 160, 32, 192]), augment)
  assert done.fixed_crop is None and done.resize_on_device
  with caplog.at_level(logging.WARNING):
    other = pipeline._fixed_crop_done_at_prepare(info([0, 128, 0, 128]), augment)
  assert other.fixed_crop == (0, 160, 32, 192)
  assert "prepared with --crop=0,128,0,128" in caplog.text


@pytest.mark.parametrize("stored,canvas", [((224, 224), (224, 224)), ((160, 160), (160, 160)),
                                           ((96, 120), (160, 160)), ((300, 280), (224, 224)),
                                           ((200, 150), (224, 224))])
def test_eval_video_resized_on_device_equals_host_resize(stored, canvas):
  """Frames at the canvas size, already at the input size, smaller (upscaled), larger than the
  canvas (resized on the host, then the identity on the device) and smaller than the canvas
  (padded): the device's input equals the host-resized one."""
  rng = np.random.default_rng(stored[0])
  images = dict(enumerate(_smooth_clip(rng, 5, *stored)))
  view = stages.View(np.array([0, 1, 1, 4]), (0, 4))
  video = VideoOptions(num_frames=4, sampling_rate=1, input_size=160)
  host = stages.eval_video(images, view, video)
  dev = stages.eval_video_for_device(images, view, video, canvas)
  assert dev["video"].shape == (4, *canvas, 3)
  want_size = stored if stored[0] <= canvas[0] and stored[1] <= canvas[1] else (160, 160)
  assert tuple(dev["video_crop_size"]) == want_size
  batch = {k: v[None] for k, v in dev.items()}
  np.testing.assert_array_equal(
      np.asarray(_resize(batch["video"], batch["video_crop_size"], 160))[0], host)


def _write_clips(split_dir, sizes, num_frames=12):
  """One shard of clips with smooth frames of the given (h, w) and noise audio."""
  import io
  import os

  from array_record.python.array_record_module import ArrayRecordWriter

  from hicmae_jax.data.format import schema
  os.makedirs(split_dir)
  rng = np.random.default_rng(0)
  writer = ArrayRecordWriter(os.path.join(split_dir, schema.SHARD_PATTERN.format(
      index=0, count=1)), "group_size:1")
  for i, (h, w) in enumerate(sizes):
    jpegs = []
    for frame in _smooth_clip(rng, num_frames, h, w):
      buf = io.BytesIO()
      Image.fromarray(frame).save(buf, format="JPEG", quality=90)
      jpegs.append(buf.getvalue())
    samples = int(num_frames / 25 * schema.AUDIO_SAMPLE_RATE)
    writer.write(schema.encode_clip(schema.Clip(
        clip_id=f"c{i}", frames=jpegs, frame_format="jpeg", height=h, width=w,
        audio=(rng.standard_normal(samples) * 3000).astype(np.int16), label=i % 2, fps=25.0)))
  writer.close()
  schema.DatasetInfo(name="t", split="test", num_clips=len(sizes), shards=[
      schema.SHARD_PATTERN.format(index=0, count=1)], class_names=["a", "b"], num_targets=0,
      frame_height=sizes[0][0], frame_width=sizes[0][1]).save(split_dir)


def test_pipelines_resizing_on_device_give_the_same_model_input(tmp_path):
  """Whole pipelines, switch on and off: after the device's resize the batches are equal (and
  everything else in them too), pre-training and evaluation, with mixed frame sizes."""
  from hicmae_jax.data.pipeline import factories as pipeline, options
  split = str(tmp_path / "s")
  _write_clips(split, [(40, 48), (40, 48), (24, 20), (56, 64)])
  video = VideoOptions(num_frames=4, sampling_rate=2, input_size=32)
  audio = options.AudioOptions(audio_frames=64, num_mel_bins=32, magnitude=True, roll=False)
  loader = options.LoaderOptions(shard_index=0, shard_count=1, read_threads=1)
  labels = options.LabelOptions(task=None, num_classes=0, label_smoothing=0.0, mixup_alpha=0.0,
                                cutmix_alpha=0.0, mixup_switch_prob=0.5, mix_audio=False)
  masks = options.MaskOptions(draw=False, video_ratio=0.9, audio_ratio=0.8, patch_size=8,
                              tubelet_size=2, audio_patch_size=16)

  def batches(on):
    augment = AugmentOptions(fixed_crop=None, multiscale=(1, .875, .75, .66), num_repeats=1,
                             rand_augment="", erase_prob=0.0, resize_on_device=on)
    views = options.EvalOptions(mode="test", num_segments=2, num_crops=2,
                                random_long_val_start=False, magnitude_aug=False,
                                resize_on_device=on)
    pre = pipeline.make_pretrain_dataset(split, batch_size=2, seed=3, video=video, audio=audio,
                                         augment=augment, masks=masks, loader=loader)
    ev = pipeline.make_eval_dataset(split, batch_size=4, seed=0, video=video, audio=audio,
                                    views=views, labels=labels, loader=loader)
    it = iter(pre)
    return [next(it) for _ in range(2)] + list(ev)

  host, dev = batches(False), batches(True)
  assert len(host) == len(dev) == 6
  for h, d in zip(host, dev):
    assert "video_crop_size" in d and "video_crop_size" not in h
    assert d["video"].dtype == np.uint8
    np.testing.assert_array_equal(np.asarray(jax.jit(pixels.batch_video, static_argnums=1)(
        d, 32)), np.asarray(pixels.model_input(h["video"])))
    for k in h:
      if k != "video":
        np.testing.assert_array_equal(d[k], h[k], err_msg=k)
