"""The dense layers' matmul, with a backward written for XLA:CPU's matmul library.

Autodiff of `x @ w` gives the weight gradient as `x^T . dy`, a dot whose left operand is
contracted on its major dimension. On CPU, XLA hands that form not to YNNPACK (its fast matmul
library takes only left operands contracted on their minor dimension) but to its own Eigen dot,
and feeds it with a transposed copy of dy that it fuses into whatever produced dy (a LayerNorm
backward, a GELU backward, the loss gradient): a transpose inside an elementwise loop fusion,
which XLA:CPU emits 5-20x slower than a plain transpose (a [1600, 1536] float32 one: 4-5 ms
plain, 18-26 ms fused with a multiply, Intel Xeon AVX-512, 2026-12-07).

`matmul` computes the same gradients as autodiff, but materialises the transpose of the
smaller of x and dy behind optimization barriers, so it is one plain transpose, and the weight
gradient becomes a `[K, M] . [M, N]` matmul that YNNPACK runs. Measured on the Base
pre-training forward+backward (batch 2): 1.22 -> 1.13 s, docs/bench_cpu_2026-12-07b.

Elsewhere (GPU, TPU) XLA removes optimization barriers (its barrier expander runs unless the
step's compiler options turn it off, which only the CPU step does: `sharding.compiler_options`)
and folds the transposes back into its own dots, so this is autodiff's computation there.
Numerically it is the same product in every dtype (float64 parity tests run through it).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


@jax.custom_vjp
def matmul(x: jax.Array, w: jax.Array) -> jax.Array:
  """x [..., K] @ w [K, N] -> [..., N]."""
  return jax.lax.dot_general(x, w, (((x.ndim - 1,), (0,)), ((), ())))


def _matmul_fwd(x, w):
  return matmul(x, w), (x, w)


def _matmul_bwd(res, dy):
  x, w = res
  k, n = w.shape
  x2, dy2 = x.reshape(-1, k), dy.reshape(-1, n)
  dx = jax.lax.dot_general(dy, w, (((dy.ndim - 1,), (1,)), ((), ())))
  barrier = jax.lax.optimization_barrier
  if k <= n:
    # dW = x^T . dy, with x [M, K] (the narrower) transposed on its own.
    dw = jnp.dot(barrier(x2.T), dy2)
  else:
    # dW = (dy^T . x)^T: dy [M, N] is the narrower one. The barrier on dy keeps its transpose
    # out of dy's producer fusion; the one on the product keeps XLA from folding the final
    # (small, [N, K]) transpose back into the dot.
    dw = barrier(jnp.dot(barrier(barrier(dy2).T), x2)).T
  return dx, dw.astype(w.dtype)


matmul.defvjp(_matmul_fwd, _matmul_bwd)


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
