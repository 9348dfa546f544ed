"""Matmul throughput (GFLOP/s) at the shapes that dominate the Base pre-training step, in JAX
(XLA:CPU) or, for a side-by-side, in PyTorch.

  python -m hicmae_jax.tools.matmul_throughput                      # JAX, this machine
  XLA_FLAGS=--xla_cpu_max_isa=AVX2 python -m hicmae_jax.tools.matmul_throughput
  python -m hicmae_jax.tools.matmul_throughput --backend=torch      # needs torch installed
  python -m hicmae_jax.tools.matmul_throughput --layouts=nn,nt,tn   # operand layouts, see LAYOUTS

The shapes are the step's (batch 2, Base): the decoder's attention over all 800 video tokens
(6 heads of 64), its MLP and qkv projections on 2 x 800 tokens, the encoder's MLP on the 2 x 80
visible tokens and its attention. Each is timed alone (median of --reps after 2 warm-ups), so
these are the kernels' best case; `tools.profile_step` gives the same ops inside the step.
Inside the step most dots are not `a @ b`: the backward multiplies by a transposed weight
(`nt`: a[M,K] . b[N,K], contracting both minor dimensions) and forms weight gradients from two
activations (`tn`: a[K,M] . b[K,N]); --layouts times those forms of every shape. Each figure is
from wall time; with --cpu_time also from the process's CPU time (2 threads busy for a
second = 2 s), which a shared machine disturbs less.

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


# How the operands are stored: out[M, N] = sum over K of a . b, a and b in these layouts.
LAYOUTS = {"nn": "a[M,K] . b[K,N]", "nt": "a[M,K] . b[N,K] (b transposed)",
           "tn": "a[K,M] . b[K,N] (a transposed)"}


def flops(shape: tuple[tuple[int, ...], int, int, int]) -> float:
  batch, m, k, n = shape
  return 2.0 * float(np.prod(batch, dtype=np.float64)) * m * k * n


def median_seconds(fn: Callable[[], object], reps: int) -> tuple[float, float]:
  """(median wall seconds, median process CPU seconds) of `fn` over `reps` runs after 2."""
  fn()
  fn()
  wall, cpu = [], []
  for _ in range(reps):
    start, start_cpu = time.perf_counter(), time.process_time()
    fn()
    wall.append(time.perf_counter() - start)
    cpu.append(time.process_time() - start_cpu)
  return statistics.median(wall), statistics.median(cpu)


def operands(shape, layout: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
  batch, m, k, n = shape
  a = (*batch, k, m) if layout == "tn" else (*batch, m, k)
  b = (*batch, n, k) if layout == "nt" else (*batch, k, n)
  return rng.random(a, dtype=np.float32), rng.random(b, dtype=np.float32)


def dimension_numbers(rank: int, layout: str):
  """lax.dot_general's ((contracting), (batch)) for operands of `rank` in `layout`."""
  batch = tuple(range(rank - 2))
  lhs_k = rank - 2 if layout == "tn" else rank - 1
  rhs_k = rank - 1 if layout == "nt" else rank - 2
  return ((lhs_k,), (rhs_k,)), (batch, batch)


def jax_matmul(shape, rng: np.random.Generator, layout: str = "nn") -> Callable[[], object]:
  import jax  # the JAX path; the torch path must not pay for jax's start-up
  a_np, b_np = operands(shape, layout, rng)
  a, b = jax.numpy.asarray(a_np), jax.numpy.asarray(b_np)
  dims = dimension_numbers(a.ndim, layout)
  f = jax.jit(lambda x, y: jax.lax.dot_general(x, y, dims))
  return lambda: f(a, b).block_until_ready()


def torch_matmul(shape, rng: np.random.Generator, layout: str = "nn") -> Callable[[], object]:
  import torch  # optional: only for the side-by-side, never a dependency
  a_np, b_np = operands(shape, layout, rng)
  a, b = torch.from_numpy(a_np), torch.from_numpy(b_np)
  if layout == "tn":
    return lambda: a.transpose(-1, -2) @ b
  if layout == "nt":
    return lambda: a @ b.transpose(-1, -2)
  return lambda: a @ b


def measure(backend: str, reps: int, layout: str = "nn",
            cpu_time: bool = False) -> dict[str, float | tuple[float, float]]:
  """{shape name: GFLOP/s} for the backend and operand layout; with `cpu_time`,
  {shape name: (GFLOP/s of wall time, GFLOP/s of process CPU time)}."""
  if layout not in LAYOUTS:
    raise ValueError(f"layout {layout!r}: use one of {', '.join(LAYOUTS)}")
  make = jax_matmul if backend == "jax" else torch_matmul
  rng = np.random.default_rng(0)
  out: dict[str, float | tuple[float, float]] = {}
  for name, shape in SHAPES.items():
    wall, cpu = median_seconds(make(shape, rng, layout), reps)
    gf = round(flops(shape) / wall / 1e9, 1)
    out[name] = (gf, round(flops(shape) / max(cpu, 1e-9) / 1e9, 1)) if cpu_time else gf
  return out


def _define_flags(values: flags.FlagValues) -> None:
  flags.DEFINE_enum("backend", "jax", ["jax", "torch"], "whose kernels", flag_values=values)
  flags.DEFINE_integer("reps", 20, "timed runs of each shape (median reported)",
                       flag_values=values)
  flags.DEFINE_integer("threads", 0, "torch threads (0: torch's default)", flag_values=values)
  flags.DEFINE_list("layouts", ["nn"], f"operand layouts to time: {LAYOUTS}",
                    flag_values=values)
  flags.DEFINE_bool("cpu_time", False, "also GFLOP/s of the process's CPU time",
                    flag_values=values)
  flags.DEFINE_string("out", "", "JSON file for the figures", flag_values=values)


def main(argv: list[str] | None = None) -> int:
  """The command line (argv without the program name; None: sys.argv[1:]) -> the exit code."""
  return cli.run_own(_define_flags, _main, argv, doc=__doc__)


def _main(args: flags.FlagValues) -> None:
  bad = [x for x in args.layouts if x not in LAYOUTS]
  if bad:
    raise cli.BadInput(f"--layouts={','.join(args.layouts)}: {bad[0]!r} is not one of "
                       f"{', '.join(LAYOUTS)}")
  if args.backend == "torch" and args.threads:
    import torch
    torch.set_num_threads(args.threads)
  figures = {layout: measure(args.backend, args.reps, layout, args.cpu_time)
             for layout in args.layouts}
  result = {"backend": args.backend, "host": host_info.describe(), "date": time.strftime(
      "%Y-%m-%d %H:%M"), "gflops_per_s": figures["nn"] if list(figures) == ["nn"] else figures}
  print(f"{args.backend} on {result['host']} {result['date']}"
        + ("  (GFLOP/s of wall time / of process CPU time)" if args.cpu_time else ""))
  for layout, by_shape in figures.items():
    print(f" layout {layout}: {LAYOUTS[layout]}")
    for name, gf in by_shape.items():
      shown = f"{gf[0]:8.1f} / {gf[1]:6.1f}" if isinstance(gf, tuple) else f"{gf:8.1f}"
      print(f"  {shown} GFLOP/s  {name}")
  if args.out:
    with open(args.out, "w") as f:
      json.dump(result, f, indent=2)


if __name__ == "__main__":
  sys.exit(main())
