"""Input pipeline throughput: clips/s per worker count, and time per stage on single records.

  python -m hicmae_jax.data.benchmark --split_dir=/tmp/hicmae_synth/train \
      --pipeline=finetune --worker_counts=0,1,2 --num_batches=20 --batch_size=8

Stages (per record, in this process, no grain): read (ArrayRecord lookup), decode (msgpack
record + the sampled JPEG frames), augment (sampling, crops/resize, RandAugment, erasing,
normalisation), fbank (audio span, waveform augmentation, Kaldi fbank), mask (pre-training
masks) or mixup (fine-tuning, one batch's cost divided by its size). The pipeline rate counts
examples (clips; for --pipeline=eval --eval_mode=test, views) per second after one warm-up
batch, which absorbs worker start-up.
"""
from __future__ import annotations

import time
from typing import Callable, Sequence

from absl import app
from absl import flags
import numpy as np

_SPLIT_DIR = flags.DEFINE_string("split_dir", None, "A prepared split folder.", required=True)
_PIPELINE = flags.DEFINE_enum("pipeline", "finetune", ["pretrain", "finetune", "eval"],
                              "Which pipeline to time.")
_WORKER_COUNTS = flags.DEFINE_list("worker_counts", ["0", "1", "2"], "grain worker counts.")
_NUM_BATCHES = flags.DEFINE_integer("num_batches", 20, "Batches timed per worker count.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 8, "Batch size (per process).")
_NUM_FRAMES = flags.DEFINE_integer("num_frames", 16, "Frames per clip.")
_SAMPLING_RATE = flags.DEFINE_integer("sampling_rate", 4, "Temporal stride.")
_INPUT_SIZE = flags.DEFINE_integer("input_size", 160, "Model input side.")
_FIXED_CROP = flags.DEFINE_string("fixed_crop", "0,160,32,192",
                                  "Pre-training fixed crop r0,r1,c0,c1, or 'none'.")
_EVAL_MODE = flags.DEFINE_enum("eval_mode", "test", ["val", "test"], "Eval pipeline mode.")
_READ_THREADS = flags.DEFINE_integer("read_threads", 2, "Read/map threads per process.")
_STAGE_RECORDS = flags.DEFINE_integer("stage_records", 8, "Records timed per stage.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed.")


def _fixed_crop():
  if _FIXED_CROP.value.lower() == "none":
    return None
  return tuple(int(v) for v in _FIXED_CROP.value.split(","))


def _make_dataset(worker_count: int):
  from hicmae_jax.data import pipeline as P

  common = dict(batch_size=_BATCH_SIZE.value, num_frames=_NUM_FRAMES.value,
                sampling_rate=_SAMPLING_RATE.value, input_size=_INPUT_SIZE.value,
                shard_index=0, shard_count=1, worker_count=worker_count,
                read_threads=_READ_THREADS.value)
  if _PIPELINE.value == "pretrain":
    return P.make_pretrain_dataset(_SPLIT_DIR.value, seed=_SEED.value, draw_masks=True,
                                   fixed_crop=_fixed_crop(), **common)
  if _PIPELINE.value == "finetune":
    return P.make_finetune_train_dataset(_SPLIT_DIR.value, seed=_SEED.value, **common)
  return P.make_eval_dataset(_SPLIT_DIR.value, mode=_EVAL_MODE.value, **common)


def time_pipeline(worker_count: int, num_batches: int) -> tuple[float, float]:
  """(examples per second, seconds to the first batch) for one worker count."""
  ds = _make_dataset(worker_count)
  it = iter(ds)
  t0 = time.perf_counter()
  next(it)
  startup = time.perf_counter() - t0
  t0 = time.perf_counter()
  done = 0
  for _ in range(num_batches):
    try:
      next(it)
    except StopIteration:  # a finite eval split can be shorter than num_batches
      break
    done += 1
  elapsed = time.perf_counter() - t0
  it.close()
  return done * ds.batch_size / max(elapsed, 1e-9), startup


def _stage_fns() -> dict[str, Callable]:
  """Per-pipeline stage functions: decode(clip, rng) -> state, then augment/fbank/extra."""
  from hicmae_jax.data import pipeline as P
  from hicmae_jax.data import schema
  from hicmae_jax.data import transforms as T

  nf, rate, size = _NUM_FRAMES.value, _SAMPLING_RATE.value, _INPUT_SIZE.value
  opts = P.AudioOptions()
  limit = P.whole_file_limit(opts)

  def audio_span(clip, f0, f1):
    wave = schema.audio_to_float(clip.audio)
    a0, a1 = T.relative_audio_span(f0, f1, clip.num_frames, wave.shape[0])
    return T.cut_audio(wave, a0, a1, whole_if_shorter_than=limit)

  def fbank(state, rng, augment=True):
    return P.audio_features(audio_span(state["clip"], *state["span"]), rng, opts,
                            augment=augment)

  if _PIPELINE.value == "pretrain":
    def decode(raw, rng):
      clip = schema.decode_clip(raw)
      ids, span = T.pretrain_frame_indices(clip.num_frames, rng, num_frames=nf,
                                           sampling_rate=rate)
      return {"clip": clip, "ids": ids, "span": span,
              "images": T.decode_frames(clip.frames, ids)}

    def augment(state, rng):
      frames = T.fixed_crop(T.stack_frames(state["images"], state["ids"]), _fixed_crop())
      return T.normalize(T.multi_scale_crop(frames, rng, output_size=size))

    def extra(state, rng):
      T.tube_mask(rng, grid=(nf // 2, size // 16, size // 16), mask_ratio=0.9)
      T.random_mask(rng, num_patches=128, mask_ratio=0.8)

    return {"decode": decode, "augment": augment, "fbank": fbank, "mask": extra}

  if _PIPELINE.value == "finetune":
    ra = T.parse_rand_augment("rand-m7-n4-mstd0.5-inc1")

    def decode(raw, rng):
      clip = schema.decode_clip(raw)
      ids, span = T.segment_frame_indices(clip.num_frames, num_frames=nf, sampling_rate=rate,
                                          rng=rng)
      return {"clip": clip, "ids": ids, "span": span,
              "images": T.decode_frames(clip.frames, ids)}

    def augment(state, rng):
      unique = sorted(state["images"])
      resized = [T.pil_resize(state["images"][i], size, size) for i in unique]
      aug = T.rand_augment(resized, rng, **ra)
      where = {i: k for k, i in enumerate(unique)}
      video = T.normalize(aug[[where[int(i)] for i in state["ids"]]])
      video = T.horizontal_flip(T.random_resized_crop(video, rng, output_size=size), rng)
      return T.random_erasing(video, rng)

    def extra(state, rng):
      b = _BATCH_SIZE.value
      batch = {"video": np.zeros((b, nf, size, size, 3), np.float32),
               "audio": np.zeros((b, 256, 128), np.float32), "label": np.zeros(b, np.int32)}
      T.mixup_cutmix(batch, rng, num_classes=4)
      return b  # the caller divides by the batch size

    return {"decode": decode, "augment": augment, "fbank": fbank, "mixup": extra}

  def decode(raw, rng):
    clip = schema.decode_clip(raw)
    segments = T.test_frame_indices(clip.num_frames, num_frames=nf, sampling_rate=rate)
    ids = np.concatenate([s[0] for s in segments])
    return {"clip": clip, "segments": segments, "span": segments[0][1],
            "images": T.decode_frames(clip.frames, ids)}

  def augment(state, rng):
    resized = {i: T.pil_resize(img, size, size) for i, img in state["images"].items()}
    return [T.normalize(T.stack_frames(resized, ids)) for ids, _ in state["segments"]]

  def eval_fbank(state, rng):
    for _, span in state["segments"]:
      P.audio_features(audio_span(state["clip"], *span), None, opts, augment=False)

  return {"decode": decode, "augment": augment, "fbank": eval_fbank}


def time_stages(num_records: int) -> dict[str, float]:
  """Mean milliseconds per record for each stage."""
  import grain
  from hicmae_jax.data import schema

  info = schema.DatasetInfo.load(_SPLIT_DIR.value)
  source = grain.sources.ArrayRecordDataSource(info.shard_paths(_SPLIT_DIR.value))
  fns = _stage_fns()
  totals: dict[str, float] = {"read": 0.0, **{k: 0.0 for k in fns}}
  count = min(num_records, len(source))
  # Record 0 runs twice, the first time untimed: imports, mel banks and caches warm up.
  for i in [0] + list(range(count)):
    rng = np.random.default_rng([_SEED.value, i])
    if i == 0 and not totals.get("_warm"):
      totals["_warm"] = 1.0
      state = fns["decode"](source[0], rng)
      for name, fn in fns.items():
        if name != "decode":
          fn(state, rng)
      continue
    t0 = time.perf_counter()
    raw = source[i]
    totals["read"] += time.perf_counter() - t0
    state = None
    for name, fn in fns.items():
      t0 = time.perf_counter()
      out = fn(raw, rng) if name == "decode" else fn(state, rng)
      dt = time.perf_counter() - t0
      if name == "decode":
        state = out
      totals[name] += dt / out if name == "mixup" else dt
  totals.pop("_warm")
  return {k: 1e3 * v / max(count, 1) for k, v in totals.items()}


def main(argv: Sequence[str]) -> None:
  del argv
  print(f"pipeline={_PIPELINE.value} split={_SPLIT_DIR.value} batch={_BATCH_SIZE.value} "
        f"frames={_NUM_FRAMES.value}x{_SAMPLING_RATE.value} input={_INPUT_SIZE.value} "
        f"read_threads={_READ_THREADS.value}")
  stages = time_stages(_STAGE_RECORDS.value)
  total = sum(stages.values())
  print("per-record stages (ms, one core): " + ", ".join(
      f"{k} {v:.2f}" for k, v in stages.items()) + f" | total {total:.2f} -> "
        f"{1e3 / max(total, 1e-9):.1f} records/s")
  for w in (int(v) for v in _WORKER_COUNTS.value):
    rate, startup = time_pipeline(w, _NUM_BATCHES.value)
    unit = "views/s" if _PIPELINE.value == "eval" and _EVAL_MODE.value == "test" else "clips/s"
    print(f"worker_count={w}: {rate:.1f} {unit} (first batch after {startup:.1f} s)")


if __name__ == "__main__":
  app.run(main)
