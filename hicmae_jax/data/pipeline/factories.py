"""grain input pipelines over prepared ArrayRecord splits: pre-training, fine-tuning, evaluation.

Each `make_*_dataset` takes a few frozen option objects (`options.py`) and returns a grain
`IterDataset` of numpy batches for this process; `*_dataset_from_config` builds them from a
config:

    ds = train_dataset_from_config(config, split_dir, batch_size=40, seed=0)
    # or a split opened once and handed down (the trainer does):
    ds = train_dataset_from_config(config, split_reader.open_split(split_dir), ...)
    it = iter(ds)                 # a grain DatasetIterator: get_state()/set_state(), close()
    batch = next(it)              # {"video": f32[B,T,H,W,3], "audio": f32[B,256,128], ...}
    it.stats                      # {"records": ..., "skipped": ..., "batches": ...}

Layout (per process): (train) the global record stream (epochs of the whole split, each
shuffled by (seed, epoch)) cut into global batches; this process takes its block of rows of
each (`records.BatchSlices`), so batches do not depend on the process or worker count; (eval)
records `shard_index::shard_count` -> one *group* per record (a pure function of (seed, global
position): the recipe's stages (`recipes.py`): decode, sample, augment, fbank, masks;
`num_repeats` clips or the eval views of one decoded record; a training group holds a whole
batch slice) -> batching in the worker (a bad record becomes an empty group: skipped,
counted, logged; Mixup/CutMix runs here on the finished batch) -> optional `mp_prefetch`
workers -> a main-process stage that strips the skip counters into `it.stats` and checks the
batch (`batching.py`). Iterator state is grain's plus those counters, so a restored iterator
continues exactly.

Deliberate differences from the original (SPEC 11) live behind switches: eval magnitude
augmentation (`EvalOptions.magnitude_aug`), random long-validation start
(`EvalOptions.random_long_val_start`), real waveform roll (`AudioOptions.roll`), audio mixing
(`LabelOptions.mix_audio`).
"""
from __future__ import annotations

import dataclasses
import logging

import grain
import numpy as np

from hicmae_jax.data.format import schema, split_reader
from hicmae_jax.data.pipeline import recipes, records
from hicmae_jax.data.pipeline.batching import GroupBatchIterDataset, PipelineDataset
from hicmae_jax.data.pipeline.options import (
  AudioOptions,
  AugmentOptions,
  EvalOptions,
  LabelOptions,
  LoaderOptions,
  MaskOptions,
  VideoOptions,
)

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------
# Per-record group functions (run in the read threads / workers; top-level so they pickle).
# ----------------------------------------------------------------------------------------------

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
class _GroupFn:
  """(position, record item) -> the group of the record's examples, by the recipe.

  Training keys a record's randomness by its stream position; evaluation by the record index
  (`by_record`), so results do not depend on the process count. A bad record gives the
  recipe's padding examples (evaluation keeps its rows valid=False; training: none)."""
  seed: int
  recipe: recipes.Recipe
  by_record: bool

  def __call__(self, position: int, item) -> dict:
    index, raw, error, where = item
    if index < 0 and raw is None and error is None:  # padding slot: not a record
      return {"position": position, "records": 0, "skipped": 0,
              "examples": self.recipe.padding()}
    key = (records.TAG_EVAL, index) if self.by_record else (records.TAG_EXAMPLE, position)
    rng = np.random.default_rng([self.seed, *key])
    clip_id = ""
    try:
      if error is not None:
        raise schema.RecordError(error)
      clip = schema.decode_clip(raw)
      clip_id = clip.clip_id
      examples = self.recipe.examples(self.recipe.decode(clip, rng), rng, index)
    except Exception as e:  # noqa: BLE001 - never crash the run on one bad record
      return _skipped_group(position, index, clip_id, f"{type(e).__name__}: {e}",
                            self.recipe.padding(), where=where)
    return {"position": position, "records": 1, "skipped": 0, "examples": examples}


