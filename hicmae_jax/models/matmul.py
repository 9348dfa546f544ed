"""The dense layers' matmul, leading dimensions flattened first: a backward with no transposes.

`x [B, N, K] @ w [K, N']` written as one dot_general contracting x's last dimension gives, under
autodiff, a weight gradient that contracts dy and x over two dimensions (B and N). XLA:CPU
lowers that as `dot(x, transpose(dy))` with the transposed copy of dy fused into whatever
produced dy (a LayerNorm backward, a GELU backward, the loss gradient): a transpose inside an
elementwise loop fusion, which XLA:CPU emits 3-5x slower than a plain transpose (a
[1600, 1536] float32 one: 4.9 ms plain, 22-26 ms fused with a multiply).
Flattened to `[B*N, K] @ [K, N']` first, autodiff's weight gradient is
`dot_general(x2, dy2)` contracting dimension 0 of both, which XLA runs directly on the stored
operands, with no copy. Same products, same numbers in every dtype; measured on the Base
pre-training step (batch 2): 1.34 -> 1.19 s. The reshapes are free (bitcasts) on every backend.
Figures: Intel Xeon family 6 model 167, AVX-512, 2 cores, 2026-12-07 (docs/bench_cpu_2026-12-07b).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def matmul(x: jax.Array, w: jax.Array) -> jax.Array:
  """x [..., K] @ w [K, N] -> [..., N]."""
  k, n = w.shape
  return jnp.dot(x.reshape(-1, k), w).reshape(*x.shape[:-1], n)


def linear_dot_general(lhs, rhs, dimension_numbers, precision=None,
                       preferred_element_type=None, out_sharding=None):
  """`lax.dot_general` for `nnx.Linear(..., dot_general=linear_dot_general)`: `matmul` for the
  layer's own contraction (last dim of the input with the kernel's first), the plain dot for
  anything else (a precision, an accumulation type or an output sharding asked for)."""
  if (dimension_numbers == (((lhs.ndim - 1,), (0,)), ((), ())) and rhs.ndim == 2
      and precision is None and preferred_element_type is None and out_sharding is None):
    return matmul(lhs, rhs)
  return jax.lax.dot_general(lhs, rhs, dimension_numbers, precision=precision,
                             preferred_element_type=preferred_element_type,
                             out_sharding=out_sharding)
