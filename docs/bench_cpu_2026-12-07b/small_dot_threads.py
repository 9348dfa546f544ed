"""The small batched attention dot: wall time, CPU time per wall time (threads used), GFLOP/s,
for a few batch and sequence sizes."""
import time, jax, jax.numpy as jnp, numpy as np
rng = np.random.default_rng(0)
for shape in ((16, 80, 64), (64, 80, 64), (16, 320, 64), (4, 80, 64)):
  q = jnp.asarray(rng.standard_normal(shape), jnp.float32); k = jnp.asarray(rng.standard_normal(shape), jnp.float32)
  c = jax.jit(lambda q, k: jnp.einsum("bqd,bkd->bqk", q, k)).lower(q, k).compile()
  jax.block_until_ready(c(q, k)); n = 2000
  w = time.perf_counter(); p = time.process_time()
  for _ in range(n): jax.block_until_ready(c(q, k))
  w = time.perf_counter() - w; p = time.process_time() - p
  fl = 2 * shape[0] * shape[1] ** 2 * shape[2]
  print(shape, f"wall {w/n*1e3:.3f} ms  cpu/wall {p/w:.2f}  {fl/(w/n)/1e9:.1f} GFLOP/s")
