"""Recipes: the stages of `stages.py` composed into pre-training, fine-tuning and evaluation.

A recipe turns one decoded record into its examples:

    decoded = recipe.decode(clip, rng)           # sample the views, decode their frames
    examples = recipe.examples(decoded, rng, index)

`examples` runs `recipe.view_stages()`, named per-view stages ("augment", "fbank"[, "mask"]), on
each view in order; the grain pipelines (`factories.py`) and the stage timer
(`stage_timing.py`) both run exactly these. `batch_transform` (Mixup/CutMix) runs on a
finished batch; `check_batch` checks a batch as it leaves the pipeline.
"""
from __future__ import annotations

import abc
import dataclasses
from typing import Callable

import numpy as np

from hicmae_jax import mask_counts
from hicmae_jax.data.format import schema
from hicmae_jax.data.pipeline import stages
from hicmae_jax.data.pipeline.options import (
  AudioOptions,
  AugmentOptions,
  EvalOptions,
  LabelOptions,
  MaskOptions,
  VideoOptions,
)
from hicmae_jax.data.transforms import mixing

# (decoded, view, rng) -> fields of the view's example
StageFn = Callable[["Decoded", stages.View, np.random.Generator], dict]


@dataclasses.dataclass
class Decoded:
  """A decoded record and the views drawn from it: what the per-view stages read.

  images: every frame the views use, decoded once (uint8 [H, W, 3]); wave: the clip's audio
  float32 [N]; labels: the clip's label fields; resized / fbanks: evaluation's caches of
  resized frames and of the (deterministic) fbank per audio span."""
  clip: schema.Clip
  views: list[stages.View]
  images: dict[int, np.ndarray]
  wave: np.ndarray
  labels: dict[str, np.ndarray]
  resized: dict[int, np.ndarray] = dataclasses.field(default_factory=dict)
  fbanks: dict[tuple[int, int], np.ndarray] = dataclasses.field(default_factory=dict)


class Recipe(abc.ABC):
  """What every recipe has; subclasses give `sample`, `view_stages` and `examples_per_record`."""
  batch_transform: Callable | None = None

  @property
  @abc.abstractmethod
  def examples_per_record(self) -> int:
    """Examples one record gives (its views)."""

  @abc.abstractmethod
  def sample(self, clip: schema.Clip, rng: np.random.Generator) -> list[stages.View]:
    """The record's views: which frames each uses (stage 'sample')."""

  @abc.abstractmethod
  def view_stages(self) -> tuple[tuple[str, StageFn], ...]:
    """The named per-view stages, in the order they run (and draw from the rng)."""

  def label_fields(self, clip: schema.Clip) -> dict[str, np.ndarray]:
    """The clip's label fields (none for pre-training)."""
    return {}

  def decode(self, clip: schema.Clip, rng: np.random.Generator) -> Decoded:
    """Stage 'decode' after the record itself: the views, their frames, the audio, labels."""
    views = self.sample(clip, rng)
    return Decoded(clip, views, stages.view_frames(clip, views),
                   schema.audio_to_float(clip.audio), self.label_fields(clip))

  def example(self, decoded: Decoded, view: stages.View, rng: np.random.Generator) -> dict:
    """One view's example: the per-view stages in order, then the clip's labels."""
    return self.assemble(decoded, [fn(decoded, view, rng) for _, fn in self.view_stages()])

  def assemble(self, decoded: Decoded, stage_outputs: list[dict]) -> dict:
    """An example from the outputs of the per-view stages (in their order) and the labels."""
    out: dict = {}
    for fields in stage_outputs:
      out.update(fields)
    out.update(decoded.labels)
    return out

  def examples(self, decoded: Decoded, rng: np.random.Generator, index: int) -> list[dict]:
    """The record's examples, one per view; `index` is the record's index in the split."""
    del index
    return [self.example(decoded, view, rng) for view in decoded.views]

  def padding(self) -> list[dict]:
    """Examples standing in for a missing record (evaluation keeps its rows; training skips)."""
    return []

  def check_batch(self, batch: dict) -> None:
    """Checks a finished batch in the main process (nothing to check by default)."""


