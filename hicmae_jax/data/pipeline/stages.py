"""The named stages that turn a stored clip into model inputs, each defined once (numpy/PIL).

    sample   which stored frames each view of a clip uses (`View`): the pre-training,
             fine-tuning or evaluation sampler
    frames   the views' frames, each distinct one decoded once
    augment  a view's frames -> video float32 [T, S, S, 3]: pre-training crops, fine-tuning
             RandAugment / crop / flip / erasing, or the evaluation resize
    fbank    a view's audio span -> normalised fbank float32 [A, M] (waveform augmentation
             as the AudioOptions say)
    mask     pre-training masks with the model's counts (numpy)
    labels   a clip's label (and regression targets)

`recipes.py` composes them into pre-training, fine-tuning and evaluation; the grain pipelines
and the stage timer run those recipes, and `data/pipeline/windows.clip_views` composes the
evaluation stages per window. A random stage takes the example's np.random.Generator and
draws from it in a fixed order, so an example is a pure function of (seed, position).
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Mapping

import numpy as np

from hicmae_jax.data.format import schema
from hicmae_jax.data.pipeline.options import (
  AudioOptions,
  AugmentOptions,
  EvalOptions,
  MaskOptions,
  VideoOptions,
)
from hicmae_jax.data.transforms import fbank as audio_lib, frames, masks, sampling, video_augment
from hicmae_jax.data.transforms.rand_augment import rand_augment

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class View:
  """One model input's frames: frame_ids int64 [num_frames] (stored frame indices), the
  frame span (f0, f1) its audio is cut to and, for one window of a longer clip
  (`data/pipeline/windows.py`), the stored frames [start, end) it was cut from (None for the
  samplers' views)."""
  frame_ids: np.ndarray
  span: tuple[int, int]
  window: tuple[int, int] | None = None


# ------------------------------------------------------------------------------------ sample --

def pretrain_views(num_available: int, rng: np.random.Generator, video: VideoOptions,
                   num_repeats: int) -> list[View]:
  """num_repeats draws of the original's pre-training sampler (VideoMAE)."""
  return [View(*sampling.pretrain_frame_indices(num_available, rng, num_frames=video.num_frames,
                                                sampling_rate=video.sampling_rate))
          for _ in range(num_repeats)]


def train_view(num_available: int, rng: np.random.Generator, video: VideoOptions) -> View:
  """The original's fine-tuning sampler: a random window end."""
  return View(*sampling.segment_frame_indices(num_available, num_frames=video.num_frames,
                                              sampling_rate=video.sampling_rate, rng=rng))


def eval_views(num_available: int, rng: np.random.Generator, video: VideoOptions,
               views: EvalOptions) -> list[View]:
  """'test': the num_segments temporal views (SPEC 2a); 'val': the centre window, or the
  original's random one for long clips with random_long_val_start."""
  if views.mode == "test":
    return [View(*s) for s in sampling.test_frame_indices(
        num_available, num_frames=video.num_frames, sampling_rate=video.sampling_rate,
        num_segments=views.num_segments)]
  return [View(*sampling.segment_frame_indices(
      num_available, num_frames=video.num_frames, sampling_rate=video.sampling_rate,
      rng=rng if views.random_long_val_start else None))]


# ------------------------------------------------------------------------------------ frames --

def view_frames(clip: schema.Clip, views: list[View]) -> dict[int, np.ndarray]:
  """{stored frame index: RGB uint8 [H, W, 3]} of every frame the views use (only those),
  each decoded once."""
  return frames.decode_frames(clip.frames, np.concatenate([v.frame_ids for v in views]))


# ----------------------------------------------------------------------------------- augment --

_FIXED_CROP_NOTED: list[bool] = []


def _note_fixed_crop(shape: tuple[int, ...], crop: tuple[int, int, int, int]) -> None:
  """Says once per process whether the fixed crop applies (it is silently skipped for frames
  smaller than the crop box, e.g. synthetic data; on VoxCeleb2 a skip means a bad prepare)."""
  _FIXED_CROP_NOTED.append(True)
  applies = shape[1] >= crop[1] and shape[2] >= crop[3]
  log.log(logging.INFO if applies else logging.WARNING,
          "pre-training fixed crop rows %d:%d cols %d:%d %s on %dx%d frames", crop[0], crop[1],
          crop[2], crop[3], "applies" if applies else "is SKIPPED (frames too small)",
          shape[1], shape[2])


def pretrain_video(images: Mapping[int, np.ndarray], view: View, rng: np.random.Generator,
                   video: VideoOptions, augment: AugmentOptions) -> dict[str, np.ndarray]:
  """Pre-training frames: fixed crop, multi-scale crop to input_size (one draw for the clip),
  no flip -> {"video": uint8 [T, S, S, 3]}. With augment.resize_on_device the crop is sent
  unresized at the top left of the canvas, with "video_crop_size" int32 [2] (h, w), and the
  device resizes it to the same bytes (`hicmae_jax.pixels.batch_video`). Normalisation runs on
  the device either way (`hicmae_jax.pixels.model_input`), with the host's table."""
  pixels = frames.stack_frames(images, view.frame_ids)
  if augment.fixed_crop is not None and not _FIXED_CROP_NOTED:
    _note_fixed_crop(pixels.shape, augment.fixed_crop)
  pixels = video_augment.fixed_crop(pixels, augment.fixed_crop)
  if augment.resize_on_device:
    canvas, crop_size = video_augment.multi_scale_crop_for_device(
        pixels, rng, output_size=video.input_size, scales=augment.multiscale)
    return {"video": canvas, "video_crop_size": crop_size}
  return {"video": video_augment.multi_scale_crop(pixels, rng, output_size=video.input_size,
                                                  scales=augment.multiscale)}


def _train_draws_for_device(clip: np.ndarray, rng: np.random.Generator,
                            augment: AugmentOptions) -> dict[str, np.ndarray]:
  """The crop, flip and erasing draws of `train_video`, in its order, for the train step
  (`hicmae_jax.device_augment`), with the uint8 clip [T, S, S, 3]."""
  size = clip.shape[1]
  top, left, h, w = video_augment.sample_resized_crop(rng, size, size, scale=augment.rrc_scale,
                                                      ratio=augment.rrc_ratio)
  flip = bool(rng.uniform() < augment.flip_prob)
  box, seed = np.zeros(4, np.int32), np.int32(0)
  if augment.erase_prob > 0:
    box, seed = video_augment.erase_draw_for_device(rng, size, size,
                                                    probability=augment.erase_prob)
  return {"video": clip, "aug_crop": np.array([top, left, h, w], np.int32),
          "aug_flip": np.bool_(flip), "aug_erase": box, "aug_seed": seed}


def train_video(images: Mapping[int, np.ndarray], view: View, rng: np.random.Generator,
                video: VideoOptions, augment: AugmentOptions) -> dict[str, np.ndarray]:
  """Fine-tuning frames, as the original's training: PIL bilinear resize to input_size square
  (aspect not kept), RandAugment (one op list for the clip), normalisation, one random resized
  crop for the clip, horizontal flip, random erasing -> {"video": float32 [T, S, S, 3]}. With
  augment.float_on_device the steps after RandAugment are left to the train step: -> the
  fields of `_train_draws_for_device` (uint8 video and the draws)."""
  size = video.input_size
  unique = sorted(images)
  resized = [frames.pil_image(images[i], size, size) for i in unique]
  # RandAugment draws one op list per clip and applies it to every frame; it is a
  # deterministic function of the frame then, so running it once per distinct frame is exact.
  ra = augment.rand_augment_kwargs()
  if ra is not None:
    augmented = rand_augment(resized, rng, **ra)
  else:
    augmented = np.stack([np.asarray(img, dtype=np.uint8) for img in resized])
  where = {i: k for k, i in enumerate(unique)}
  clip = augmented[[where[int(i)] for i in view.frame_ids]]
  if augment.float_on_device:
    return _train_draws_for_device(clip, rng, augment)
  pixels = frames.normalize(clip, mean=video.mean, std=video.std)
  pixels = video_augment.random_resized_crop(pixels, rng, output_size=size,
                                             scale=augment.rrc_scale, ratio=augment.rrc_ratio)
  pixels = video_augment.horizontal_flip(pixels, rng, prob=augment.flip_prob)
  if augment.erase_prob > 0:
    pixels = video_augment.random_erasing(pixels, rng, probability=augment.erase_prob,
                                          mode=augment.erase_mode,
                                          min_count=augment.erase_count,
                                          max_count=augment.erase_count,
                                          copy=False)  # `pixels` is this function's own
  return {"video": pixels}


def eval_video(images: Mapping[int, np.ndarray], view: View, video: VideoOptions,
               resized: dict[int, np.ndarray] | None = None) -> np.ndarray:
  """Evaluation frames: PIL bilinear resize to exactly input_size square -> uint8
  [T, S, S, 3] (normalised on the device, `hicmae_jax.pixels.model_input`). `resized` caches
  the resized frames across the views of a clip."""
  resized = {} if resized is None else resized
  size = video.input_size
  for i in sorted(set(int(i) for i in view.frame_ids)):
    if i not in resized:
      resized[i] = frames.pil_resize(images[i], size, size)
  return frames.stack_frames(resized, view.frame_ids)


def eval_video_for_device(images: Mapping[int, np.ndarray], view: View, video: VideoOptions,
                          canvas: tuple[int, int], resized: dict[int, np.ndarray] | None = None,
                          ) -> dict[str, np.ndarray]:
  """`eval_video` with the resize left to the device: the stored frames at the top left of a
  canvas (H, W) and "video_crop_size" int32 [2] (their h, w); `hicmae_jax.pixels.resize_crops`
  makes PIL's bytes there. Frames larger than the canvas are resized here (`eval_video`; their
  size is then input_size, which the canvas holds).

  -> {"video": uint8 [T, H, W, 3], "video_crop_size": int32 [2]}."""
  first = images[int(view.frame_ids[0])]
  h, w = first.shape[:2]
  if h > canvas[0] or w > canvas[1]:
    pixels = eval_video(images, view, video, resized)
  else:
    pixels = frames.stack_frames(images, view.frame_ids)
  out = np.zeros((pixels.shape[0], *canvas, pixels.shape[3]), np.uint8)
  out[:, :pixels.shape[1], :pixels.shape[2]] = pixels
  return {"video": out, "video_crop_size": np.array(pixels.shape[1:3], np.int32)}


# ------------------------------------------------------------------------------------- fbank --

def audio_span(clip: schema.Clip, num_samples: int, view: View, rule: str) -> tuple[int, int]:
  """Sample span [a0, a1) of the view's frame span: by relative position ('relative', or a
  clip without a frame rate) or by frame timestamps ('timestamp')."""
  f0, f1 = view.span
  if rule == "timestamp" and clip.fps > 0:
    return sampling.timestamp_audio_span(f0, f1, clip.fps, schema.AUDIO_SAMPLE_RATE)
  return sampling.relative_audio_span(f0, f1, clip.num_frames, num_samples)


def fbank(segment: np.ndarray, rng: np.random.Generator | None,
          opts: AudioOptions) -> np.ndarray:
  """float32 waveform [M] -> normalised fbank float32 [audio_frames, num_mel_bins]: mean
  removed, roll and magnitude scaling as `opts` say, Kaldi fbank. Raises RecordError for an
  empty span or a non-finite result."""
  if segment.shape[0] == 0:
    raise schema.RecordError("audio span is empty")
  wave = (segment - segment.mean()).astype(np.float32)
  if opts.roll:
    wave = audio_lib.random_roll(wave, rng)
  if opts.magnitude:
    wave = audio_lib.magnitude_scale(wave, rng)
  fb = audio_lib.waveform_to_fbank_input(wave, target_frames=opts.audio_frames,
                                         mean=opts.fbank_mean, std=opts.fbank_std,
                                         num_mel_bins=opts.num_mel_bins)
  fb = np.asarray(fb, dtype=np.float32)
  if fb.shape != (opts.audio_frames, opts.num_mel_bins):
    raise schema.RecordError(f"fbank has shape {fb.shape}, expected "
                             f"{(opts.audio_frames, opts.num_mel_bins)}")
  if not np.isfinite(fb).all():
    raise schema.RecordError("fbank has non-finite values (bad audio)")
  return fb


def audio_input(clip: schema.Clip, wave: np.ndarray, view: View,
                rng: np.random.Generator | None, opts: AudioOptions,
                rule: str = "relative") -> np.ndarray:
  """The view's audio: its span of `wave` (float32 [N], the clip's audio) by `rule`, cut with
  the original's short-span rule, then `fbank` -> float32 [A, M]."""
  a0, a1 = audio_span(clip, wave.shape[0], view, rule)
  segment = sampling.cut_audio(wave, a0, a1, min_samples=opts.min_span_samples,
                               whole_if_shorter_than=opts.whole_file_limit)
  return fbank(segment, rng, opts)


# -------------------------------------------------------------------------------------- mask --

def draw_masks(rng: np.random.Generator, opts: MaskOptions, video: VideoOptions,
               audio: AudioOptions) -> dict[str, np.ndarray]:
  """mask_video bool [(T/tubelet)(S/patch)^2] (tube), mask_audio bool [N_audio] (random)."""
  return {"mask_video": masks.tube_mask(rng, grid=opts.video_grid(video),
                                        mask_ratio=opts.video_ratio),
          "mask_audio": masks.random_mask(rng, num_patches=opts.num_audio_tokens(audio),
                                          mask_ratio=opts.audio_ratio)}


# ------------------------------------------------------------------------------------ labels --

def label_fields(clip: schema.Clip, num_targets: int) -> dict[str, np.ndarray]:
  """label int32 [] and, for regression (num_targets > 0), targets float32 [num_targets]."""
  fields = {"label": np.int32(clip.label)}
  if num_targets > 0:
    targets = np.asarray(clip.targets, dtype=np.float32)
    if targets.shape != (num_targets,):
      raise schema.RecordError(f"field 'targets' has {targets.shape[0]} values, the split "
                               f"has {num_targets}")
    fields["targets"] = targets
  return fields
