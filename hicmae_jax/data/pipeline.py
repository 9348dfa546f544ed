"""grain input pipelines over prepared ArrayRecord splits: pre-training, fine-tuning, evaluation.

Each `make_*_dataset` returns a grain `IterDataset` of numpy batches for this process:

    ds = make_pretrain_dataset(split_dir, batch_size=40, seed=0, draw_masks=True)
    it = iter(ds)                 # a grain DatasetIterator: get_state()/set_state(), close()
    batch = next(it)              # {"video": f32[B,T,H,W,3], "audio": f32[B,256,128], ...}
    it.stats                      # {"records": ..., "skipped": ..., "batches": ...}

Layout (per process): (train) the global record stream (epochs of the whole split, each
shuffled by (seed, epoch)) cut into global batches; this process takes its block of rows of
each (`_BatchSlices`), so batches do not depend on the process or worker count; (eval) records
`shard_index::shard_count` -> one *group* per record (a pure function of (seed, global
position): decode, sample, augment, fbank, masks; `num_repeats` clips or the eval views of one
decoded record; a training group holds a whole batch slice) -> batching in the
worker (a bad record becomes an empty group: skipped, counted, logged; Mixup/CutMix runs here
on the finished batch) -> optional `mp_prefetch` workers -> a main-process stage that strips
the skip counters into `it.stats`. Iterator state is grain's plus those counters, so a restored
iterator continues exactly.

Deliberate differences from the original (SPEC 11) live behind switches: eval magnitude
augmentation (`eval_magnitude_aug`), random long-validation start (`random_long_val_start`),
real waveform roll (`roll_aug`), audio mixing (`mix_audio`).
"""
from __future__ import annotations

import dataclasses
import logging
import sys
from typing import Callable, Sequence

import grain
import numpy as np

from hicmae_jax.data import audio
from hicmae_jax.data import schema
from hicmae_jax.data import transforms as T

log = logging.getLogger(__name__)

# Stream tags keep the random streams of different purposes apart for the same (seed, index).
_TAG_SHUFFLE, _TAG_EXAMPLE, _TAG_BATCH, _TAG_EVAL = 11, 23, 37, 41

# Skip counters of every iterator in this process (the per-iterator `it.stats` is the one to
# checkpoint; this one is for a quick global look, e.g. from a logging hook).
_PROCESS_STATS = {"records": 0, "skipped": 0}


class TooManySkippedRecords(RuntimeError):
  """More records failed to decode than the allowed fraction."""


def process_skip_stats() -> dict[str, int]:
  """Records read and skipped by all pipelines iterated in this process so far."""
  return dict(_PROCESS_STATS)


def check_skip_rate(stats: dict[str, int], *, max_fraction: float,
                    min_records: int = 100) -> None:
  """Raises TooManySkippedRecords when stats['skipped'] / stats['records'] > max_fraction,
  once at least `min_records` records were read (a few early failures are not a rate)."""
  records, skipped = int(stats.get("records", 0)), int(stats.get("skipped", 0))
  if records >= min_records and skipped > max_fraction * records:
    raise TooManySkippedRecords(
        f"{skipped} of {records} records failed to decode ({skipped / records:.2%} > "
        f"{max_fraction:.2%}); the log names each one. Re-run the prepare step for them.")


# ----------------------------------------------------------------------------------------------
# Records of this process.
# ----------------------------------------------------------------------------------------------

class _RecordSource:
  """Random access to this process's records: item i -> (record index, bytes | None, error).

  Index -1 is a padding slot (eval pads every process to the same clip count). A read error
  is returned, not raised, so the group function can count it like a decode error."""

  def __init__(self, paths: Sequence[str], indices: np.ndarray):
    self._paths = list(paths)
    self._indices = np.asarray(indices, dtype=np.int64)
    self._source = grain.sources.ArrayRecordDataSource(self._paths)

  def __len__(self) -> int:
    return int(self._indices.shape[0])

  def __getitem__(self, i: int):
    index = int(self._indices[i])
    if index < 0:
      return index, None, None, ""
    try:
      return index, self._source[index], None, self._locator
    except Exception as e:  # noqa: BLE001 - any read failure is a skipped record
      return index, None, f"read failed ({type(e).__name__}: {e})", self._locator

  @property
  def _locator(self) -> "ShardLocator":
    return ShardLocator(tuple(self._paths))

  def __repr__(self) -> str:
    return f"_RecordSource({len(self)} records of {len(self._paths)} shards)"


@dataclasses.dataclass(frozen=True)
class ShardLocator:
  """Turns a split-wide record index into 'shard-00000-of-00004.array_record record k' for
  skip logs (shard sizes are read only when a record is actually skipped)."""
  paths: tuple[str, ...]

  def __call__(self, index: int) -> str:
    starts = _shard_starts(self.paths)
    shard = int(np.searchsorted(starts, index, side="right")) - 1
    import os
    return f"{os.path.basename(self.paths[shard])} record {index - int(starts[shard])}"


_SHARD_STARTS: dict[tuple[str, ...], np.ndarray] = {}


def _shard_starts(paths: tuple[str, ...]) -> np.ndarray:
  if paths not in _SHARD_STARTS:
    counts = [len(grain.sources.ArrayRecordDataSource([p])) for p in paths]
    _SHARD_STARTS[paths] = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
  return _SHARD_STARTS[paths]


def _process_slice(shard_index: int | None, shard_count: int | None) -> tuple[int, int]:
  """(index, count) of this process; defaults to jax's process index/count."""
  if shard_index is None or shard_count is None:
    opts = grain.sharding.ShardByJaxProcess(drop_remainder=True)  # imports jax lazily
    shard_index = opts.shard_index if shard_index is None else shard_index
    shard_count = opts.shard_count if shard_count is None else shard_count
  if not 0 <= shard_index < shard_count:
    raise ValueError(f"shard_index {shard_index} not in [0, {shard_count})")
  return int(shard_index), int(shard_count)