@dataclasses.dataclass(frozen=True)
class PretrainRecipe(Recipe):
  """Per record: num_repeats views (VideoMAE's sampler); each -> video (fixed + multi-scale
  crop; uint8, normalised on the device), audio (span by AudioOptions.span, waveform
  augmentation, fbank) [, masks]."""
  video: VideoOptions
  audio: AudioOptions
  augment: AugmentOptions
  masks: MaskOptions

  @property
  def examples_per_record(self) -> int:
    return self.augment.num_repeats

  def sample(self, clip, rng):
    return stages.pretrain_views(clip.num_frames, rng, self.video, self.augment.num_repeats)

  def view_stages(self):
    named = (("augment", self._augment), ("fbank", self._fbank))
    return named + ((("mask", self._mask),) if self.masks.draw else ())

  def _augment(self, decoded, view, rng):
    return stages.pretrain_video(decoded.images, view, rng, self.video, self.augment)

  def _fbank(self, decoded, view, rng):
    return {"audio": stages.audio_input(decoded.clip, decoded.wave, view, rng, self.audio,
                                        rule=self.audio.span)}

  def _mask(self, decoded, view, rng):
    return stages.draw_masks(rng, self.masks, self.video, self.audio)

  def check_batch(self, batch):
    """The pipeline's masks are the model's input: each row must mask exactly the count the
    model gathers with (`masking.mask_to_ids`)."""
    if not self.masks.draw:
      return
    video, audio = mask_counts.masked_counts(
        self.masks.video_grid(self.video), self.masks.num_audio_tokens(self.audio),
        self.masks.video_ratio, self.masks.audio_ratio)
    mask_counts.check_mask_counts(batch["mask_video"], video, "mask_video")
    mask_counts.check_mask_counts(batch["mask_audio"], audio, "mask_audio")


@dataclasses.dataclass(frozen=True)
class Mixing:
  """Mixup/CutMix + label smoothing on a classification batch (adds `targets` [B, C])."""
  num_classes: int
  labels: LabelOptions

  def __call__(self, batch: dict, rng: np.random.Generator) -> dict:
    o = self.labels
    return mixing.mixup_cutmix(batch, rng, num_classes=self.num_classes,
                               mixup_alpha=o.mixup_alpha, cutmix_alpha=o.cutmix_alpha,
                               switch_prob=o.mixup_switch_prob, prob=o.mixup_prob,
                               label_smoothing=o.label_smoothing, mix_audio=o.mix_audio,
                               in_place=True,  # the batch was just stacked for this
                               video_on_device="aug_crop" in batch)


def resolve_task(info: schema.DatasetInfo, labels: LabelOptions) -> str:
  """labels.task, or 'regression' when the split has targets, else 'classification'."""
  return labels.task or ("regression" if info.num_targets > 0 else "classification")


@dataclasses.dataclass(frozen=True)
class FinetuneRecipe(Recipe):
  """Per record: one view (the train sampler) -> video (resize, RandAugment, crop, flip,
  erasing), audio (waveform augmentation, fbank), label[, targets]; classification batches
  are mixed (`batch_transform`)."""
  video: VideoOptions
  audio: AudioOptions
  augment: AugmentOptions
  num_targets: int
  batch_transform: Mixing | None

  @classmethod
  def for_split(cls, info: schema.DatasetInfo, split_dir: str, video: VideoOptions,
                audio: AudioOptions, augment: AugmentOptions,
                labels: LabelOptions) -> FinetuneRecipe:
    """The task from `labels` or the split; num_classes 0 = the split's class count."""
    task = resolve_task(info, labels)
    mix = None
    if task == "classification":
      num_classes = labels.num_classes or len(info.class_names)
      if not num_classes:
        raise ValueError(f"{split_dir!r} lists no class names: set the class count "
                         f"(config.model.num_classes)")
      mix = Mixing(num_classes, labels)
    return cls(video, audio, augment, info.num_targets if task == "regression" else 0, mix)

  @property
  def examples_per_record(self) -> int:
    return 1

  def sample(self, clip, rng):
    return [stages.train_view(clip.num_frames, rng, self.video)]

  def view_stages(self):
    return (("augment", self._augment), ("fbank", self._fbank))

  def _augment(self, decoded, view, rng):
    return stages.train_video(decoded.images, view, rng, self.video, self.augment)

  def _fbank(self, decoded, view, rng):
    return {"audio": stages.audio_input(decoded.clip, decoded.wave, view, rng, self.audio)}

  def label_fields(self, clip):
    return stages.label_fields(clip, self.num_targets)


