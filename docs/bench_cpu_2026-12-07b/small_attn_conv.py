"""The attention scores product [16, 80, 64] . [16, 64, 80] as the einsum (YNNPACK batched dot)
and as a grouped 1x1 convolution (feature_group_count = batch x heads): does the convolution
path use both cores? Alternated twice."""
import time, jax, jax.numpy as jnp, numpy as np
from jax import lax
rng = np.random.default_rng(0)
def einsum(q, k): return jnp.einsum("bqd,bkd->bqk", q, k)
def conv(q, k):
  G, M, K = q.shape; N = k.shape[1]
  lhs = q.transpose(1, 0, 2).reshape(1, M, G * K)
  rhs = k.transpose(2, 0, 1).reshape(1, K, G * N)
  out = lax.conv_general_dilated(lhs, rhs, (1,), "VALID", dimension_numbers=("NWC", "WIO", "NWC"),
                                 feature_group_count=G)
  return out.reshape(M, G, N).transpose(1, 0, 2)
def bench(f, shape):
  q = jnp.asarray(rng.standard_normal(shape), jnp.float32); k = jnp.asarray(rng.standard_normal(shape), jnp.float32)
  c = jax.jit(f).lower(q, k).compile()
  np.testing.assert_allclose(c(q, k), einsum(q, k), rtol=1e-4, atol=1e-4)
  jax.block_until_ready(c(q, k)); n = 1000
  w = time.perf_counter(); p = time.process_time()
  for _ in range(n): jax.block_until_ready(c(q, k))
  w = time.perf_counter() - w; p = time.process_time() - p
  fl = 2 * shape[0] * shape[1] ** 2 * shape[2]
  print(f.__name__, shape, f"wall {w/n*1e3:.3f} ms  cpu/wall {p/w:.2f}  {fl/(w/n)/1e9:.1f} GFLOP/s", flush=True)
for shape in ((16, 80, 64),):
  for f in (einsum, conv, einsum, conv):
    bench(f, shape)
