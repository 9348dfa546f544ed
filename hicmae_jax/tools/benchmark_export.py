r"""ONNX Runtime vs XLA:CPU on the exported forward, per clip, at batch 1 and 16.

  python -m hicmae_jax.tools.benchmark_export [--size=tiny] [--batches=1,16] [--repeats=3]

Builds a randomly initialised fine-tuned model of the size at the paper's input geometry
(16 frames of 160x160, 256 x 128 fbank; the weights do not change the speed), converts it
with tools.export's ONNX path (checked against JAX before anything is timed), then times
`InferenceSession.run` (CPUExecutionProvider, its default threads) and the jitted JAX forward
(XLA:CPU) on the same uint8 frames and fbank. Each engine is warmed up once per batch size;
the figure is the median of --repeats runs divided by the batch. Prints JSON with the machine
(hicmae_jax.host_info) and the date.
"""
from __future__ import annotations

import datetime
import json
import os
import statistics
import sys
import tempfile
import time

import jax
import numpy as np
from absl import flags
from flax import nnx

from hicmae_jax import cli, host_info
from hicmae_jax.checkpoints import weights as weights_lib
from hicmae_jax.models import params as params_lib, sizes
from hicmae_jax.models.classifier import FinetuneModel
from hicmae_jax.sharing import onnx_export, pretrained, stablehlo


def random_finetuned(size: str, num_classes: int = 6) -> weights_lib.Weights:
  cfg = sizes.model_config(size)
  cfg.num_classes = num_classes
  model = FinetuneModel(cfg, rngs=nnx.Rngs(params=0))
  flat = {k: np.asarray(v) for k, v in params_lib.ParamsView(model).flat(model).items()}
  return weights_lib.Weights("finetune", cfg, flat, {"random_init_seed": 0})


def _median_seconds(run, repeats: int) -> float:
  run()  # warm-up (compilation, session allocation)
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    run()
    times.append(time.perf_counter() - t0)
  return statistics.median(times)


def _define_flags(values: flags.FlagValues) -> None:
  flags.DEFINE_enum("size", "tiny", sorted(sizes.SIZES), "model size", flag_values=values)
  flags.DEFINE_string("batches", "1,16", "comma-separated batch sizes", flag_values=values)
  flags.DEFINE_integer("repeats", 3, "timed runs per engine and batch (the median is kept)",
                       lower_bound=1, flag_values=values)


def main(argv=None) -> int:
  """The command line (argv without the program name; None: sys.argv[1:]) -> the exit code."""
  return cli.run_own(_define_flags, _main, argv, doc=__doc__)


def _main(args: flags.FlagValues) -> int:
  import onnxruntime as ort
  weights = random_finetuned(args.size)
  t0 = time.time()
  with tempfile.TemporaryDirectory() as tmp:
    meta = onnx_export.export_onnx(weights, os.path.join(tmp, "onnx"))
    session = ort.InferenceSession(os.path.join(tmp, "onnx", onnx_export.ONNX_FILENAME),
                                   providers=["CPUExecutionProvider"])
  convert_seconds = time.time() - t0
  view, params = weights_lib.bind(weights)
  forward = jax.jit(pretrained.forward(view, ("logits", "feature")))
  specs = stablehlo.input_specs(weights.model)
  rng = np.random.default_rng(0)
  rows = []
  for batch in (int(b) for b in args.batches.split(",")):
    video = rng.integers(0, 256, (batch,) + tuple(specs[0]["shape"][1:]), dtype=np.uint8)
    audio = rng.standard_normal((batch,) + tuple(specs[1]["shape"][1:])).astype(np.float32)
    ort_s = _median_seconds(lambda: session.run(None, {"video": video, "audio": audio}),
                            args.repeats)
    xla_s = _median_seconds(lambda: jax.block_until_ready(forward(params, video, audio)),
                            args.repeats)
    rows.append({"batch": batch, "onnxruntime_ms_per_clip": round(1e3 * ort_s / batch, 1),
                 "xla_cpu_ms_per_clip": round(1e3 * xla_s / batch, 1)})
    print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
  print(json.dumps({"size": args.size, "num_values": int(sum(v.size for v in
                                                             weights.params.values())),
                    "inputs": [s["shape"] for s in specs], "repeats": args.repeats,
                    "onnx_check": meta["check"], "convert_and_check_seconds":
                    round(convert_seconds, 1), "rows": rows, "versions": meta["versions"],
                    "machine": host_info.describe(),
                    "date": datetime.date.today().isoformat()}, indent=2))
  return 0


if __name__ == "__main__":
  sys.exit(main())