@dataclasses.dataclass(frozen=True)
class EvalRecipe(Recipe):
  """Per record: its evaluation views (val: 1; test: num_segments x num_crops) -> video
  (resize; uint8, normalised on the device; with EvalOptions.resize_on_device the stored
  frames on a canvas + video_crop_size, resized on the device), audio (fbank; magnitude
  scaling only with EvalOptions.magnitude_aug, never a roll), labels, clip_index,
  view_index = segment * num_crops + crop, valid."""
  video: VideoOptions
  audio: AudioOptions
  views: EvalOptions
  num_targets: int
  canvas: tuple[int, int] | None = None  # views.resize_on_device: the frames' (H, W) canvas

  @classmethod
  def for_split(cls, info: schema.DatasetInfo, video: VideoOptions, audio: AudioOptions,
                views: EvalOptions, labels: LabelOptions) -> EvalRecipe:
    eval_audio = dataclasses.replace(audio, magnitude=views.magnitude_aug, roll=False)
    num_targets = info.num_targets if resolve_task(info, labels) == "regression" else 0
    canvas = None
    if views.resize_on_device:  # the split's common size; others: eval_video_for_device
      s = video.input_size
      canvas = (max(info.frame_height, s), max(info.frame_width, s))
    return cls(video, eval_audio, views, num_targets, canvas)

  @property
  def examples_per_record(self) -> int:
    return self.views.num_views

  def sample(self, clip, rng):
    return stages.eval_views(clip.num_frames, rng, self.video, self.views)

  def view_stages(self):
    return (("augment", self._augment), ("fbank", self._fbank))

  def _augment(self, decoded, view, rng):
    del rng
    if self.canvas is not None:
      return stages.eval_video_for_device(decoded.images, view, self.video, self.canvas,
                                          decoded.resized)
    return {"video": stages.eval_video(decoded.images, view, self.video, decoded.resized)}

  def _fbank(self, decoded, view, rng):
    if self.audio.magnitude or self.audio.roll:  # random: drawn per view
      return {"audio": stages.audio_input(decoded.clip, decoded.wave, view, rng, self.audio)}
    # Without waveform augmentation the fbank is a function of the view's frame span: views
    # sharing a span (test segments of a short clip) share it.
    if view.span not in decoded.fbanks:
      decoded.fbanks[view.span] = stages.audio_input(decoded.clip, decoded.wave, view, None,
                                                     self.audio)
    return {"audio": decoded.fbanks[view.span]}

  def label_fields(self, clip):
    return stages.label_fields(clip, self.num_targets)

  def examples(self, decoded, rng, index):
    # Frames are resized to exactly input_size square, so the original's uniform spatial crops
    # all start at 0: every crop view of a segment is the same pixels.
    crops = self.views.num_crops if self.views.mode == "test" else 1
    out = []
    for k, view in enumerate(decoded.views):
      example = self.example(decoded, view, rng)
      for c in range(crops):
        out.append({**example, "clip_index": np.int32(index),
                    "view_index": np.int32(k * crops + c), "valid": np.bool_(True)})
    return out

  def padding(self):
    s = self.video.input_size
    canvas = self.canvas or (s, s)
    example = {
        "video": np.zeros((self.video.num_frames, *canvas, 3), np.uint8),
        "audio": np.zeros((self.audio.audio_frames, self.audio.num_mel_bins), np.float32),
        "label": np.int32(0), "clip_index": np.int32(-1), "view_index": np.int32(-1),
        "valid": np.bool_(False)}
    if self.num_targets > 0:
      example["targets"] = np.zeros((self.num_targets,), np.float32)
    if self.canvas is not None:
      example["video_crop_size"] = np.array([s, s], np.int32)
    return [example for _ in range(self.views.num_views)]
