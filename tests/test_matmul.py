"""The dense layers' matmul (leading dimensions flattened) and the erf GELU."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx
from scipy.special import erf

from hicmae_jax import sharding
from hicmae_jax.models import layers
from hicmae_jax.models.matmul import linear_dot_general, matmul


def _plain(x, w):
  return jnp.einsum("...k,kn->...n", x, w)


def test_matmul_gradients_equal_autodiff_of_the_unflattened_product_in_float64(x64):
  keys = jax.random.split(jax.random.key(0), 3)
  x = jax.random.normal(keys[0], (2, 7, 6), jnp.float64)
  w = jax.random.normal(keys[1], (6, 10), jnp.float64)
  g = jax.random.normal(keys[2], (2, 7, 10), jnp.float64)
  np.testing.assert_allclose(matmul(x, w), _plain(x, w), rtol=1e-13, atol=1e-13)
  ours = jax.grad(lambda x, w: jnp.sum(matmul(x, w) * g), (0, 1))(x, w)
  ref = jax.grad(lambda x, w: jnp.sum(_plain(x, w) * g), (0, 1))(x, w)
  for a, b in zip(ours, ref):
    assert a.dtype == b.dtype == jnp.float64
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
  assert matmul(x[0, 0], w).shape == (10,)  # no leading dimensions at all


def _cpu_step_options():
  return sharding.compiler_options(
      sharding.make_mesh(ml_collections.ConfigDict({"data": -1, "fsdp": 1})))


@pytest.mark.parametrize("k,n", [(48, 192), (192, 48)])
def test_weight_gradient_reads_dy_untransposed_under_the_cpu_step_options(k, n):
  """Why `matmul` flattens: autodiff of the [B, N, K] product makes XLA:CPU's weight-gradient
  dot read a transposed copy of dy (rhs contracted on its dimension 1), fused into dy's
  producer; flattened, the dot contracts both stored operands on dimension 0. Same numbers."""
  linear = nnx.Linear(k, n, rngs=nnx.Rngs(0))
  ours = layers.linear(k, n, rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(1), (2, 40, k))

  def grad_fn(module):
    graphdef, params = nnx.split(module)

    def loss(params, x):
      y = nnx.merge(graphdef, params)(layers.LayerNorm(k, eps=1e-6, param_dtype=jnp.float32,
                                                       rngs=nnx.Rngs(0))(x))
      return jnp.sum(jnp.tanh(y))
    compiled = jax.jit(jax.grad(loss), compiler_options=_cpu_step_options()).lower(
        params, x).compile()
    return compiled, compiled(params, x)

  plain_compiled, plain_grads = grad_fn(linear)
  ours_compiled, ours_grads = grad_fn(ours)
  transposed_dy = "lhs_contracting_dims={0}, rhs_contracting_dims={1}"
  assert transposed_dy in plain_compiled.as_text()  # the premise, on this XLA
  assert transposed_dy not in ours_compiled.as_text()
  assert "lhs_contracting_dims={0}, rhs_contracting_dims={0}" in ours_compiled.as_text()
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5),
               ours_grads, plain_grads)


def test_linear_dot_general_falls_back_to_the_plain_dot_when_asked_for_more():
  x, w = jnp.ones((3, 4)), jnp.ones((4, 5))
  out = linear_dot_general(x, w, (((1,), (0,)), ((), ())), preferred_element_type=jnp.float32)
  np.testing.assert_array_equal(out, x @ w)
  # another contraction than the layer's own goes to lax.dot_general unchanged
  np.testing.assert_array_equal(linear_dot_general(w, x, (((0,), (1,)), ((), ()))), w.T @ x.T)


def test_gelu_exact_equals_the_erfc_gelu_and_its_gradient(x64):
  x = jnp.linspace(-9.0, 9.0, 2001, dtype=jnp.float64)
  np.testing.assert_allclose(layers.gelu_exact(x), jax.nn.gelu(x, approximate=False),
                             rtol=1e-13, atol=1e-15)
  d_ours = jax.vmap(jax.grad(layers.gelu_exact))(x)
  d_ref = jax.vmap(jax.grad(lambda v: jax.nn.gelu(v, approximate=False)))(x)
  np.testing.assert_allclose(d_ours, d_ref, rtol=1e-12, atol=1e-14)
  # and it is not the tanh approximation (differs by ~1e-3 near |x| = 2)
  assert float(jnp.max(jnp.abs(layers.gelu_exact(x) - jax.nn.gelu(x, approximate=True)))) > 1e-4


def test_gelu_exact_in_float32_matches_float64():
  x64_ref = np.linspace(-9.0, 9.0, 2001)
  ref = 0.5 * x64_ref * (1 + erf(x64_ref / np.sqrt(2)))
  np.testing.assert_allclose(layers.gelu_exact(jnp.asarray(x64_ref, jnp.float32)), ref,
                             rtol=1e-6, atol=1e-6)
