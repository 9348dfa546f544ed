"""Input pipeline throughput of a config: time per stage on single records, then clips/s per
grain worker count.

  python -m hicmae_jax.data.pipeline_benchmark --config=configs/finetune_crema_d.py \
      --split_dir=/tmp/hicmae_synth/train [--eval_mode=test] --worker_counts=0,1,2 \
      --num_batches=20 --batch_size=8 [--config.data.read_threads=4]

The pipeline is the config's training pipeline (pre-training or fine-tuning, by config.kind),
or its evaluation pipeline with --eval_mode=val|test; every setting comes from the config
(override with --config.<key>=<value>). Stages (per record, in this process, no grain): read
(ArrayRecord lookup), decode (msgpack record + the sampled JPEG frames), augment (crops/resize,
RandAugment, erasing, normalisation), fbank (audio span, waveform augmentation, Kaldi fbank),
mask (pre-training masks in the pipeline) or mixup (fine-tuning, one batch's cost divided by
its size). The pipeline rate counts examples (clips; for --eval_mode=test, views) per second
after one warm-up batch, which absorbs worker start-up.
"""
from __future__ import annotations

import time
from typing import Any, Sequence

from absl import flags
from ml_collections import config_flags

from hicmae_jax import cli
from hicmae_jax.data.pipeline import factories as pipeline, stage_timing

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.")
_SPLIT_DIR = flags.DEFINE_string("split_dir", None, "A prepared split folder.")
_EVAL_MODE = flags.DEFINE_enum("eval_mode", "", ["", "val", "test"],
                               "Time the evaluation pipeline in this mode ('' = training).")
_WORKER_COUNTS = flags.DEFINE_list("worker_counts", ["0", "1", "2"], "grain worker counts.")
_NUM_BATCHES = flags.DEFINE_integer("num_batches", 20, "Batches timed per worker count.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 8, "Batch size (per process).")
_STAGE_RECORDS = flags.DEFINE_integer("stage_records", 8, "Records timed per stage.")
flags.mark_flags_as_required(["config", "split_dir"])


def make_dataset(config, split_dir: str, eval_mode: str, batch_size: int, worker_count: int):
  """The config's pipeline on one process with `worker_count` grain workers."""
  config = config.copy_and_resolve_references()
  with config.unlocked():
    config.data.worker_count = worker_count
  if eval_mode:
    return pipeline.eval_dataset_from_config(config, split_dir, mode=eval_mode,
                                             batch_size=batch_size, shard=(0, 1))
  return pipeline.train_dataset_from_config(config, split_dir, batch_size=batch_size,
                                            seed=config.seed, shard=(0, 1))


def time_pipeline(ds, num_batches: int) -> tuple[float, float]:
  """(examples per second, seconds to the first batch) of a pipeline."""
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


def run(config, split_dir: str, *, eval_mode: str, worker_counts: Sequence[int],
        num_batches: int, batch_size: int, stage_records: int) -> dict[str, Any]:
  """{"stage_ms": {stage: ms per record}, "rates": {workers: (examples/s, startup s)}}."""
  stages = stage_timing.time_stages(make_dataset(config, split_dir, eval_mode, batch_size, 0),
                                    stage_records)
  rates = {w: time_pipeline(make_dataset(config, split_dir, eval_mode, batch_size, w),
                            num_batches)
           for w in worker_counts}
  return {"stage_ms": stages, "rates": rates}


def main(argv: Sequence[str]) -> None:
  del argv
  config = _CONFIG.value
  print(f"pipeline={_EVAL_MODE.value or config.kind} split={_SPLIT_DIR.value} "
        f"batch={_BATCH_SIZE.value} frames={config.model.num_frames}x"
        f"{config.data.sampling_rate} input={config.model.input_size} "
        f"read_threads={config.data.read_threads}")
  report = run(config, _SPLIT_DIR.value, eval_mode=_EVAL_MODE.value,
               worker_counts=[int(v) for v in _WORKER_COUNTS.value],
               num_batches=_NUM_BATCHES.value, batch_size=_BATCH_SIZE.value,
               stage_records=_STAGE_RECORDS.value)
  stages = report["stage_ms"]
  total = sum(stages.values())
  print("per-record stages (ms, one core): " + ", ".join(
      f"{k} {v:.2f}" for k, v in stages.items()) + f" | total {total:.2f} -> "
        f"{1e3 / max(total, 1e-9):.1f} records/s")
  unit = "views/s" if _EVAL_MODE.value == "test" else "clips/s"
  for w, (rate, startup) in report["rates"].items():
    print(f"worker_count={w}: {rate:.1f} {unit} (first batch after {startup:.1f} s)")


if __name__ == "__main__":
  cli.run(main)
