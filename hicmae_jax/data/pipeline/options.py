"""Frozen option objects of the input pipelines, each built once from a config.

    video = VideoOptions.from_config(config)        # frames: count, stride, side, normalisation
    audio = AudioOptions.from_config(config)        # fbank shape, waveform augmentation
    augment = AugmentOptions.from_config(config)    # training augmentation of the frames
    labels = LabelOptions.from_config(config)       # task, label smoothing, Mixup/CutMix
    masks = MaskOptions.from_config(config)         # pre-training masks drawn in the pipeline
    views = EvalOptions.from_config(config, "test")  # evaluation views
    loader = LoaderOptions.from_config(config)      # grain: processes, workers, threads, skips

A field that the config holds has no default here: the config is its one source. The other
fields are the original's constants. No JAX here: grain workers and tools import it cheaply.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from hicmae_jax.data.format import schema
from hicmae_jax.data.transforms.fbank import FBANK_MEAN, FBANK_STD
from hicmae_jax.data.transforms.rand_augment import parse_rand_augment
from hicmae_jax.mask_counts import check_ratio
from hicmae_jax.pixels import IMAGENET_MEAN, IMAGENET_STD

TASKS = ("classification", "regression")


@dataclasses.dataclass(frozen=True)
class VideoOptions:
  """Frames of one model input: num_frames stored frames `sampling_rate` apart, resized or
  cropped to input_size square, normalised as (x / 255 - mean) / std (ImageNet's)."""
  num_frames: int
  sampling_rate: int
  input_size: int
  mean: tuple[float, ...] = IMAGENET_MEAN
  std: tuple[float, ...] = IMAGENET_STD

  @classmethod
  def from_config(cls, config) -> VideoOptions:
    return cls(num_frames=config.model.num_frames, sampling_rate=config.data.sampling_rate,
               input_size=config.model.input_size)


@dataclasses.dataclass(frozen=True)
class AudioOptions:
  """The fbank input [audio_frames, num_mel_bins] and the training waveform augmentation.

  magnitude: scale the waveform by Beta(10, 10) + 0.5. roll: a real circular roll (the
  original's roll never moves; SPEC 11). span: pre-training's rule for the audio of a frame
  span, 'relative' (by relative position) or 'timestamp' (frame times, as the original's
  pre-training; needs fps in the record); fine-tuning and evaluation always use 'relative', as
  the original. A span of <= min_span_samples samples takes the whole file when the file is
  shorter than the fbank window (`whole_file_limit`)."""
  audio_frames: int
  num_mel_bins: int
  magnitude: bool
  roll: bool
  span: str = "relative"
  fbank_mean: float = FBANK_MEAN
  fbank_std: float = FBANK_STD
  min_span_samples: int = 1024

  def __post_init__(self):
    if self.span not in ("relative", "timestamp"):
      raise ValueError(f"AudioOptions.span must be 'relative' or 'timestamp', got {self.span!r}")

  @classmethod
  def from_config(cls, config) -> AudioOptions:
    return cls(audio_frames=config.model.audio_frames, num_mel_bins=config.model.audio_mel_bins,
               magnitude=config.data.magnitude_aug, roll=config.data.roll_aug)

  @property
  def whole_file_limit(self) -> int:
    """Samples below which a too-short span falls back to the whole file: the original does
    that only for files shorter than the fbank window, audio_frames / 100 s (10 ms shift)."""
    return int(self.audio_frames / 100.0 * schema.AUDIO_SAMPLE_RATE)


FLOAT_AUGMENT_PLACES = ("auto", "host", "device")


def float_augment_on_device(where: str) -> bool:
  """config.data.finetune_float_augment -> whether fine-tuning's float augmentation runs in
  the train step: 'device', 'host', or 'auto' (the device unless JAX's backend is the CPU,
  where the train step's version costs more than the host's)."""
  if where not in FLOAT_AUGMENT_PLACES:
    raise ValueError(f"config.data.finetune_float_augment={where!r}: one of "
                     f"{FLOAT_AUGMENT_PLACES}")
  if where == "auto":
    import jax  # here: the options are read after the backend is chosen
    return jax.default_backend() != "cpu"
  return where == "device"


@dataclasses.dataclass(frozen=True)
class AugmentOptions:
  """Training augmentation of the frames.

  Pre-training (VideoMAE): fixed_crop = (r0, r1, c0, c1) rows/cols of the stored frames (None:
  off; skipped for frames smaller than the box), multi-scale crop over `multiscale`, and
  num_repeats clips drawn per decoded record (repeated sampling); resize_on_device: the
  multi-scale crop's PIL resize runs on the device instead (same bytes). float_on_device:
  fine-tuning's normalisation, crop, flip, erasing and mixing run in the train step
  (`hicmae_jax.device_augment`; the host draws, sends uint8 frames). Fine-tuning: RandAugment
  (timm's spec string, '' = off; geometric ops resample with rand_augment_interpolation),
  random resized crop (rrc_scale, rrc_ratio), horizontal flip, random erasing (erase_prob;
  timm's mode and count)."""
  fixed_crop: tuple[int, int, int, int] | None
  multiscale: tuple[float, ...]
  num_repeats: int
  rand_augment: str
  erase_prob: float
  rand_augment_interpolation: str = "bicubic"
  rrc_scale: tuple[float, float] = (0.08, 1.0)
  rrc_ratio: tuple[float, float] = (0.75, 1.3333)
  flip_prob: float = 0.5
  erase_mode: str = "pixel"
  erase_count: int = 1
  resize_on_device: bool = False
  float_on_device: bool = False

  def __post_init__(self):
    if self.num_repeats < 1:
      raise ValueError(f"AugmentOptions.num_repeats={self.num_repeats} must be >= 1")
    if self.float_on_device and self.erase_count != 1:
      raise ValueError(f"erase_count={self.erase_count}: erasing in the train step draws one "
                       f"region; set config.data.finetune_float_augment='host' for more")
    self.rand_augment_kwargs()  # a bad spec fails here, not in a worker

  @classmethod
  def from_config(cls, config) -> AugmentOptions:
    d = config.data
    return cls(fixed_crop=tuple(d.fixed_crop) if d.fixed_crop else None,
               multiscale=tuple(d.multiscale), num_repeats=d.num_repeats,
               rand_augment=d.rand_augment or "", erase_prob=d.erase_prob,
               resize_on_device=bool(d.get("resize_on_device", False)),
               float_on_device=float_augment_on_device(d.get("finetune_float_augment", "host")))

  def rand_augment_kwargs(self) -> dict[str, Any] | None:
    """`rand_augment.rand_augment` keyword arguments, or None when RandAugment is off."""
    if not self.rand_augment:
      return None
    return dict(parse_rand_augment(self.rand_augment),
                interpolation=self.rand_augment_interpolation)


@dataclasses.dataclass(frozen=True)
class LabelOptions:
  """How labels become targets. task: 'classification' | 'regression' | None (regression when
  the split has targets); num_classes: 0 = the split's class count. Classification training
  targets: smoothed one-hot (label_smoothing) mixed by Mixup/CutMix (alphas 0 = off;
  mix_audio also mixes the spectrograms, which the original does not)."""
  task: str | None
  num_classes: int
  label_smoothing: float
  mixup_alpha: float
  cutmix_alpha: float
  mixup_switch_prob: float
  mix_audio: bool
  mixup_prob: float = 1.0

  def __post_init__(self):
    if self.task is not None and self.task not in TASKS:
      raise ValueError(f"task must be 'classification' or 'regression', got {self.task!r}")

  @classmethod
  def from_config(cls, config) -> LabelOptions:
    m, d = config.model, config.data
    return cls(task=m.task, num_classes=m.num_classes, label_smoothing=d.label_smoothing,
               mixup_alpha=d.mixup_alpha, cutmix_alpha=d.cutmix_alpha,
               mixup_switch_prob=d.mixup_switch_prob, mix_audio=d.mix_audio)


@dataclasses.dataclass(frozen=True)
class MaskOptions:
  """Pre-training masks drawn in the pipeline (draw, i.e. config.data.masks_in_pipeline; else
  the model draws them on device): tube masks over the (T/tubelet, S/patch, S/patch) video
  grid, random masks over the (A/audio_patch)(M/audio_patch) spectrogram patches."""
  draw: bool
  video_ratio: float
  audio_ratio: float
  patch_size: int
  tubelet_size: int
  audio_patch_size: int

  def __post_init__(self):
    check_ratio(self.video_ratio, "MaskOptions.video_ratio")
    check_ratio(self.audio_ratio, "MaskOptions.audio_ratio")

  @classmethod
  def from_config(cls, config) -> MaskOptions:
    m = config.model
    return cls(draw=bool(config.data.masks_in_pipeline), video_ratio=m.video_mask_ratio,
               audio_ratio=m.audio_mask_ratio, patch_size=m.patch_size,
               tubelet_size=m.tubelet_size, audio_patch_size=m.audio_patch_size)

  def video_grid(self, video: VideoOptions) -> tuple[int, int, int]:
    side = video.input_size // self.patch_size
    return video.num_frames // self.tubelet_size, side, side

  def num_audio_tokens(self, audio: AudioOptions) -> int:
    return ((audio.audio_frames // self.audio_patch_size)
            * (audio.num_mel_bins // self.audio_patch_size))


@dataclasses.dataclass(frozen=True)
class EvalOptions:
  """Evaluation views. mode 'val': one centre view (random_long_val_start: the original's
  random window for long clips); 'test': num_segments x num_crops views (SPEC 2a).
  magnitude_aug: scale the waveform as in training (the original does at evaluation; SPEC 11).
  resize_on_device: the frames go out at their stored size and the device does PIL's resize
  (same bytes; `hicmae_jax.pixels.resize_crops`)."""
  mode: str
  num_segments: int
  num_crops: int
  random_long_val_start: bool
  magnitude_aug: bool
  resize_on_device: bool = False

  def __post_init__(self):
    if self.mode not in ("val", "test"):
      raise ValueError(f"mode must be 'val' or 'test', got {self.mode!r}")

  @classmethod
  def from_config(cls, config, mode: str) -> EvalOptions:
    d = config.data
    return cls(mode=mode, num_segments=d.test_num_segments, num_crops=d.test_num_crops,
               random_long_val_start=d.random_long_val_start,
               magnitude_aug=d.eval_magnitude_aug,
               resize_on_device=bool(d.get("eval_resize_on_device", False)))

  @property
  def num_views(self) -> int:
    return self.num_segments * self.num_crops if self.mode == "test" else 1


@dataclasses.dataclass(frozen=True)
class LoaderOptions:
  """How grain runs a pipeline (the batches do not depend on any of it, so every field has a
  default). shard_index/shard_count: this process's block of global-batch rows (training) or
  of the records (evaluation); None = jax's process index/count. num_epochs: None = repeat
  forever (training). worker_count: grain worker processes (0 = in this process);
  read_threads/read_buffer_size: threads and buffered records per process or worker;
  worker_buffer_size: batches buffered per worker. max_skip_fraction: raise
  TooManySkippedRecords above it once skip_check_min_records were read (None = never)."""
  worker_count: int = 0
  read_threads: int = 2
  max_skip_fraction: float | None = None
  skip_check_min_records: int = 100
  shard_index: int | None = None
  shard_count: int | None = None
  num_epochs: int | None = None
  read_buffer_size: int = 8
  worker_buffer_size: int = 2

  @classmethod
  def from_config(cls, config, *, shard_index: int | None = None,
                  shard_count: int | None = None) -> LoaderOptions:
    d = config.data
    return cls(worker_count=d.worker_count, read_threads=d.read_threads,
               max_skip_fraction=d.max_skip_fraction,
               skip_check_min_records=d.skip_check_min_records, shard_index=shard_index,
               shard_count=shard_count)
