"""Benchmarks the training step, the eval forward and the input pipeline; prints a table and
writes JSON.

  python -m hicmae_jax.tools.benchmark --config=configs/pretrain_base.py --what=step \
      --batch_size=2 [--steps=20] [--peak_tflops=989] [--find_max_batch] [--memory_batch=40] \
      [--out=bench.json]
  python -m hicmae_jax.tools.benchmark --config=configs/demo.py:pretrain --what=all --split_dir=...
  python -m hicmae_jax.tools.benchmark --config=configs/pretrain_base.py --what=step \
      --against=original --torch_python=~/.cache/hicmae_jax/torch-venv/bin/python [--rounds=3]

Figures: compile time, steady-state step time (median after warm-up), clips/s, model FLOPs per
clip (analytic, from the config; cross-checked with XLA's cost analysis), achieved FLOP/s and MFU
(against --peak_tflops or the known peak of the detected device), compiled peak memory, the
largest batch that fits (optional; --memory_limit_gib where the device reports no limit), the
compiled peak memory at another batch with and without rematerialisation (--memory_batch),
eval forward clips/s, the input pipeline's time per stage (read, decode, augment, fbank, mask or
mixup) on one core and clips/s per grain worker count, and how many input processes / cores one
device needs at the measured step rate. With --against=original the step is timed in rounds
alternated with the PyTorch stand-in of the original's step (`tools/side_by_side.py`) run in
--torch_python, and the per-round times and ratios are printed with the machine.
"""
from __future__ import annotations

import json
import statistics
import sys
import time
from typing import Any

import absl.logging
import jax
import numpy as np
from absl import flags as absl_flags
from flax import nnx

from hicmae_jax import (
  cli,
  compiled_report,
  evaluate,
  experiments,
  host_info,
  masking,
  runtime,
  sharding,
  train,
)
from hicmae_jax.data.pipeline import stage_timing
from hicmae_jax.models import params as params_lib
from hicmae_jax.models.classifier import FinetuneModel
from hicmae_jax.models.options import check_attention_impl, dtype_from_name, geometry
from hicmae_jax.tools import side_by_side

# Dense bf16 peaks (TFLOP/s) of common accelerators, by substring of jax's device_kind.
KNOWN_PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "V100": 125.0, "L4": 121.0,
                     "TPU v4": 275.0, "TPU v5 lite": 197.0, "TPU v5e": 197.0, "TPU v5p": 459.0,
                     "TPU v6": 918.0}
# The step is input-bound when the step fed by its pipeline is more than this fraction slower
# than the same step on a fixed batch (the margin absorbs timing noise of a few steps).
INPUT_BOUND_MARGIN = 0.1
MAX_SEARCHED_BATCH = 4096  # --find_max_batch stops there: far past any device's memory at Base


# ------------------------------------------------------------------------- analytic FLOPs --

def _block(n: int, d: int, mlp: float) -> float:
  """Forward FLOPs of one Block on n tokens of width d (2 per multiply-add)."""
  return 2 * n * d * 3 * d + 4 * n * n * d + 2 * n * d * d + 4 * n * d * int(d * mlp)


def _csblock(n: int, m: int, d: int, c: int, mlp: float) -> float:
  """Cross+self block: n queries, m context tokens of width c."""
  cross = 2 * n * d * d + 2 * m * c * 2 * d + 4 * n * m * d + 2 * n * d * d
  return cross + _block(n, d, mlp)


def pretrain_flops_per_clip(m) -> float:
  """Forward FLOPs of the pre-training model for one clip (matmuls only)."""
  geo = geometry(m)
  t, h, w = geo.video_grid
  nv = geo.num_video_tokens
  na = geo.num_audio_tokens
  kv = nv - masking.num_masked(h * w, m.video_mask_ratio) * t
  ka = na - masking.num_masked(na, m.audio_mask_ratio)
  d, dd, r = m.dim, m.decoder_dim, m.mlp_ratio
  levels = len(m.hierarchy_layers)
  f = 2 * kv * geo.video_patch_dim * d + 2 * ka * geo.audio_patch_dim * d
  f += m.video_depth * _block(kv, d, r) + m.audio_depth * _block(ka, d, r)
  f += m.fusion_depth * (_csblock(kv, ka, d, d, r) + _csblock(ka, kv, d, d, r))
  for n_all, k, out in ((nv, kv, geo.video_patch_dim), (na, ka, geo.audio_patch_dim)):
    f += (1 + levels) * 2 * k * d * dd                       # encoder_to_decoder
    f += _block(n_all, dd, r) + (m.decoder_depth - 1) * _csblock(n_all, k, dd, dd, r)
    f += 2 * (n_all - k) * dd * out                          # head on masked tokens
  return float(f)


