"""Matmul throughput (GFLOP/s) at the shapes that dominate the Base pre-training step, in JAX
(XLA:CPU) or, for a side-by-side, in PyTorch.

  python -m hicmae_jax.tools.matmul_throughput                      # JAX, this machine
  XLA_FLAGS=--xla_cpu_max_isa=AVX2 python -m hicmae_jax.tools.matmul_throughput
  python -m hicmae_jax.tools.matmul_throughput --backend=torch      # needs torch installed

The shapes are the step's (batch 2, Base): the decoder's attention over all 800 video tokens
(6 heads of 64), its MLP and qkv projections on 2 x 800 tokens, the encoder's MLP on the 2 x 80
visible tokens and its attention. Each is timed alone (median of --reps after 2 warm-ups), so
these are the kernels' best case; `tools.profile_step` gives the same ops inside the step.

On x86, XLA:CPU hands these dots to YNNPACK, which picks its kernels from the CPU itself:
`--xla_cpu_max_isa` caps XLA's own generated code (the elementwise fusions), not these
matmuls. A capped run on an AVX-512 machine therefore does not stand for an AVX2 machine.
"""
from __future__ import annotations

import json
import statistics
import sys
import time
from typing import Callable

import numpy as np
from absl import flags

from hicmae_jax import cli, host_info

# name: (batch dims, M, K, N) of out[..., M, N] = a[..., M, K] @ b[..., K, N]
SHAPES: dict[str, tuple[tuple[int, ...], int, int, int]] = {
    "decoder scores q.k^T  2x6 x (800x64 . 64x800)": ((2, 6), 800, 64, 800),
    "decoder attn.v        2x6 x (800x800 . 800x64)": ((2, 6), 800, 800, 64),
    "decoder MLP up        1600x384 . 384x1536": ((), 1600, 384, 1536),
    "decoder MLP down      1600x1536 . 1536x384": ((), 1600, 1536, 384),
    "decoder qkv           1600x384 . 384x1152": ((), 1600, 384, 1152),
    "encoder MLP up        160x512 . 512x2048": ((), 160, 512, 2048),
    "encoder scores        2x8 x (80x64 . 64x80)": ((2, 8), 80, 64, 80),
}


def flops(shape: tuple[tuple[int, ...], int, int, int]) -> float:
  batch, m, k, n = shape
  return 2.0 * float(np.prod(batch, dtype=np.float64)) * m * k * n


def median_seconds(fn: Callable[[], object], reps: int) -> float:
  fn()
  fn()
  times = []
  for _ in range(reps):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def jax_matmul(shape, rng: np.random.Generator) -> Callable[[], object]:
  import jax  # the JAX path; the torch path must not pay for jax's start-up
  batch, m, k, n = shape
  a = jax.numpy.asarray(rng.random((*batch, m, k), dtype=np.float32))
  b = jax.numpy.asarray(rng.random((*batch, k, n), dtype=np.float32))
  f = jax.jit(lambda x, y: x @ y)
  return lambda: f(a, b).block_until_ready()


def torch_matmul(shape, rng: np.random.Generator) -> Callable[[], object]:
  import torch  # optional: only for the side-by-side, never a dependency
  batch, m, k, n = shape
  a = torch.from_numpy(rng.random((*batch, m, k), dtype=np.float32))
  b = torch.from_numpy(rng.random((*batch, k, n), dtype=np.float32))
  return lambda: a @ b


def measure(backend: str, reps: int) -> dict[str, float]:
  """{shape name: GFLOP/s} for the backend."""
  make = jax_matmul if backend == "jax" else torch_matmul
  rng = np.random.default_rng(0)
  return {name: round(flops(shape) / median_seconds(make(shape, rng), reps) / 1e9, 1)
          for name, shape in SHAPES.items()}


def _define_flags(values: flags.FlagValues) -> None:
  flags.DEFINE_enum("backend", "jax", ["jax", "torch"], "whose kernels", flag_values=values)
  flags.DEFINE_integer("reps", 20, "timed runs of each shape (median reported)",
                       flag_values=values)
  flags.DEFINE_integer("threads", 0, "torch threads (0: torch's default)", flag_values=values)
  flags.DEFINE_string("out", "", "JSON file for the figures", flag_values=values)


def main(argv: list[str] | None = None) -> int:
  """The command line (argv without the program name; None: sys.argv[1:]) -> the exit code."""
  return cli.run_own(_define_flags, _main, argv, doc=__doc__)


def _main(args: flags.FlagValues) -> None:
  if args.backend == "torch" and args.threads:
    import torch
    torch.set_num_threads(args.threads)
  figures = measure(args.backend, args.reps)
  result = {"backend": args.backend, "host": host_info.describe(), "gflops_per_s": figures}
  print(f"{args.backend} on {result['host']}")
  for name, gf in figures.items():
    print(f"  {gf:8.1f} GFLOP/s  {name}")
  if args.out:
    with open(args.out, "w") as f:
      json.dump(result, f, indent=2)


if __name__ == "__main__":
  sys.exit(main())