@dataclasses.dataclass(frozen=True)
class _SliceGroupFn:
  """A batch slice [(global position, record item), ...] -> one group of all its examples."""
  group_fn: _GroupFn

  def __call__(self, items: list) -> dict:
    groups = [self.group_fn(g, item) for g, item in items]
    return {"position": items[0][0] if items else -1,
            "records": sum(gr["records"] for gr in groups),
            "skipped": sum(gr["skipped"] for gr in groups),
            "examples": [e for gr in groups for e in gr["examples"]]}


# ----------------------------------------------------------------------------------------------
# Assembly: groups -> batches -> workers -> the main-process iterator.
# ----------------------------------------------------------------------------------------------

def _assemble(groups: grain.MapDataset, recipe: recipes.Recipe, paths: list[str], *,
              seed: int, batch_size: int, loader: LoaderOptions, num_records: int,
              num_batches: int | None) -> PipelineDataset:
  """Training (num_batches None) drops a batch remainder; evaluation pads it."""
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}")
  it_ds = groups.to_iter_dataset(grain.ReadOptions(num_threads=loader.read_threads,
                                                   prefetch_buffer_size=loader.read_buffer_size))
  it_ds = GroupBatchIterDataset(it_ds, batch_size=batch_size, drop_remainder=num_batches is None,
                                seed=seed, batch_transform=recipe.batch_transform)
  if loader.worker_count > 0:
    it_ds = it_ds.mp_prefetch(grain.MultiprocessingOptions(
        num_workers=loader.worker_count, per_worker_buffer_size=loader.worker_buffer_size))
  return PipelineDataset(it_ds, recipe=recipe, paths=paths, seed=seed, batch_size=batch_size,
                         num_records=num_records, num_batches=num_batches, loader=loader)