def _load_split(split_dir: str) -> tuple[schema.DatasetInfo, list[str]]:
  info = schema.DatasetInfo.load(split_dir)
  return info, info.shard_paths(split_dir)


def _count_records(paths: Sequence[str]) -> int:
  return len(grain.sources.ArrayRecordDataSource(list(paths)))


# ----------------------------------------------------------------------------------------------
# Per-record group functions (run in the read threads / workers; top-level so they pickle).
# ----------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class AudioOptions:
  """Fbank input and waveform augmentation.

  magnitude: scale the waveform by Beta(10, 10) + 0.5. roll: a real circular roll (the
  original's roll never moves; SPEC 11). audio_frames x num_mel_bins is the fbank shape."""
  audio_frames: int = 256
  num_mel_bins: int = 128
  fbank_mean: float = T.FBANK_MEAN
  fbank_std: float = T.FBANK_STD
  magnitude: bool = True
  roll: bool = False
  min_span_samples: int = 1024


def audio_features(segment: np.ndarray, rng: np.random.Generator | None, opts: AudioOptions,
                   augment: bool) -> np.ndarray:
  """float32 waveform [M] -> normalised fbank float32 [audio_frames, num_mel_bins]: mean
  removed, optional roll and magnitude scaling (`augment` and the options), Kaldi fbank.
  Raises RecordError for an empty span or a non-finite result."""
  if segment.shape[0] == 0:
    raise schema.RecordError("audio span is empty")
  wave = (segment - segment.mean()).astype(np.float32)
  if augment and opts.roll:
    wave = audio.random_roll(wave, rng)
  if augment and opts.magnitude:
    wave = audio.magnitude_scale(wave, rng)
  fb = audio.waveform_to_fbank_input(wave, target_frames=opts.audio_frames,
                                     mean=opts.fbank_mean, std=opts.fbank_std,
                                     num_mel_bins=opts.num_mel_bins)
  fb = np.asarray(fb, dtype=np.float32)
  if fb.shape != (opts.audio_frames, opts.num_mel_bins):
    raise schema.RecordError(f"fbank has shape {fb.shape}, expected "
                             f"{(opts.audio_frames, opts.num_mel_bins)}")
  if not np.isfinite(fb).all():
    raise schema.RecordError("fbank has non-finite values (bad audio)")
  return fb


def whole_file_limit(opts: AudioOptions) -> int:
  """Samples below which a too-short span falls back to the whole file: the original does
  that only for files shorter than the fbank window, target_length / 100 s (10 ms shift)."""
  return int(opts.audio_frames / 100.0 * schema.AUDIO_SAMPLE_RATE)


def _skipped_group(position: int, index: int, clip_id: str, error: str, examples=(),
                   where=None) -> dict:
  located = ""
  if callable(where):
    try:
      located = f" = {where(index)}"
    except Exception:  # noqa: BLE001 - the location is a courtesy; never fail the skip on it
      located = ""
  log.warning("skipping record %d%s (%s): %s", index, located, clip_id or "?", error)
  return {"position": position, "records": 1, "skipped": 1, "examples": list(examples)}


@dataclasses.dataclass(frozen=True)
class _PretrainGroupFn:
  """Record -> `num_repeats` pre-training examples (video, audio[, mask_video, mask_audio])."""
  seed: int
  num_frames: int
  sampling_rate: int
  input_size: int
  fixed_crop: tuple[int, int, int, int] | None
  multiscale: tuple[float, ...]
  num_repeats: int
  draw_masks: bool
  mask_ratio_video: float
  mask_ratio_audio: float
  patch_size: int
  tubelet_size: int
  audio_patch_size: int
  audio_span: str
  mean: tuple[float, ...]
  std: tuple[float, ...]
  audio_opts: AudioOptions

  def __call__(self, position: int, item) -> dict:
    index, raw, error, where = item
    rng = np.random.default_rng([self.seed, _TAG_EXAMPLE, position])
    clip_id = ""
    try:
      if error is not None:
        raise schema.RecordError(error)
      clip = schema.decode_clip(raw)
      clip_id = clip.clip_id
      n = clip.num_frames
      picks = [T.pretrain_frame_indices(n, rng, num_frames=self.num_frames,
                                        sampling_rate=self.sampling_rate)
               for _ in range(self.num_repeats)]
      images = T.decode_frames(clip.frames, np.concatenate([p[0] for p in picks]))
      wave = schema.audio_to_float(clip.audio)
      examples = []
      for ids, (f0, f1) in picks:
        frames = T.stack_frames(images, ids)
        if self.fixed_crop is not None and not _FIXED_CROP_NOTED:
          _note_fixed_crop(frames.shape, self.fixed_crop)
        frames = T.fixed_crop(frames, self.fixed_crop)
        frames = T.multi_scale_crop(frames, rng, output_size=self.input_size,
                                    scales=self.multiscale)
        example = {"video": T.normalize(frames, mean=self.mean, std=self.std)}
        if self.audio_span == "timestamp" and clip.fps > 0:
          a0, a1 = T.timestamp_audio_span(f0, f1, clip.fps, schema.AUDIO_SAMPLE_RATE)
        else:
          a0, a1 = T.relative_audio_span(f0, f1, n, wave.shape[0])
        segment = T.cut_audio(wave, a0, a1, min_samples=self.audio_opts.min_span_samples,
                              whole_if_shorter_than=whole_file_limit(self.audio_opts))
        example["audio"] = audio_features(segment, rng, self.audio_opts, augment=True)
        if self.draw_masks:
          example.update(_draw_masks(rng, self))
        examples.append(example)
    except Exception as e:  # noqa: BLE001 - never crash the run on one bad record
      return _skipped_group(position, index, clip_id, f"{type(e).__name__}: {e}",
                            where=where)
    return {"position": position, "records": 1, "skipped": 0, "examples": examples}