def finetune_flops_per_clip(m) -> float:
  geo = geometry(m)
  nv, na, d, r = geo.num_video_tokens, geo.num_audio_tokens, m.dim, m.mlp_ratio
  f = 2 * nv * geo.video_patch_dim * d + 2 * na * geo.audio_patch_dim * d
  f += m.video_depth * _block(nv, d, r) + m.audio_depth * _block(na, d, r)
  f += m.fusion_depth * (_csblock(nv, na, d, d, r) + _csblock(na, nv, d, d, r))
  return float(f + 2 * 4 * d * max(m.num_classes, m.num_targets, 1))


# ---------------------------------------------------------------------------- measurements --

def _synthetic_batch(config, batch: int, rng, uint8_video: bool | None = None):
  """A batch as the config's pipeline sends it: uint8 frames for pre-training and evaluation
  (normalised on the device), float32 for fine-tuning (normalised before its crop/erasing)."""
  m = config.model
  shape = (batch, m.num_frames, m.input_size, m.input_size, 3)
  if uint8_video is None:
    uint8_video = config.kind == "pretrain"
  out = {"video": (rng.integers(0, 256, size=shape).astype(np.uint8) if uint8_video
                   else rng.normal(size=shape).astype(np.float32)),
         "audio": rng.normal(size=(batch, m.audio_frames, m.audio_mel_bins)).astype(np.float32)}
  if config.kind != "pretrain":
    out["label"] = rng.integers(0, max(m.num_classes, 1), size=batch).astype(np.int32)
  return out


def _peak_flops(flag_tflops: float) -> tuple[float | None, str]:
  if flag_tflops > 0:
    return flag_tflops * 1e12, "flag"
  kind = jax.devices()[0].device_kind
  for name, tf in KNOWN_PEAK_TFLOPS.items():
    if name.lower() in kind.lower():
      return tf * 1e12 * jax.device_count(), f"known peak of {kind}"
  return None, f"unknown for {kind}: pass --peak_tflops"


def _compiled_memory(compiled) -> int | None:
  try:
    ma = compiled.memory_analysis()
  except Exception:  # not every backend implements it
    return None
  if ma is None:
    return None
  return int(ma.temp_size_in_bytes + ma.argument_size_in_bytes + ma.output_size_in_bytes
             - ma.alias_size_in_bytes)


def _xla_flops(compiled) -> float | None:
  try:
    cost = compiled.cost_analysis()
  except Exception:
    return None
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else None
  return float(cost["flops"]) if cost and "flops" in cost else None


def time_steps(compiled, state, data, steps: int, warmup: int) -> tuple[list[float], Any]:
  """(seconds of each of `steps` steps after `warmup` untimed ones, the state after them)."""
  times = []
  for i in range(warmup + steps):
    t = time.perf_counter()
    state, metrics = compiled(state, data)
    jax.block_until_ready(metrics["loss"])
    if i >= warmup:
      times.append(time.perf_counter() - t)
  return times, state


def bench_step(config, batch: int, steps: int, warmup: int, peak_tflops: float) -> dict[str, Any]:
  """Compile + time the full training step (forward, backward, AdamW) at a global batch."""

  compiled, state, data, compile_s = compiled_step(config, batch)
  times, state = time_steps(compiled, state, data, steps, warmup)
  median = statistics.median(times)
  per_clip = (pretrain_flops_per_clip(config.model) if config.kind == "pretrain"
              else finetune_flops_per_clip(config.model))
  train_flops = 3 * per_clip  # forward + backward (2x)
  xla = _xla_flops(compiled)
  peak, peak_src = _peak_flops(peak_tflops)
  achieved = train_flops * batch / median
  memory = _compiled_memory(compiled)
  return {
      "batch": batch, "compile_s": round(compile_s, 2), "step_s_median": round(median, 4),
      "step_s_min": round(min(times), 4), "clips_per_s": round(batch / median, 2),
      "model_gflops_per_clip_train": round(train_flops / 1e9, 6),
      "xla_gflops_per_clip_train": round(xla / batch / 1e9, 6) if xla else None,
      "achieved_tflops": round(achieved / 1e12, 6),
      "mfu": round(achieved / peak, 4) if peak else None, "peak_source": peak_src,
      "peak_memory_gib": round(memory / 2**30, 3) if memory is not None else None,
      "peak_memory_bytes": memory,
  }