def _train_dataset(split: split_reader.Split, recipe: recipes.Recipe, *, batch_size: int,
                   seed: int, loader: LoaderOptions) -> PipelineDataset:
  """A repeating training pipeline over `split`; see records.BatchSlices.

  loader.shard_index/shard_count: which block of `shard_count` equal blocks of global-batch
  rows this process fills (train.py derives it from the mesh; default: jax's process
  index/count)."""
  paths = split.paths
  p, c = records.process_slice(loader.shard_index, loader.shard_count)
  total = records.count_records(paths)
  if total < c:
    raise ValueError(f"{split.directory!r} has {total} records, fewer than the {c} processes")
  per_record = recipe.examples_per_record
  if batch_size % per_record:
    if c > 1:
      raise ValueError(
          f"the per-process batch ({batch_size}) must be a multiple of the clips drawn per "
          f"record ({per_record}, data.num_repeats) when several processes share a "
          f"global batch; change global_batch_size or data.num_repeats")
    k = 1
  else:
    k = batch_size // per_record
  slices = records.BatchSlices(records.RecordSource(paths, np.arange(total)), seed=seed,
                               shuffle=True, slice_index=p, slice_count=c,
                               records_per_slice=k, num_epochs=loader.num_epochs)
  groups = grain.MapDataset.source(slices).map(_SliceGroupFn(_GroupFn(seed, recipe, False)))
  # read_buffer_size counts records; a training element is a batch slice of records.
  per_slice = max(1, batch_size // per_record)
  buffer = max(loader.read_threads, -(-loader.read_buffer_size // per_slice))
  return _assemble(groups, recipe, paths, seed=seed, batch_size=batch_size,
                   loader=dataclasses.replace(loader, read_buffer_size=buffer),
                   num_records=total // c, num_batches=None)


# ----------------------------------------------------------------------------------------------
# The three pipelines.
# ----------------------------------------------------------------------------------------------

def _fixed_crop_done_at_prepare(info: schema.DatasetInfo, augment: AugmentOptions
                                ) -> AugmentOptions:
  """The options without the fixed crop when prepare already stored exactly that crop
  (prepare --crop): the stored frames are the crop, applying it again would be skipped with a
  warning (they are smaller than the box) or, worse, crop a crop."""
  stored = info.extra.get("crop")
  if augment.fixed_crop is None or stored is None:
    return augment
  if tuple(stored) == tuple(augment.fixed_crop):
    log.info("pre-training fixed crop rows %d:%d cols %d:%d was applied by prepare "
             "(--crop): the stored %dx%d frames are used as they are", *stored,
             info.frame_width, info.frame_height)
    return dataclasses.replace(augment, fixed_crop=None)
  log.warning("the split was prepared with --crop=%s but the config's fixed_crop is %s: the "
              "fixed crop applies to the stored (already cropped) frames only if they are "
              "large enough", ",".join(map(str, stored)), tuple(augment.fixed_crop))
  return augment


def make_pretrain_dataset(split: str | split_reader.Split, *, batch_size: int, seed: int,
                          video: VideoOptions, audio: AudioOptions, augment: AugmentOptions,
                          masks: MaskOptions, loader: LoaderOptions) -> PipelineDataset:
  """Pre-training batches: video uint8 [B, T, S, S, 3] (with augment.resize_on_device the
  unresized crop at the top left, and video_crop_size int32 [B, 2]: `pixels.batch_video`),
  audio f32 [B, audio_frames, mel] (+ mask_video bool [B, (T/tubelet)(S/patch)^2],
  mask_audio bool [B, (A/ap)(mel/ap)] with masks.draw, checked against the model's counts as
  each batch leaves the pipeline).

  Per clip (the original's VideoMAE-style sampler): num_frames at sampling_rate from a random
  start, the last reachable frame repeated past the end; the fixed crop (applied only when
  the stored frames are large enough; skipped when prepare stored that very crop, --crop);
  multi-scale crop resized to input_size; no flip; normalisation on the device. Audio: the
  clip's frame span (AudioOptions.span); waveform augmentation; fbank. augment.num_repeats
  clips are drawn from each decoded record (repeated sampling: they follow each other in the
  stream). split: a folder, or the Split the caller opened already (its DatasetInfo is not
  read again).
  """
  split = split_reader.open_split(split)
  augment = _fixed_crop_done_at_prepare(split.info, augment)
  recipe = recipes.PretrainRecipe(video, audio, augment, masks)
  return _train_dataset(split, recipe, batch_size=batch_size, seed=seed, loader=loader)


def make_finetune_train_dataset(split: str | split_reader.Split, *, batch_size: int, seed: int,
                                video: VideoOptions, audio: AudioOptions,
                                augment: AugmentOptions, labels: LabelOptions,
                                loader: LoaderOptions) -> PipelineDataset:
  """Fine-tuning train batches: video f32 [B, T, S, S, 3], audio f32 [B, A, mel], label i32 [B],
  targets f32 [B, C] (classification: smoothed one-hot mixed by Mixup/CutMix) or [B, K]
  (regression: the record's targets, no mixing).

  Per clip, as the original's training: the train sampler (SPEC 2a validation sampler with a
  random window end), PIL bilinear resize to input_size square, RandAugment (the same ops on
  every frame), normalisation, one random resized crop for the clip, horizontal flip, random
  erasing (one region for all frames, timm 'pixel' mode); waveform augmentation. The task is
  labels.task or 'regression' when the split has targets; num_classes 0 = the split's count.
  Set mixup_alpha = cutmix_alpha = 0 for smoothing only. split: as make_pretrain_dataset's.
  """
  split = split_reader.open_split(split)
  recipe = recipes.FinetuneRecipe.for_split(split.info, split.directory, video, audio, augment,
                                            labels)
  return _train_dataset(split, recipe, batch_size=batch_size, seed=seed, loader=loader)


def make_eval_dataset(split: str | split_reader.Split, *, batch_size: int, seed: int,
                      video: VideoOptions, audio: AudioOptions, views: EvalOptions,
                      labels: LabelOptions, loader: LoaderOptions) -> PipelineDataset:
  """Eval batches, one finite pass: video, audio, label i32 [B] (+ targets f32 [B, K] for
  regression), clip_index i32 [B] (record index in the split), view_index i32 [B],
  valid bool [B].

  views.mode 'val': one centre view (SPEC 2a validation sampling; clips over
  num_frames*rate frames take the middle window unless random_long_val_start reproduces the
  original's random one, seeded by (seed, clip)). 'test': SPEC 2a exactly, num_segments x
  num_crops views, view_index = segment * num_crops + crop. Frames: PIL bilinear to exactly
  input_size square. Audio: span by relative position; magnitude scaling only with
  views.magnitude_aug (the original's behaviour). Every process gets ceil(N / shard_count)
  clip slots (the last ones padding) so all processes run the same number of batches
  (`num_batches`); padding and bad records come as rows with valid=False, clip_index=-1,
  view_index=-1.
  """
  split = split_reader.open_split(split)
  info, paths = split.info, split.paths
  p, c = records.process_slice(loader.shard_index, loader.shard_count)
  total = records.count_records(paths)
  local = np.arange(total)[p::c]
  slots = -(-total // c)
  indices = np.concatenate([local, np.full(slots - local.shape[0], -1, np.int64)])
  recipe = recipes.EvalRecipe.for_split(info, video, audio, views, labels)
  per_record = recipe.examples_per_record
  # Workers each batch (and pad) their own slice i::W of the clip slots.
  workers = max(loader.worker_count, 1)
  num_batches = sum(-(-len(range(w, slots, workers)) * per_record // batch_size)
                    for w in range(workers))
  groups = grain.MapDataset.source(records.RecordSource(paths, indices)).map_with_index(
      _GroupFn(seed, recipe, True))
  return _assemble(groups, recipe, paths, seed=seed, batch_size=batch_size, loader=loader,
                   num_records=int(local.shape[0]), num_batches=num_batches)


# ----------------------------------------------------------------------------------------------
# From a config: the options built once, then the pipeline.
# ----------------------------------------------------------------------------------------------

def train_dataset_from_config(config, split: str | split_reader.Split, *, batch_size: int,
                              seed: int,
                              shard: tuple[int | None, int | None] = (None, None),
                              ) -> PipelineDataset:
  """The training pipeline of config.kind (pre-training, else fine-tuning) over `split` (a
  folder or an opened Split); shard = (block, count) of global-batch rows this process fills
  (default: jax's)."""
  video, audio = VideoOptions.from_config(config), AudioOptions.from_config(config)
  augment = AugmentOptions.from_config(config)
  loader = LoaderOptions.from_config(config, shard_index=shard[0], shard_count=shard[1])
  if config.kind == "pretrain":
    return make_pretrain_dataset(split, batch_size=batch_size, seed=seed, video=video,
                                 audio=audio, augment=augment,
                                 masks=MaskOptions.from_config(config), loader=loader)
  return make_finetune_train_dataset(split, batch_size=batch_size, seed=seed, video=video,
                                     audio=audio, augment=augment,
                                     labels=LabelOptions.from_config(config), loader=loader)


def eval_dataset_from_config(config, split_dir: str, *, mode: str, batch_size: int,
                             shard: tuple[int | None, int | None] = (None, None),
                             ) -> PipelineDataset:
  """The evaluation pipeline ('val' or 'test' views) over split_dir, seeded by config.seed.
  It never stops on corrupt records: they come as invalid rows and are reported."""
  loader = dataclasses.replace(
      LoaderOptions.from_config(config, shard_index=shard[0], shard_count=shard[1]),
      max_skip_fraction=None)
  return make_eval_dataset(split_dir, batch_size=batch_size, seed=config.seed,
                           video=VideoOptions.from_config(config),
                           audio=AudioOptions.from_config(config),
                           views=EvalOptions.from_config(config, mode),
                           labels=LabelOptions.from_config(config), loader=loader)