_FIXED_CROP_NOTED = []


def _note_fixed_crop(shape: tuple[int, ...], crop: tuple[int, int, int, int]) -> None:
  """Says once per process whether the fixed crop applies (it is silently skipped for frames
  smaller than the crop box, e.g. synthetic data; on VoxCeleb2 a skip means a bad prepare)."""
  _FIXED_CROP_NOTED.append(True)
  applies = shape[1] >= crop[1] and shape[2] >= crop[3]
  log.log(logging.INFO if applies else logging.WARNING,
          "pre-training fixed crop rows %d:%d cols %d:%d %s on %dx%d frames", crop[0], crop[1],
          crop[2], crop[3], "applies" if applies else "is SKIPPED (frames too small)",
          shape[1], shape[2])


def _draw_masks(rng: np.random.Generator, fn: _PretrainGroupFn) -> dict[str, np.ndarray]:
  grid = (fn.num_frames // fn.tubelet_size, fn.input_size // fn.patch_size,
          fn.input_size // fn.patch_size)
  num_audio = ((fn.audio_opts.audio_frames // fn.audio_patch_size)
               * (fn.audio_opts.num_mel_bins // fn.audio_patch_size))
  return {"mask_video": T.tube_mask(rng, grid=grid, mask_ratio=fn.mask_ratio_video),
          "mask_audio": T.random_mask(rng, num_patches=num_audio,
                                      mask_ratio=fn.mask_ratio_audio)}


def _label_fields(clip: schema.Clip, num_targets: int) -> dict[str, np.ndarray]:
  fields = {"label": np.int32(clip.label)}
  if num_targets > 0:
    targets = np.asarray(clip.targets, dtype=np.float32)
    if targets.shape != (num_targets,):
      raise schema.RecordError(f"field 'targets' has {targets.shape[0]} values, the split "
                               f"has {num_targets}")
    fields["targets"] = targets
  return fields


@dataclasses.dataclass(frozen=True)
class _FinetuneGroupFn:
  """Record -> one augmented fine-tuning example (video, audio, label[, targets])."""
  seed: int
  num_frames: int
  sampling_rate: int
  input_size: int
  rand_augment: dict | None
  rrc_scale: tuple[float, float]
  rrc_ratio: tuple[float, float]
  flip_prob: float
  erase_prob: float
  erase_mode: str
  erase_count: int
  num_targets: int
  mean: tuple[float, ...]
  std: tuple[float, ...]
  audio_opts: AudioOptions

  def __call__(self, position: int, item) -> dict:
    index, raw, error, where = item
    rng = np.random.default_rng([self.seed, _TAG_EXAMPLE, position])
    clip_id = ""
    try:
      if error is not None:
        raise schema.RecordError(error)
      clip = schema.decode_clip(raw)
      clip_id = clip.clip_id
      n = clip.num_frames
      ids, (f0, f1) = T.segment_frame_indices(n, num_frames=self.num_frames,
                                              sampling_rate=self.sampling_rate, rng=rng)
      images = T.decode_frames(clip.frames, ids)
      # The original resizes every frame to input_size x input_size first (aspect not kept).
      unique = sorted(images)
      resized = [T.pil_resize(images[i], self.input_size, self.input_size) for i in unique]
      # RandAugment draws one op list per clip and applies it to every frame; it is a
      # deterministic function of the frame then, so running it once per distinct frame is exact.
      if self.rand_augment is not None:
        augmented = T.rand_augment(resized, rng, **self.rand_augment)
      else:
        augmented = np.stack([np.asarray(img) for img in resized])
      where = {i: k for k, i in enumerate(unique)}
      frames = augmented[[where[int(i)] for i in ids]]
      video = T.normalize(frames, mean=self.mean, std=self.std)
      video = T.random_resized_crop(video, rng, output_size=self.input_size,
                                    scale=self.rrc_scale, ratio=self.rrc_ratio)
      video = T.horizontal_flip(video, rng, prob=self.flip_prob)
      if self.erase_prob > 0:
        video = T.random_erasing(video, rng, probability=self.erase_prob, mode=self.erase_mode,
                                 min_count=self.erase_count, max_count=self.erase_count)
      wave = schema.audio_to_float(clip.audio)
      a0, a1 = T.relative_audio_span(f0, f1, n, wave.shape[0])
      segment = T.cut_audio(wave, a0, a1, min_samples=self.audio_opts.min_span_samples,
                            whole_if_shorter_than=whole_file_limit(self.audio_opts))
      example = {"video": video,
                 "audio": audio_features(segment, rng, self.audio_opts, augment=True)}
      example.update(_label_fields(clip, self.num_targets))
    except Exception as e:  # noqa: BLE001
      return _skipped_group(position, index, clip_id, f"{type(e).__name__}: {e}",
                            where=where)
    return {"position": position, "records": 1, "skipped": 0, "examples": [example]}


@dataclasses.dataclass(frozen=True)
class _EvalGroupFn:
  """Record -> its eval views (val: 1; test: num_segments x num_crops), each with clip_index,
  view_index and valid. Padding slots and bad records give views with valid=False."""
  seed: int
  mode: str
  num_frames: int
  sampling_rate: int
  input_size: int
  num_segments: int
  num_crops: int
  random_long_val_start: bool
  eval_magnitude_aug: bool
  num_targets: int
  mean: tuple[float, ...]
  std: tuple[float, ...]
  audio_opts: AudioOptions

  @property
  def num_views(self) -> int:
    return self.num_segments * self.num_crops if self.mode == "test" else 1

  def padding_example(self) -> dict[str, np.ndarray]:
    s = self.input_size
    example = {
        "video": np.zeros((self.num_frames, s, s, 3), np.float32),
        "audio": np.zeros((self.audio_opts.audio_frames, self.audio_opts.num_mel_bins),
                          np.float32),
        "label": np.int32(0), "clip_index": np.int32(-1), "view_index": np.int32(-1),
        "valid": np.bool_(False)}
    if self.num_targets > 0:
      example["targets"] = np.zeros((self.num_targets,), np.float32)
    return example

  def __call__(self, position: int, item) -> dict:
    index, raw, error, where = item
    if index < 0 and raw is None and error is None:  # padding slot: not a record
      return {"position": position, "records": 0, "skipped": 0,
              "examples": [self.padding_example() for _ in range(self.num_views)]}
    # Keyed by the clip, not the position, so results do not depend on the process count.
    rng = np.random.default_rng([self.seed, _TAG_EVAL, index])
    clip_id = ""
    try:
      if error is not None:
        raise schema.RecordError(error)
      clip = schema.decode_clip(raw)
      clip_id = clip.clip_id
      n = clip.num_frames
      if self.mode == "test":
        segments = T.test_frame_indices(n, num_frames=self.num_frames,
                                        sampling_rate=self.sampling_rate,
                                        num_segments=self.num_segments)
      else:
        segments = [T.segment_frame_indices(
            n, num_frames=self.num_frames, sampling_rate=self.sampling_rate,
            rng=rng if self.random_long_val_start else None)]
      images = T.decode_frames(clip.frames, np.concatenate([s[0] for s in segments]))
      resized = {i: T.pil_resize(img, self.input_size, self.input_size)
                 for i, img in images.items()}
      wave = schema.audio_to_float(clip.audio)
      labels = _label_fields(clip, self.num_targets)
      examples = []
      for k, (ids, (f0, f1)) in enumerate(segments):
        video = T.normalize(T.stack_frames(resized, ids), mean=self.mean, std=self.std)
        a0, a1 = T.relative_audio_span(f0, f1, n, wave.shape[0])
        segment = T.cut_audio(wave, a0, a1, min_samples=self.audio_opts.min_span_samples,
                              whole_if_shorter_than=whole_file_limit(self.audio_opts))
        fb = audio_features(segment, rng, self.audio_opts, augment=self.eval_magnitude_aug)
        # Frames are resized to exactly input_size square, so the original's uniform spatial
        # crops all start at 0: every crop view of a segment is the same pixels.
        for c in range(self.num_crops if self.mode == "test" else 1):
          view = k * self.num_crops + c if self.mode == "test" else 0
          examples.append({"video": video, "audio": fb, **labels,
                           "clip_index": np.int32(index), "view_index": np.int32(view),
                           "valid": np.bool_(True)})
    except Exception as e:  # noqa: BLE001
      return _skipped_group(position, index, clip_id, f"{type(e).__name__}: {e}",
                            [self.padding_example() for _ in range(self.num_views)],
                            where=where)
    return {"position": position, "records": 1, "skipped": 0, "examples": examples}


# ----------------------------------------------------------------------------------------------
# Batch transforms (run in the worker on a finished batch).
# ----------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class _MixupTransform:
  """Mixup/CutMix + label smoothing on a classification batch (`targets` added)."""
  num_classes: int
  mixup_alpha: float
  cutmix_alpha: float
  switch_prob: float
  prob: float
  label_smoothing: float
  mix_audio: bool

  def __call__(self, batch: dict, rng: np.random.Generator) -> dict:
    return T.mixup_cutmix(batch, rng, num_classes=self.num_classes,
                          mixup_alpha=self.mixup_alpha, cutmix_alpha=self.cutmix_alpha,
                          switch_prob=self.switch_prob, prob=self.prob,
                          label_smoothing=self.label_smoothing, mix_audio=self.mix_audio)


# ----------------------------------------------------------------------------------------------
# grain stages: group batching (worker side) and skip statistics (main process).
# ----------------------------------------------------------------------------------------------

def _stack(examples: Sequence[dict]) -> dict[str, np.ndarray]:
  return {k: np.stack([np.asarray(e[k]) for e in examples]) for k in examples[0]}


def _as_padding(example: dict) -> dict:
  pad = {k: np.zeros_like(np.asarray(v)) for k, v in example.items()}
  pad["clip_index"] = np.int32(-1)
  pad["view_index"] = np.int32(-1)
  pad["valid"] = np.bool_(False)
  return pad


class _GroupBatchIterator(grain.DatasetIterator):
  """Flattens groups into examples and batches them; adds `_num_records`/`_num_skipped`.

  Each batch carries the counts of the groups fetched while building it. After filling a
  batch it reads ahead to the next group that has examples, so skipped records at the end
  of the stream are still counted (in the last batch). Records in a dropped remainder are
  not counted.

  State = (parent state before the buffered group, examples of it already used): on restore
  the group is recomputed (a pure function of its position) without counting it again."""

  def __init__(self, parent: grain.DatasetIterator, spec: "_GroupBatchIterDataset"):
    super().__init__(parent)
    self._spec = spec
    self._group_state = parent.get_state()
    self._examples: list = []
    self._position = -1
    self._offset = 0
    self._records = 0
    self._skipped = 0

  def _fetch(self, count: bool = True) -> None:
    self._group_state = self._parent.get_state()
    group = next(self._parent)  # StopIteration ends the stream
    self._examples = group["examples"]
    self._position = int(group["position"])
    self._offset = 0
    if count:
      self._records += int(group["records"])
      self._skipped += int(group["skipped"])

  def _fill(self) -> bool:
    """Buffers a group with unused examples; False at the end of the stream."""
    while self._offset >= len(self._examples):
      try:
        self._fetch()
      except StopIteration:
        return False
    return True

  def __next__(self) -> dict:
    spec = self._spec
    out, key = [], None
    while len(out) < spec.batch_size and self._fill():
      if key is None:
        key = (self._position, self._offset)
      out.append(self._examples[self._offset])
      self._offset += 1
    if not out or (len(out) < spec.batch_size and spec.drop_remainder):
      raise StopIteration
    self._fill()  # read ahead: count the skipped records that follow in this batch
    if len(out) < spec.batch_size:
      out += [_as_padding(out[-1])] * (spec.batch_size - len(out))
    batch = _stack(out)
    if spec.batch_transform is not None:
      rng = np.random.default_rng([spec.seed, _TAG_BATCH, key[0], key[1]])
      batch = spec.batch_transform(batch, rng)
    batch["_num_records"] = np.int64(self._records)
    batch["_num_skipped"] = np.int64(self._skipped)
    self._records = self._skipped = 0
    return batch

  def get_state(self) -> dict:
    if self._offset < len(self._examples):
      return {"parent": self._group_state, "offset": self._offset, "buffered": True}
    return {"parent": self._parent.get_state(), "offset": 0, "buffered": False}

  def set_state(self, state: dict) -> None:
    self._parent.set_state(state["parent"])
    self._examples, self._offset = [], 0
    self._records = self._skipped = 0
    if state["buffered"]:
      self._fetch(count=False)
      self._offset = int(state["offset"])


class _GroupBatchIterDataset(grain.IterDataset):
  """See _GroupBatchIterator. Picklable: it travels to the workers."""

  def __init__(self, parent: grain.IterDataset, *, batch_size: int, drop_remainder: bool,
               seed: int, batch_transform: Callable | None = None):
    super().__init__(parent)
    self.batch_size = batch_size
    self.drop_remainder = drop_remainder
    self.seed = seed
    self.batch_transform = batch_transform

  def __iter__(self) -> _GroupBatchIterator:
    return _GroupBatchIterator(self._parent.__iter__(), self)

  def __str__(self) -> str:
    return f"GroupBatch(batch_size={self.batch_size}, drop_remainder={self.drop_remainder})"


class PipelineIterator(grain.DatasetIterator):
  """Main-process end of a pipeline: strips the skip counters from each batch into `stats`.

  Works with `grain.checkpoint.CheckpointSave/Restore` (it is a DatasetIterator whose state is
  a JSON-able dict: grain's state plus the counters)."""

  def __init__(self, parent: grain.DatasetIterator, max_skip_fraction: float | None,
               skip_check_min_records: int):
    super().__init__(parent)
    self._max_skip_fraction = max_skip_fraction
    self._min_records = skip_check_min_records
    self._stats = {"records": 0, "skipped": 0, "batches": 0}

  @property
  def stats(self) -> dict[str, int]:
    """records read, records skipped, batches returned (since the start, across restores)."""
    return dict(self._stats)

  def __next__(self) -> dict:
    batch = dict(next(self._parent))
    records = int(batch.pop("_num_records"))
    skipped = int(batch.pop("_num_skipped"))
    self._stats["records"] += records
    self._stats["skipped"] += skipped
    self._stats["batches"] += 1
    _PROCESS_STATS["records"] += records
    _PROCESS_STATS["skipped"] += skipped
    if self._max_skip_fraction is not None:
      check_skip_rate(self._stats, max_fraction=self._max_skip_fraction,
                      min_records=self._min_records)
    return batch

  def get_state(self) -> dict:
    return {"pipeline": self._parent.get_state(), "stats": dict(self._stats)}

  def set_state(self, state: dict) -> None:
    self._parent.set_state(state["pipeline"])
    self._stats = {k: int(v) for k, v in state["stats"].items()}


class PipelineDataset(grain.IterDataset):
  """What `make_*_dataset` returns: `iter()` gives a PipelineIterator.

  Attributes: num_records (records of this process per epoch, padding excluded),
  examples_per_record, batch_size, and num_batches (finite eval pipelines: the exact count,
  the same on every process; None for repeating ones)."""

  def __init__(self, parent: grain.IterDataset, *, num_records: int, examples_per_record: int,
               batch_size: int, num_batches: int | None, max_skip_fraction: float | None,
               skip_check_min_records: int):
    super().__init__(parent)
    self.num_records = num_records
    self.examples_per_record = examples_per_record
    self.batch_size = batch_size
    self.num_batches = num_batches
    self._max_skip_fraction = max_skip_fraction
    self._min_records = skip_check_min_records

  def __iter__(self) -> PipelineIterator:
    return PipelineIterator(self._parent.__iter__(), self._max_skip_fraction,
                            self._min_records)

  def __str__(self) -> str:
    return f"PipelineDataset(records={self.num_records}, batch_size={self.batch_size})"


def _assemble(groups: grain.MapDataset, *, seed: int, batch_size: int, drop_remainder: bool,
              batch_transform: Callable | None, worker_count: int, read_threads: int,
              read_buffer_size: int, worker_buffer_size: int, num_records: int,
              examples_per_record: int, num_batches: int | None,
              max_skip_fraction: float | None, skip_check_min_records: int,
              ) -> PipelineDataset:
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}")
  ds = groups
  it_ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=read_threads,
                                               prefetch_buffer_size=read_buffer_size))
  it_ds = _GroupBatchIterDataset(it_ds, batch_size=batch_size, drop_remainder=drop_remainder,
                                 seed=seed, batch_transform=batch_transform)
  if worker_count > 0:
    it_ds = it_ds.mp_prefetch(grain.MultiprocessingOptions(
        num_workers=worker_count, per_worker_buffer_size=worker_buffer_size))
  return PipelineDataset(it_ds, num_records=num_records,
                         examples_per_record=examples_per_record, batch_size=batch_size,
                         num_batches=num_batches, max_skip_fraction=max_skip_fraction,
                         skip_check_min_records=skip_check_min_records)


def _epoch_order(seed: int, epoch: int, num_records: int) -> np.ndarray:
  """The record order of one epoch: a permutation keyed by (seed, epoch) only, so every
  process computes the same one."""
  key = (int(seed), int(epoch), int(num_records))
  order = _EPOCH_ORDERS.get(key)
  if order is None:
    order = np.random.default_rng([key[0], _TAG_SHUFFLE, key[1]]).permutation(key[2])
    order.flags.writeable = False
    if len(_EPOCH_ORDERS) >= 4:  # the read threads only ever need the current and next epoch
      _EPOCH_ORDERS.pop(next(iter(_EPOCH_ORDERS)), None)
    _EPOCH_ORDERS[key] = order
  return order


_EPOCH_ORDERS: dict[tuple[int, int, int], np.ndarray] = {}


class _BatchSlices:
  """The training stream of one process as a random-access source: element j is this process's
  slice of global batch j, i.e. `records_per_slice` consecutive positions of the global record
  stream (epochs of the whole split, each in its own (seed, epoch) order) starting at
  (j * slice_count + slice_index) * records_per_slice.

  A record's global position keys its randomness, and the slice index is the block of
  global-batch rows this process holds, so the global batches do not depend on how many
  processes (or grain workers) build them. Item j -> [(global position, record item), ...]."""

  def __init__(self, records: _RecordSource, *, seed: int, shuffle: bool, slice_index: int,
               slice_count: int, records_per_slice: int, num_epochs: int | None):
    self._records = records
    self._seed, self._shuffle = seed, shuffle
    self._index, self._count, self._k = slice_index, slice_count, records_per_slice
    self.num_records = len(records)
    per_batch = records_per_slice * slice_count
    if num_epochs is None:
      self._total = None
      self._len = sys.maxsize
    else:
      total = int(num_epochs) * self.num_records
      if slice_count > 1:  # every process the same number of full slices
        total = total // per_batch * per_batch
      self._total = total
      self._len = -(-total // per_batch)

  def __len__(self) -> int:
    return self._len

  def __getitem__(self, j: int) -> list:
    base = (int(j) * self._count + self._index) * self._k
    items = []
    for g in range(base, base + self._k):
      if self._total is not None and g >= self._total:
        break
      epoch, offset = divmod(g, self.num_records)
      record = (int(_epoch_order(self._seed, epoch, self.num_records)[offset])
                if self._shuffle else offset)
      items.append((g, self._records[record]))
    return items

  def __repr__(self) -> str:
    return (f"_BatchSlices(slice {self._index}/{self._count}, {self._k} records each, "
            f"{self._records!r})")


@dataclasses.dataclass(frozen=True)
class _SliceGroupFn:
  """A batch slice [(global position, record item), ...] -> one group of all its examples."""
  group_fn: Callable

  def __call__(self, items: list) -> dict:
    groups = [self.group_fn(g, item) for g, item in items]
    return {"position": items[0][0] if items else -1,
            "records": sum(gr["records"] for gr in groups),
            "skipped": sum(gr["skipped"] for gr in groups),
            "examples": [e for gr in groups for e in gr["examples"]]}


def _slice_buffer(read_buffer_size: int, read_threads: int, batch_size: int,
                  examples_per_record: int) -> int:
  """read_buffer_size counts records; a training element is a batch slice of records."""
  per_slice = max(1, batch_size // examples_per_record)
  return max(read_threads, -(-read_buffer_size // per_slice))


def _train_groups(split_dir: str, group_fn: Callable, *, seed: int, batch_size: int,
                  examples_per_record: int, shard_index, shard_count, num_epochs
                  ) -> tuple[schema.DatasetInfo, grain.MapDataset, int]:
  """(info, groups, records per process per epoch) of a training split; see _BatchSlices.

  shard_index/shard_count: which block of `shard_count` equal blocks of global-batch rows this
  process fills (train.py derives it from the mesh; default: jax's process index/count)."""
  info, paths = _load_split(split_dir)
  p, c = _process_slice(shard_index, shard_count)
  total = _count_records(paths)
  if total < c:
    raise ValueError(f"{split_dir!r} has {total} records, fewer than the {c} processes")
  if batch_size % examples_per_record:
    if c > 1:
      raise ValueError(
          f"the per-process batch ({batch_size}) must be a multiple of the clips drawn per "
          f"record ({examples_per_record}, data.num_repeats) when several processes share a "
          f"global batch; change global_batch_size or data.num_repeats")
    k = 1
  else:
    k = batch_size // examples_per_record
  slices = _BatchSlices(_RecordSource(paths, np.arange(total)), seed=seed, shuffle=True,
                        slice_index=p, slice_count=c, records_per_slice=k,
                        num_epochs=num_epochs)
  groups = grain.MapDataset.source(slices).map(_SliceGroupFn(group_fn))
  return info, groups, total // c


_COMMON_DOC = """
  Common keyword arguments: shard_index/shard_count (default: jax process index/count),
  num_epochs (None = repeat forever), worker_count (grain worker processes; 0 = in this
  process), read_threads/read_buffer_size (threads and buffered records per process or worker),
  worker_buffer_size (batches buffered per worker), max_skip_fraction (raise
  TooManySkippedRecords above it, checked after skip_check_min_records records; None = never).
"""


def make_pretrain_dataset(
    split_dir: str, *, batch_size: int, seed: int, num_frames: int = 16,
    sampling_rate: int = 4, input_size: int = 160,
    fixed_crop: tuple[int, int, int, int] | None = (0, 160, 32, 192),
    multiscale: Sequence[float] = (1, .875, .75, .66), num_repeats: int = 1,
    draw_masks: bool = False, mask_ratio_video: float = 0.9, mask_ratio_audio: float = 0.8,
    patch_size: int = 16, tubelet_size: int = 2, audio_patch_size: int = 16,
    audio_frames: int = 256, num_mel_bins: int = 128, magnitude_aug: bool = True,
    roll_aug: bool = False, audio_span: str = "relative", fbank_mean: float = T.FBANK_MEAN,
    fbank_std: float = T.FBANK_STD, mean: Sequence[float] = T.IMAGENET_MEAN,
    std: Sequence[float] = T.IMAGENET_STD, shard_index: int | None = None,
    shard_count: int | None = None, num_epochs: int | None = None, worker_count: int = 0,
    read_threads: int = 2, read_buffer_size: int = 8, worker_buffer_size: int = 2,
    max_skip_fraction: float | None = None, skip_check_min_records: int = 100,
) -> PipelineDataset:
  """Pre-training batches: video f32 [B, T, S, S, 3], audio f32 [B, audio_frames, mel]
  (+ mask_video bool [B, (T/tubelet)(S/patch)^2], mask_audio bool [B, (A/ap)(mel/ap)] with
  draw_masks).

  Per clip (the original's VideoMAE-style sampler): num_frames at sampling_rate from a random
  start, the last reachable frame repeated past the end; fixed crop rows/cols
  (fixed_crop = (r0, r1, c0, c1), applied only when the stored frames are large enough);
  multi-scale crop resized to input_size; no flip; ImageNet normalisation. Audio: the clip's
  frame span, by relative position (audio_span='relative') or from frame timestamps as the
  original (audio_span='timestamp', needs fps in the record); magnitude scaling
  (magnitude_aug), optional real roll (roll_aug); fbank. num_repeats clips are drawn from each
  decoded record (repeated sampling: they follow each other in the stream).
  """
  if audio_span not in ("relative", "timestamp"):
    raise ValueError(f"audio_span must be 'relative' or 'timestamp', got {audio_span!r}")
  group_fn = _PretrainGroupFn(
      seed=seed, num_frames=num_frames, sampling_rate=sampling_rate, input_size=input_size,
      fixed_crop=tuple(fixed_crop) if fixed_crop is not None else None,
      multiscale=tuple(multiscale), num_repeats=num_repeats, draw_masks=draw_masks,
      mask_ratio_video=mask_ratio_video, mask_ratio_audio=mask_ratio_audio,
      patch_size=patch_size, tubelet_size=tubelet_size, audio_patch_size=audio_patch_size,
      audio_span=audio_span, mean=tuple(mean), std=tuple(std),
      audio_opts=AudioOptions(audio_frames=audio_frames, num_mel_bins=num_mel_bins,
                              fbank_mean=fbank_mean, fbank_std=fbank_std,
                              magnitude=magnitude_aug, roll=roll_aug))
  _, groups, num_records = _train_groups(
      split_dir, group_fn, seed=seed, batch_size=batch_size, examples_per_record=num_repeats,
      shard_index=shard_index, shard_count=shard_count, num_epochs=num_epochs)
  return _assemble(groups, seed=seed, batch_size=batch_size, drop_remainder=True,
                   batch_transform=None, worker_count=worker_count, read_threads=read_threads,
                   read_buffer_size=_slice_buffer(read_buffer_size, read_threads, batch_size,
                                                  num_repeats),
                   worker_buffer_size=worker_buffer_size,
                   num_records=num_records, examples_per_record=num_repeats, num_batches=None,
                   max_skip_fraction=max_skip_fraction,
                   skip_check_min_records=skip_check_min_records)


def make_finetune_train_dataset(
    split_dir: str, *, batch_size: int, seed: int, num_frames: int = 16,
    sampling_rate: int = 4, input_size: int = 160,
    rand_augment: str | None = "rand-m7-n4-mstd0.5-inc1",
    rand_augment_interpolation: str = "bicubic",
    rrc_scale: tuple[float, float] = (0.08, 1.0), rrc_ratio: tuple[float, float] = (0.75, 1.3333),
    flip_prob: float = 0.5, erase_prob: float = 0.25, erase_mode: str = "pixel",
    erase_count: int = 1, task: str | None = None, num_classes: int | None = None,
    mixup_alpha: float = 0.8, cutmix_alpha: float = 1.0, mixup_switch_prob: float = 0.5,
    mixup_prob: float = 1.0, label_smoothing: float = 0.1, mix_audio: bool = False,
    audio_frames: int = 256, num_mel_bins: int = 128, magnitude_aug: bool = True,
    roll_aug: bool = False, fbank_mean: float = T.FBANK_MEAN, fbank_std: float = T.FBANK_STD,
    mean: Sequence[float] = T.IMAGENET_MEAN, std: Sequence[float] = T.IMAGENET_STD,
    shard_index: int | None = None, shard_count: int | None = None,
    num_epochs: int | None = None, worker_count: int = 0, read_threads: int = 2,
    read_buffer_size: int = 8, worker_buffer_size: int = 2,
    max_skip_fraction: float | None = None, skip_check_min_records: int = 100,
) -> PipelineDataset:
  """Fine-tuning train batches: video f32 [B, T, S, S, 3], audio f32 [B, A, mel], label i32 [B],
  targets f32 [B, C] (classification: smoothed one-hot mixed by Mixup/CutMix) or [B, K]
  (regression: the record's targets, no mixing).

  Per clip, as the original's training: the train sampler (SPEC 2a validation sampler with a
  random window end), PIL bilinear resize to input_size square, RandAugment (the same ops on
  every frame; None disables), normalisation, one random resized crop (scale, ratio) for the
  clip, horizontal flip, random erasing (one region for all frames, timm 'pixel' mode);
  waveform magnitude scaling. task defaults to 'regression' when the split has targets;
  num_classes to its class count. Set mixup_alpha = cutmix_alpha = 0 for smoothing only.
  """
  info = schema.DatasetInfo.load(split_dir)
  task = task or ("regression" if info.num_targets > 0 else "classification")
  if task not in ("classification", "regression"):
    raise ValueError(f"task must be 'classification' or 'regression', got {task!r}")
  transform = None
  if task == "classification":
    num_classes = num_classes or len(info.class_names)
    if not num_classes:
      raise ValueError(f"{split_dir!r} lists no class names: pass num_classes")
    transform = _MixupTransform(num_classes=num_classes, mixup_alpha=mixup_alpha,
                                cutmix_alpha=cutmix_alpha, switch_prob=mixup_switch_prob,
                                prob=mixup_prob, label_smoothing=label_smoothing,
                                mix_audio=mix_audio)
  ra = None
  if rand_augment:
    ra = dict(T.parse_rand_augment(rand_augment), interpolation=rand_augment_interpolation)
  group_fn = _FinetuneGroupFn(
      seed=seed, num_frames=num_frames, sampling_rate=sampling_rate, input_size=input_size,
      rand_augment=ra, rrc_scale=tuple(rrc_scale), rrc_ratio=tuple(rrc_ratio),
      flip_prob=flip_prob, erase_prob=erase_prob, erase_mode=erase_mode,
      erase_count=erase_count,
      num_targets=info.num_targets if task == "regression" else 0,
      mean=tuple(mean), std=tuple(std),
      audio_opts=AudioOptions(audio_frames=audio_frames, num_mel_bins=num_mel_bins,
                              fbank_mean=fbank_mean, fbank_std=fbank_std,
                              magnitude=magnitude_aug, roll=roll_aug))
  _, groups, num_records = _train_groups(
      split_dir, group_fn, seed=seed, batch_size=batch_size, examples_per_record=1,
      shard_index=shard_index, shard_count=shard_count, num_epochs=num_epochs)
  return _assemble(groups, seed=seed, batch_size=batch_size, drop_remainder=True,
                   batch_transform=transform, worker_count=worker_count,
                   read_threads=read_threads,
                   read_buffer_size=_slice_buffer(read_buffer_size, read_threads, batch_size, 1),
                   worker_buffer_size=worker_buffer_size,
                   num_records=num_records, examples_per_record=1, num_batches=None,
                   max_skip_fraction=max_skip_fraction,
                   skip_check_min_records=skip_check_min_records)


def make_eval_dataset(
    split_dir: str, *, batch_size: int, mode: str = "val", num_segments: int = 2,
    num_crops: int = 2, num_frames: int = 16, sampling_rate: int = 4, input_size: int = 160,
    random_long_val_start: bool = False, eval_magnitude_aug: bool = False, seed: int = 0,
    task: str | None = None, audio_frames: int = 256, num_mel_bins: int = 128,
    fbank_mean: float = T.FBANK_MEAN, fbank_std: float = T.FBANK_STD,
    mean: Sequence[float] = T.IMAGENET_MEAN, std: Sequence[float] = T.IMAGENET_STD,
    shard_index: int | None = None, shard_count: int | None = None, worker_count: int = 0,
    read_threads: int = 2, read_buffer_size: int = 8, worker_buffer_size: int = 2,
    max_skip_fraction: float | None = None, skip_check_min_records: int = 100,
) -> PipelineDataset:
  """Eval batches, one finite pass: video, audio, label i32 [B] (+ targets f32 [B, K] for
  regression), clip_index i32 [B] (record index in the split), view_index i32 [B],
  valid bool [B].

  mode 'val': one centre view (SPEC 2a validation sampling; clips over num_frames*rate frames
  take the middle window unless random_long_val_start reproduces the original's random one,
  seeded by (seed, clip)). mode 'test': SPEC 2a exactly, num_segments x num_crops views,
  view_index = segment * num_crops + crop. Frames: PIL bilinear to exactly input_size square.
  Audio: span by relative position; magnitude scaling only with eval_magnitude_aug (the
  original's behaviour). Every process gets ceil(N / shard_count) clip slots (the last ones
  padding) so all processes run the same number of batches (`num_batches`); padding and bad
  records come as rows with valid=False, clip_index=-1, view_index=-1.
  """
  if mode not in ("val", "test"):
    raise ValueError(f"mode must be 'val' or 'test', got {mode!r}")
  info, paths = _load_split(split_dir)
  p, c = _process_slice(shard_index, shard_count)
  total = _count_records(paths)
  local = np.arange(total)[p::c]
  slots = -(-total // c)
  indices = np.concatenate([local, np.full(slots - local.shape[0], -1, np.int64)])
  task = task or ("regression" if info.num_targets > 0 else "classification")
  group_fn = _EvalGroupFn(
      seed=seed, mode=mode, num_frames=num_frames, sampling_rate=sampling_rate,
      input_size=input_size, num_segments=num_segments, num_crops=num_crops,
      random_long_val_start=random_long_val_start, eval_magnitude_aug=eval_magnitude_aug,
      num_targets=info.num_targets if task == "regression" else 0, mean=tuple(mean),
      std=tuple(std),
      audio_opts=AudioOptions(audio_frames=audio_frames, num_mel_bins=num_mel_bins,
                              fbank_mean=fbank_mean, fbank_std=fbank_std))
  views = group_fn.num_views
  # Workers each batch (and pad) their own slice i::W of the clip slots.
  workers = max(worker_count, 1)
  num_batches = sum(-(-len(range(w, slots, workers)) * views // batch_size)
                    for w in range(workers))
  groups = grain.MapDataset.source(_RecordSource(paths, indices)).map_with_index(group_fn)
  return _assemble(groups, seed=seed, batch_size=batch_size, drop_remainder=False,
                   batch_transform=None, worker_count=worker_count,
                   read_threads=read_threads, read_buffer_size=read_buffer_size,
                   worker_buffer_size=worker_buffer_size, num_records=int(local.shape[0]),
                   examples_per_record=views, num_batches=num_batches,
                   max_skip_fraction=max_skip_fraction,
                   skip_check_min_records=skip_check_min_records)


# The keyword arguments all three share, documented once.
if make_pretrain_dataset.__doc__:  # None under python -OO
  make_pretrain_dataset.__doc__ += _COMMON_DOC
  make_finetune_train_dataset.__doc__ += _COMMON_DOC
  make_eval_dataset.__doc__ += _COMMON_DOC.replace("num_epochs (None = repeat forever), ", "")