def bench_side_by_side(config, a: absl_flags.FlagValues) -> dict[str, Any]:
  """Our step compiled once, then --rounds rounds of (--steps of ours, one stand-in run of
  --steps after --warmup in --torch_python); medians per round and their ratio."""
  compiled, state, data, compile_s = compiled_step(config, a.batch_size)
  _, state = time_steps(compiled, state, data, 0, a.warmup)
  held = {"state": state}
  standin: dict[str, Any] = {}

  def ours() -> float:
    times, held["state"] = time_steps(compiled, held["state"], data, a.steps, 0)
    return statistics.median(times)

  def theirs() -> float:
    standin.update(side_by_side.run_standin(a.torch_python, config.model.size, a.batch_size,
                                            a.steps, a.warmup))
    return standin["median_s"]

  rows = side_by_side.alternate(ours, theirs, a.rounds)
  return {"compile_s": round(compile_s, 2), "batch": a.batch_size, "steps": a.steps,
          "rows": rows, "summary": side_by_side.summarize(rows),
          "standin": {k: standin[k] for k in ("what", "torch", "threads", "cpu_capability",
                                              "parameters") if k in standin}}


def bench_eval(config, batch: int, steps: int, warmup: int) -> dict[str, Any]:

  with config.unlocked():
    config.kind = "finetune"
    config.model.num_classes = config.model.num_classes or 6
  mesh = sharding.make_mesh(config.mesh)
  model = FinetuneModel(config.model, rngs=nnx.Rngs(0))
  view = params_lib.ParamsView(model)
  params = view.flat(model)
  predict = evaluate.make_predict_fn(view, mesh)
  host = _synthetic_batch(config, batch, np.random.default_rng(0), uint8_video=True)
  data = sharding.global_batch({k: host[k] for k in ("video", "audio")}, mesh)
  times = []
  for i in range(warmup + steps):
    t = time.perf_counter()
    jax.block_until_ready(predict(params, data["video"], data["audio"]))
    if i >= warmup:
      times.append(time.perf_counter() - t)
  median = statistics.median(times)
  return {"batch": batch, "forward_s_median": round(median, 4),
          "clips_per_s": round(batch / median, 2)}


def bench_pipeline(config, split_dir: str, worker_counts, num_batches: int, batch: int,
                   stage_records: int) -> dict[str, Any]:
  """The config's training pipeline: ms per record for each stage on one core, then clips/s
  for each grain worker count (after one warm-up batch, which absorbs worker start-up)."""
  with config.unlocked():
    config.global_batch_size = batch
    config.data.train_dir = split_dir
  stages = stage_timing.time_stages(train.train_dataset(config, batch, 0), stage_records)
  total_ms = sum(stages.values())
  rates, per_worker = {}, {}
  for wc in worker_counts:
    with config.unlocked():
      config.data.worker_count = wc
    ds = train.train_dataset(config, batch, 0)
    it = iter(ds)
    next(it)
    t = time.perf_counter()
    for _ in range(num_batches):
      next(it)
    rates[str(wc)] = round(num_batches * batch / (time.perf_counter() - t), 2)
    per_worker[str(wc)] = round(rates[str(wc)] / max(wc, 1), 2)
    if hasattr(it, "close"):
      it.close()
  return {"stage_ms_per_record": {k: round(v, 3) for k, v in stages.items()},
          "stages_records_per_s_one_core": round(1e3 / max(total_ms, 1e-9), 2),
          "clips_per_s_by_workers": rates, "clips_per_s_per_worker": per_worker,
          "batch": batch}


