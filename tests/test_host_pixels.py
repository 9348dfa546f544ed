"""The faster host pixel path keeps the pixels: JPEG decode with simplejpeg is bit-identical to
PIL's, the uint8 batches normalised on the device give the host's floats bit for bit, and the
crops, resizes and RandAugment ops that now run on stacked clips equal the per-frame PIL path
(issue 18). Every bound here is exact equality unless a test says otherwise."""
from __future__ import annotations

import io

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from PIL import Image

from configs import test_pretrain
from hicmae_jax import objectives, pixels
from hicmae_jax.data.pipeline import stages
from hicmae_jax.data.pipeline.options import VideoOptions
from hicmae_jax.data.transforms import frames as frames_lib, video_augment
from hicmae_jax.models.hicmae import PretrainModel


def _smooth_image(rng, h, w, channels=3):
  """A JPEG-like picture (gradients and noise), uint8 [h, w, channels]."""
  noise = rng.integers(0, 256, (h, w, channels)).astype(np.uint16)
  return (np.cumsum(noise, axis=1) // np.arange(1, w + 1)[None, :, None]).astype(np.uint8)


def _jpeg(pixels: np.ndarray, **save) -> bytes:
  buf = io.BytesIO()
  Image.fromarray(pixels).save(buf, "JPEG", **save)
  return buf.getvalue()


def _pil_decode(data: bytes) -> np.ndarray:
  return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


# --- decode -------------------------------------------------------------------------------

@pytest.mark.parametrize("quality", [50, 75, 95, 100])
@pytest.mark.parametrize("subsampling", [0, 1, 2])  # 4:4:4, 4:2:2, 4:2:0
@pytest.mark.parametrize("shape", [(224, 224), (161, 203), (17, 9)])
def test_jpeg_decode_bit_identical_to_pil(quality, subsampling, shape):
  rng = np.random.default_rng(quality + subsampling)
  data = _jpeg(_smooth_image(rng, *shape), quality=quality, subsampling=subsampling)
  np.testing.assert_array_equal(frames_lib.decode_frame(data), _pil_decode(data))


def test_grey_and_png_frames_decode_like_pil():
  rng = np.random.default_rng(0)
  grey = _jpeg(_smooth_image(rng, 40, 30, 1)[..., 0], quality=90)
  np.testing.assert_array_equal(frames_lib.decode_frame(grey), _pil_decode(grey))
  buf = io.BytesIO()
  Image.fromarray(_smooth_image(rng, 20, 24)).save(buf, "PNG")
  np.testing.assert_array_equal(frames_lib.decode_frame(buf.getvalue()),
                                _pil_decode(buf.getvalue()))


def test_truncated_jpeg_still_fails_and_only_sampled_frames_decode():
  data = _jpeg(_smooth_image(np.random.default_rng(0), 64, 64), quality=90)
  with pytest.raises(OSError):
    frames_lib.decode_frame(data[:len(data) // 2])
  # Frame 1 is garbage but not sampled: decoding frames 0 and 2 never touches it.
  out = frames_lib.decode_frames([data, b"\xff\xd8junk", data], [2, 0, 2])
  assert sorted(out) == [0, 2]


# --- device normalisation -------------------------------------------------------------------

def test_device_normalisation_bit_identical_to_host():
  video = np.random.default_rng(0).integers(0, 256, (2, 3, 5, 7, 3)).astype(np.uint8)
  video[0, 0, 0, :3] = [[0, 0, 0], [255, 255, 255], [128, 1, 254]]
  host = frames_lib.normalize(video)
  device = np.asarray(jax.jit(pixels.model_input)(video))
  assert device.dtype == np.float32
  np.testing.assert_array_equal(device, host)
  already = jnp.asarray(host)
  assert pixels.model_input(already) is already  # float input passes through


def test_pretraining_loss_same_for_uint8_and_host_normalised_video():
  """The targets (normalised-pixel patches) and the model input are the same floats."""
  config = test_pretrain.get_config()
  m = config.model
  model = PretrainModel(m, rngs=nnx.Rngs(0))
  rng = np.random.default_rng(0)
  video = rng.integers(0, 256, (2, m.num_frames, m.input_size, m.input_size, 3)).astype(np.uint8)
  audio = rng.normal(size=(2, m.audio_frames, m.audio_mel_bins)).astype(np.float32)
  loss = nnx.jit(lambda mdl, b: objectives.pretrain_loss(
      mdl, b, loss_cfg=config.loss, key=jax.random.key(1), deterministic=True)[1])
  a = loss(model, {"video": video, "audio": audio})
  b = loss(model, {"video": frames_lib.normalize(video), "audio": audio})
  for k in ("loss", "loss_video", "target_video", "rec_video"):
    np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]), err_msg=k)


