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
from typing import Sequence

from absl import app
from absl import flags

from hicmae_jax.data import stage_timing

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


def _flag_settings() -> stage_timing.StageSettings:
  return stage_timing.StageSettings(pipeline=_PIPELINE.value, num_frames=_NUM_FRAMES.value,
                       sampling_rate=_SAMPLING_RATE.value, input_size=_INPUT_SIZE.value,
                       fixed_crop=_fixed_crop(), batch_size=_BATCH_SIZE.value, seed=_SEED.value)


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


def main(argv: Sequence[str]) -> None:
  del argv
  print(f"pipeline={_PIPELINE.value} split={_SPLIT_DIR.value} batch={_BATCH_SIZE.value} "
        f"frames={_NUM_FRAMES.value}x{_SAMPLING_RATE.value} input={_INPUT_SIZE.value} "
        f"read_threads={_READ_THREADS.value}")
  stages = stage_timing.time_stages(_SPLIT_DIR.value, _flag_settings(), _STAGE_RECORDS.value)
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