def bench_step_with_input(config, split_dir: str, batch: int, steps: int,
                          warmup: int) -> dict[str, Any]:
  """The training step fed by the config's own pipeline (in this process, worker_count 0, as
  the trainer's loop: next batch, then dispatch the step) against the same compiled step on one
  fixed batch from that pipeline: what the input costs the step on this machine, and whether
  the step is input-bound (more than INPUT_BOUND_MARGIN slower with its input)."""
  with config.unlocked():
    config.global_batch_size = batch
    config.data.train_dir = split_dir
    config.data.worker_count = 0
  mesh = sharding.make_mesh(config.mesh)
  view, tx, state, state_sh, _ = train.init_state(config, mesh, 1000, 100)
  step = train.make_train_step(config, view, tx, state_sh, mesh)
  it = iter(train.train_dataset(config, batch, 0))
  fixed = sharding.global_batch(next(it), mesh)
  bytes_video = int(fixed["video"].nbytes)
  compiled = step.lower(state, fixed).compile()
  timed = {}
  for name in ("fixed_batch", "with_input"):
    for _ in range(warmup):
      state, metrics = compiled(state, fixed)
    jax.block_until_ready(metrics["loss"])
    t = time.perf_counter()
    for _ in range(steps):
      data = fixed if name == "fixed_batch" else sharding.global_batch(next(it), mesh)
      state, metrics = compiled(state, data)
    jax.block_until_ready(metrics["loss"])
    timed[name] = (time.perf_counter() - t) / steps
  if hasattr(it, "close"):
    it.close()
  return {"batch": batch, "video_dtype": str(fixed["video"].dtype),
          "video_bytes_per_batch": bytes_video,
          "step_s_fixed_batch": round(timed["fixed_batch"], 4),
          "step_s_with_input": round(timed["with_input"], 4),
          "input_overhead_s": round(timed["with_input"] - timed["fixed_batch"], 4),
          "input_bound": timed["with_input"] > (1 + INPUT_BOUND_MARGIN) * timed["fixed_batch"]}


def load_experiment(spec: str):
  """The experiment config of `config file[:arg]`; the demo's nested config gives its
  pre-training run unless the arg names another."""
  config = experiments.load_config_file(spec)
  if experiments.nested_experiments(config):
    config = experiments.experiment_for_kind(config, spec.partition(":")[2] or "pretrain")
  return config


def compiled_step(config, batch: int, compiler_options: dict[str, str] | None = None):
  """(compiled training step, its initial state, a synthetic device batch, seconds spent
  lowering and compiling) at a global batch; `compiler_options` replace the step's own XLA
  options (sharding.compiler_options) when given."""

  with config.unlocked():
    config.global_batch_size = batch
  mesh = sharding.make_mesh(config.mesh)
  view, tx, state, state_sh, _ = train.init_state(config, mesh, 1000, 100)
  step = train.make_train_step(config, view, tx, state_sh, mesh)
  data = sharding.global_batch(_synthetic_batch(config, batch, np.random.default_rng(0)), mesh)
  t0 = time.perf_counter()
  lowered = step.lower(state, data)
  compiled = (lowered.compile(compiler_options=compiler_options) if compiler_options
              else lowered.compile())
  return compiled, state, data, time.perf_counter() - t0


def compiled_step_memory(config, batch: int) -> int | None:
  """Peak device memory (bytes, all devices) of the compiled training step at a global batch;
  compiles only, so it works for batches that would not run here."""
  return _compiled_memory(compiled_step(config, batch)[0])


def memory_at_batch(config, batch: int) -> dict[str, Any]:
  """Compiled peak memory at `batch` without and with rematerialisation (model.remat)."""
  out: dict[str, Any] = {"batch": batch}
  for remat in (False, True):
    cfg = config.copy_and_resolve_references()
    with cfg.unlocked():
      cfg.model.remat = remat
    mem = compiled_step_memory(cfg, batch)
    out["peak_memory_gib_remat" if remat else "peak_memory_gib"] = (
        round(mem / 2**30, 3) if mem is not None else None)
  return out


