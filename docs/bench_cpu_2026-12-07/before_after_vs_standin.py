"""Before/after a model change, each against the PyTorch stand-in, in ONE process on a shared
machine: both versions of our step compiled once, then rounds of
(ours before, the stand-in, ours after), so each round's two ratios share one stand-in run.

"before" is the code as it is (the MLP's exact GELU from jax.nn.gelu, erfc); "after" is the
change that was tried and reverted: jax.nn.gelu(x, approximate=False) computed as the
original's x/2 (1 + erf(x / sqrt 2)). (When the runs here were made, the change was in
layers.py and "before" patched it out; the two programs compared are the same.)

  PYTHONPATH=. python docs/bench_cpu_2026-12-07/before_after_vs_standin.py \
      --torch_python=$HOME/.cache/hicmae_jax/torch-venv/bin/python --rounds=3
"""
from __future__ import annotations

import json
import os
import statistics
import sys
import time

import absl.logging
import jax
import jax.numpy as jnp
from absl import app, flags

from hicmae_jax import host_info
from hicmae_jax.tools import benchmark, side_by_side

flags.DEFINE_string("config", "configs/pretrain_base.py", "config file")
flags.DEFINE_string("torch_python", "", "python of a venv with torch")
flags.DEFINE_integer("batch_size", 2, "global batch")
flags.DEFINE_integer("steps", 3, "timed steps per version per round (median)")
flags.DEFINE_integer("standin_steps", 3, "stand-in timed steps per round (after 1 warm-up); "
                     "0: no stand-in, ours before/after only")
flags.DEFINE_integer("rounds", 3, "rounds")
flags.DEFINE_string("out", "", "JSON of the rounds")
FLAGS = flags.FLAGS


def _erf_gelu(x, approximate=False):
  if approximate:
    return _JAX_GELU(x, approximate=True)
  return 0.5 * x * (1.0 + jax.lax.erf(x * jnp.asarray(0.5 ** 0.5, x.dtype)))


_JAX_GELU = jax.nn.gelu


def _compiled(config, before: bool):
  if not before:
    jax.nn.gelu = _erf_gelu  # layers.Mlp calls jax.nn.gelu at trace time
  try:
    compiled, state, data, compile_s = benchmark.compiled_step(
        config.copy_and_resolve_references(), FLAGS.batch_size)
  finally:
    jax.nn.gelu = _JAX_GELU
  _, state = benchmark.time_steps(compiled, state, data, 0, 1)
  return {"compiled": compiled, "state": state, "data": data, "compile_s": compile_s}


def _time(run) -> tuple[float, float]:
  """(median wall s/step, process CPU s/step) of FLAGS.steps steps."""
  cpu = time.process_time()
  times, run["state"] = benchmark.time_steps(run["compiled"], run["state"], run["data"],
                                             FLAGS.steps, 0)
  return statistics.median(times), (time.process_time() - cpu) / FLAGS.steps


def main(_):
  absl.logging.set_verbosity(absl.logging.WARNING)
  python = (side_by_side.check_interpreter(FLAGS.torch_python) if FLAGS.standin_steps
            else None)
  config = benchmark.load_experiment(FLAGS.config)
  with config.unlocked():
    config.loss.contrastive_group_size = 0
  size = side_by_side.check_config(config)
  runs = {"before": _compiled(config, True), "after": _compiled(config, False)}
  print({k: round(v["compile_s"], 1) for k, v in runs.items()}, "s compile", flush=True)
  rows = []
  for r in range(FLAGS.rounds):
    before, before_cpu = _time(runs["before"])
    standin = (side_by_side.run_standin(python, size, FLAGS.batch_size, FLAGS.standin_steps,
                                        1)["median_s"] if python else float("nan"))
    after, after_cpu = _time(runs["after"])
    rows.append({"round": r + 1, "before_s": round(before, 3), "standin_s": round(standin, 3),
                 "after_s": round(after, 3), "ratio_before": round(standin / before, 3),
                 "ratio_after": round(standin / after, 3), "before_cpu_s": round(before_cpu, 3),
                 "after_cpu_s": round(after_cpu, 3), "load": os.getloadavg()[0]})
    print(rows[-1], flush=True)
  print(f"host {host_info.describe()}, {time.strftime('%Y-%m-%d %H:%M')}")
  for key in ("before_s", "after_s", "before_cpu_s", "after_cpu_s", "standin_s",
              "ratio_before", "ratio_after"):
    values = [row[key] for row in rows]
    print(f"{key:13s} median {statistics.median(values):.3f} ({min(values):.3f}-"
          f"{max(values):.3f})")
  if FLAGS.out:
    with open(FLAGS.out, "w") as f:
      json.dump({"host": host_info.describe(), "rows": rows}, f, indent=2)


if __name__ == "__main__":
  sys.exit(app.run(main))
