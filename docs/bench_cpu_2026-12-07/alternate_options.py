"""Alternates the compiled Base (or any) pre-training step under several XLA option sets in ONE
process: each set compiled once, then rounds of `--steps` steps per set, A B C A B C ..., so a
shared machine's load falls on every set alike. Prints per-round wall and process-CPU seconds
per step and the medians (ranges) per set.

  python docs/bench_cpu_2026-12-07/alternate_options.py --config=configs/pretrain_base.py \
      --set=default --set=xla_cpu_experimental_ynn_fusion_type=LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT
A set is `default` or `name=value[;name=value...]` (added to the step's own options).
"""
from __future__ import annotations

import statistics
import sys
import time

import absl.logging
import jax
from absl import app, flags

from hicmae_jax import host_info, sharding
from hicmae_jax.tools import benchmark

flags.DEFINE_string("config", "configs/pretrain_base.py", "config file")
flags.DEFINE_multi_string("set", ["default"], "option sets to alternate")
flags.DEFINE_integer("batch_size", 2, "global batch")
flags.DEFINE_integer("steps", 3, "steps per set per round")
flags.DEFINE_integer("rounds", 3, "rounds")
FLAGS = flags.FLAGS


def _options(spec: str) -> dict[str, str]:
  if spec == "default":
    return {}
  return dict(item.split("=", 1) for item in spec.split(";"))


def main(_):
  absl.logging.set_verbosity(absl.logging.WARNING)
  runs = []
  for spec in FLAGS.set:
    config = benchmark.load_experiment(FLAGS.config)
    with config.unlocked():
      config.global_batch_size = FLAGS.batch_size
      config.loss.contrastive_group_size = 0
    base = sharding.compiler_options(sharding.make_mesh(config.mesh)) or {}
    compiled, state, data, compile_s = benchmark.compiled_step(
        config, FLAGS.batch_size, {**base, **_options(spec)})
    _, state = benchmark.time_steps(compiled, state, data, 1, 1)
    runs.append({"spec": spec, "compiled": compiled, "state": state, "data": data,
                 "compile_s": compile_s, "wall": [], "cpu": []})
    print(f"compiled {spec} in {compile_s:.1f} s", flush=True)
  for r in range(FLAGS.rounds):
    for run in runs:
      wall, cpu = time.perf_counter(), time.process_time()
      state = run["state"]
      for _ in range(FLAGS.steps):
        state, metrics = run["compiled"](state, run["data"])
        jax.block_until_ready(metrics["loss"])
      run["state"] = state
      run["wall"].append((time.perf_counter() - wall) / FLAGS.steps)
      run["cpu"].append((time.process_time() - cpu) / FLAGS.steps)
      print(f"round {r} {run['spec'][:60]:60s} wall {run['wall'][-1]:.3f} s/step  "
            f"cpu {run['cpu'][-1]:.3f} s/step", flush=True)
  print(f"host {host_info.describe()}, {time.strftime('%Y-%m-%d %H:%M')}")
  for run in runs:
    w, c = run["wall"], run["cpu"]
    print(f"{run['spec'][:70]:70s} wall median {statistics.median(w):.3f} "
          f"({min(w):.3f}-{max(w):.3f})  cpu median {statistics.median(c):.3f} "
          f"({min(c):.3f}-{max(c):.3f}) s/step")


if __name__ == "__main__":
  sys.exit(app.run(main))