def find_max_batch(config, start: int, limit_bytes: int | None = None,
                   known: dict[int, int] | None = None) -> tuple[int | None, dict[str, int]]:
  """(the largest global batch, a multiple of the device count, whose compiled step fits,
  {str(batch): compiled peak bytes, all devices} of every batch looked at). The budget is the
  device's memory limit, or `limit_bytes` per device (CPU reports no limit; give one to plan for
  another device). Each batch is a compile, so the search is compiled_report.search_max_batch's,
  from `start`; `known` holds peaks already compiled (the timed step's), compiled never again.
  (None, {}) when there is no budget or the backend reports no compiled memory."""
  if not limit_bytes:
    limit_bytes = (jax.devices()[0].memory_stats() or {}).get("bytes_limit")
  if not limit_bytes:
    return None, {}
  searched = {b: m for b, m in (known or {}).items() if m is not None}

  def peak(batch: int) -> int:
    mem = compiled_step_memory(config.copy_and_resolve_references(), batch)
    if mem is None:
      raise _NoMemoryAnalysis
    searched[batch] = mem
    return mem

  step = jax.device_count()
  try:
    best = compiled_report.search_max_batch(
        peak, limit_bytes * step, step, max(step, start // step * step),
        cap=MAX_SEARCHED_BATCH, known=dict(searched))
  except _NoMemoryAnalysis:  # this backend does not say: nothing to search with
    return None, {}
  return best, {str(b): m for b, m in sorted(searched.items())}  # JSON's keys are strings


class _NoMemoryAnalysis(Exception):
  """The backend reports no compiled memory (not every one implements memory_analysis)."""


def _define_flags(values: absl_flags.FlagValues) -> None:
  def string(name, default, text, **kw):
    absl_flags.DEFINE_string(name, default, text, flag_values=values, **kw)

  def integer(name, default, text):
    absl_flags.DEFINE_integer(name, default, text, flag_values=values)

  def number(name, default, text):
    absl_flags.DEFINE_float(name, default, text, flag_values=values)

  def switch(name, text):
    absl_flags.DEFINE_bool(name, False, text, flag_values=values)

  string("config", None, "config file[:arg]; demo: configs/demo.py:pretrain", required=True)
  string("what", "step", "comma list of step,eval,pipeline or all")
  integer("batch_size", 2, "global batch of the timed steps")
  integer("steps", 10, "timed steps")
  integer("warmup", 2, "untimed steps first")
  number("peak_tflops", 0.0, "the device's peak for the MFU (0: from the device's name)")
  string("dtype", "", "override model.dtype (e.g. bfloat16)")
  string("attention_impl", "", "override model.attention_impl: native | xla | cudnn (fused, "
                               "GPU)")
  switch("remat", "rematerialise the blocks (config.model.remat)")
  switch("find_max_batch", "the largest global batch whose compiled step fits (a few compiles, "
                           "from --batch_size)")
  number("memory_limit_gib", 0.0, "per-device budget for --find_max_batch where the device "
                                  "reports none")
  integer("memory_batch", 0, "also report the compiled step's peak memory at this global batch "
                             "(the original's per-GPU batch is 40), without and with remat")
  string("split_dir", "", "prepared split for the pipeline benchmark")
  string("worker_counts", "0,1,2", "grain worker processes to time the pipeline with")
  integer("pipeline_batches", 10, "batches timed per worker count")
  integer("stage_records", 8, "records timed per stage")
  string("compilation_cache_dir", "", "JAX's persistent compilation cache (local or gs://; the "
                                      "config's compilation_cache_dir): a second run's "
                                      "compile_s is the cache load")
  absl_flags.DEFINE_enum("float_augment", "", ["", "auto", "host", "device"],
                         "override data.finetune_float_augment: 'device' times the fine-tuning "
                         "pipeline an accelerator host runs (the float steps in the train "
                         "step)", flag_values=values)
  absl_flags.DEFINE_enum("against", "", ["", "original"],
                         "with --what=step: alternate our step with the PyTorch stand-in of "
                         "the original's (tools/torch_standin_step.py) in --torch_python",
                         flag_values=values)
  string("torch_python", "", "the python of a venv with torch, for --against=original")
  integer("rounds", 3, "rounds of ours / the stand-in for --against=original")
  string("out", "benchmark.json", "where the JSON report goes")


def _config_and_sections(a: absl_flags.FlagValues):
  """(the experiment config with the command's overrides, the sections to run); bad values
  raise ValueError naming them, before anything compiles."""
  config = load_experiment(a.config)
  with config.unlocked():
    if a.dtype:
      config.model.dtype = a.dtype
    if a.attention_impl:
      config.model.attention_impl = a.attention_impl
    config.model.remat = a.remat or config.model.remat
    config.loss.contrastive_group_size = 0
    if a.compilation_cache_dir:
      config.compilation_cache_dir = a.compilation_cache_dir
    if a.float_augment:
      config.data.finetune_float_augment = a.float_augment
  what = {"step", "eval", "pipeline"} if a.what == "all" else set(a.what.split(","))
  if what - {"step", "eval", "pipeline"}:
    raise ValueError(f"--what={a.what!r}; allowed: a comma list of step, eval, pipeline, or all")
  if "pipeline" in what and not a.split_dir:
    raise ValueError("--what=pipeline needs --split_dir=<prepared split>")
  dtype_from_name(config.model.dtype)
  check_attention_impl(config.model.attention_impl)
  if a.against:
    if what != {"step"}:
      raise ValueError(f"--against={a.against} goes with --what=step, not --what={a.what}")
    side_by_side.check_config(config)
    a.torch_python = side_by_side.check_interpreter(a.torch_python)
    if a.rounds < 1:
      raise ValueError(f"--rounds={a.rounds}: give at least 1")
  elif a.torch_python:
    raise ValueError("--torch_python is only used with --against=original; add it")
  return config, what


def _balance(report: dict[str, Any]) -> dict[str, Any]:
  """Input cores / processes one device needs at the measured step rate."""
  need = report["train_step"]["clips_per_s"] / jax.device_count()
  core = report["pipeline"]["stages_records_per_s_one_core"]
  balance = {"step_clips_per_s_per_device": round(need, 2),
             "input_cores_needed_per_device": round(need / core, 2)}
  one = report["pipeline"]["clips_per_s_by_workers"].get("0")
  if one:  # the in-process pipeline (worker_count 0) was measured
    balance["pipeline_clips_per_s_one_process"] = one
    balance["input_processes_needed_per_device"] = round(need / one, 2)
  return balance


def run_benchmarks(config, what: set[str], a: absl_flags.FlagValues) -> dict[str, Any]:
  fresh = config.copy_and_resolve_references
  runtime.use_compilation_cache(config.get("compilation_cache_dir", ""))
  report: dict[str, Any] = {"device": str(jax.devices()[0].device_kind),
                            "num_devices": jax.device_count(), "host": host_info.describe(),
                            "config": a.config, "kind": config.kind, "size": config.model.size,
                            "dtype": config.model.dtype,
                            "attention_impl": config.model.attention_impl,
                            "date": time.strftime("%Y-%m-%d")}
  if "step" in what and a.against:
    report["side_by_side"] = bench_side_by_side(fresh(), a)
  elif "step" in what:
    report["train_step"] = bench_step(fresh(), a.batch_size, a.steps, a.warmup, a.peak_tflops)
    if a.find_max_batch:
      step = report["train_step"]
      step["max_batch"], step["max_batch_search"] = find_max_batch(
          fresh(), a.batch_size, int(a.memory_limit_gib * 2**30) or None,
          known={a.batch_size: step["peak_memory_bytes"]})
    if a.memory_batch:
      report["memory"] = memory_at_batch(fresh(), a.memory_batch)
  if "eval" in what:
    report["eval_forward"] = bench_eval(fresh(), a.batch_size, a.steps, a.warmup)
  if "pipeline" in what:
    workers = [int(w) for w in a.worker_counts.split(",")]
    report["pipeline"] = bench_pipeline(fresh(), a.split_dir, workers, a.pipeline_batches,
                                        a.batch_size, a.stage_records)
    if "train_step" in report:
      report["balance"] = _balance(report)
      report["step_with_input"] = bench_step_with_input(fresh(), a.split_dir, a.batch_size,
                                                        a.steps, a.warmup)
  return report


def main(argv=None) -> int:
  """The command line (argv without the program name; None: sys.argv[1:]) -> the exit code."""
  return cli.run_own(_define_flags, _main, argv, doc=__doc__)


def _main(a: absl_flags.FlagValues) -> int:
  absl.logging.set_verbosity(absl.logging.WARNING)
  try:
    config, what = _config_and_sections(a)
  except (ValueError, FileNotFoundError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  report = run_benchmarks(config, what, a)
  if "side_by_side" in report:
    sbs = report["side_by_side"]
    print(side_by_side.table(sbs["rows"], sbs["summary"], report["host"], report["date"]))
    print(f"ours: compile {sbs['compile_s']} s, batch {sbs['batch']}, median of {sbs['steps']} "
          f"steps a round; stand-in: {sbs['standin']}")
  else:
    print(_table(report))
  with open(a.out, "w") as f:
    json.dump(report, f, indent=2)
  print(f"written to {a.out}")
  return 0


def _table(report: dict[str, Any]) -> str:
  host = report["host"]
  rows = [("device", report["device"]),
          ("host", f"{host['cpu']}, {host['isa'] or 'no x86 ISA'}, {host['cores']} cores, "
                   f"{report['date']}"),
          ("kind/size/dtype",
          f"{report['kind']}/{report['size']}/{report['dtype']}")]
  for section in ("train_step", "memory", "eval_forward", "pipeline", "balance",
                  "step_with_input"):
    for k, v in (report.get(section) or {}).items():
      rows.append((f"{section}.{k}", v))
  width = max(len(r[0]) for r in rows)
  return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


if __name__ == "__main__":
  sys.exit(main())