# --- crops and resizes ----------------------------------------------------------------------

def _multi_scale_crop_per_frame_pil(frames, rng, output_size):
  """The previous implementation: per frame, PIL crop then PIL resize (even to the same size)."""
  h, w = frames.shape[1:3]
  base = min(h, w)
  sizes = [int(base * s) for s in (1, .875, .75, .66)]
  crop = [output_size if abs(x - output_size) < 3 else x for x in sizes]
  pairs = [(cw, ch) for i, ch in enumerate(crop) for j, cw in enumerate(crop) if abs(i - j) <= 1]
  cw, ch = pairs[int(rng.integers(len(pairs)))]
  ws, hs = (w - cw) // 4, (h - ch) // 4
  offsets = [(0, 0), (4 * ws, 0), (0, 4 * hs), (4 * ws, 4 * hs), (2 * ws, 2 * hs),
             (0, 2 * hs), (4 * ws, 2 * hs), (2 * ws, 4 * hs), (2 * ws, 0), (ws, hs),
             (3 * ws, hs), (ws, 3 * hs), (3 * ws, 3 * hs)]
  ow, oh = offsets[int(rng.integers(len(offsets)))]
  return np.stack([np.asarray(Image.fromarray(f).crop((ow, oh, ow + cw, oh + ch)).resize(
      (output_size, output_size), Image.Resampling.BILINEAR)) for f in frames])


@pytest.mark.parametrize("seed", range(12))
def test_multi_scale_crop_equals_per_frame_pil(seed):
  clip = _smooth_image(np.random.default_rng(seed), 4 * 160, 160).reshape(4, 160, 160, 3)
  new = video_augment.multi_scale_crop(clip, np.random.default_rng(seed), output_size=160)
  old = _multi_scale_crop_per_frame_pil(clip, np.random.default_rng(seed), 160)
  assert new.dtype == np.uint8
  np.testing.assert_array_equal(new, old)


def test_eval_video_is_uint8_of_the_per_frame_pil_resize():
  rng = np.random.default_rng(0)
  images = {i: _smooth_image(rng, 48, 40) for i in range(6)}
  view = stages.View(np.array([0, 2, 2, 5]), (0, 5))
  out = stages.eval_video(images, view, VideoOptions(num_frames=4, sampling_rate=1,
                                                     input_size=32))
  ref = np.stack([np.asarray(Image.fromarray(images[i]).resize(
      (32, 32), Image.Resampling.BILINEAR)) for i in view.frame_ids])
  assert out.dtype == np.uint8
  np.testing.assert_array_equal(out, ref)


# --- fine-tuning: the float steps, faster, same bits ------------------------------------------

def _resize_bilinear_fancy_indexing(video, height, width):
  """The previous implementation (fancy indexing on each axis)."""
  r0, r1, rw = video_augment._linear_taps(video.shape[1], height)
  c0, c1, cw = video_augment._linear_taps(video.shape[2], width)
  rw, cw = rw[None, :, None, None], cw[None, None, :, None]
  top = video[:, r0]
  rows = top + (video[:, r1] - top) * rw
  left = rows[:, :, c0]
  return (left + (rows[:, :, c1] - left) * cw).astype(np.float32)


@pytest.mark.parametrize("shape, out", [((3, 120, 100, 3), (160, 160)),
                                        ((2, 200, 170, 3), (160, 160)), ((1, 7, 9, 2), (5, 13))])
def test_resize_bilinear_bit_identical_to_previous(shape, out):
  video = np.random.default_rng(0).normal(size=shape).astype(np.float32)
  np.testing.assert_array_equal(video_augment.resize_bilinear(video, *out),
                                _resize_bilinear_fancy_indexing(video, *out))


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("batch", [4, 5])
def test_mixup_in_place_equals_copying_mixup(seed, batch):
  from hicmae_jax.data.transforms import mixing
  rng = np.random.default_rng(seed)
  b = {"video": rng.normal(size=(batch, 2, 8, 8, 3)).astype(np.float32),
       "audio": rng.normal(size=(batch, 4, 5)).astype(np.float32),
       "label": rng.integers(0, 3, batch).astype(np.int32)}
  ref = mixing.mixup_cutmix(dict(b), np.random.default_rng(seed), num_classes=3, mix_audio=True)
  got = mixing.mixup_cutmix({k: v.copy() for k, v in b.items()}, np.random.default_rng(seed),
                            num_classes=3, mix_audio=True, in_place=True)
  for k in ref:
    np.testing.assert_array_equal(got[k], ref[k], err_msg=k)
