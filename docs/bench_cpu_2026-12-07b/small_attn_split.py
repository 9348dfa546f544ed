"""The small encoder attention ([2, 80, 8, 64]) split into head or batch groups, six calls in a
chain; forward and forward+backward, and CPU time per wall time (do the groups run concurrently?)."""
import sys, time, statistics, jax, jax.numpy as jnp, numpy as np
from hicmae_jax.models import layers
b, n, h, d = 2, 80, 8, 64
rng = np.random.default_rng(0)
q, k, v, g = (jnp.asarray(rng.standard_normal((b, n, h, d)), jnp.float32) for _ in range(4))
nat = layers._native_attention
def split_h(parts):
  def f(q, k, v):
    qs, ks, vs = (jnp.split(t, parts, axis=2) for t in (q, k, v))
    return jnp.concatenate([nat(a, bb, c) for a, bb, c in zip(qs, ks, vs)], axis=2)
  return f
def split_b(q, k, v):
  return jnp.concatenate([nat(q[i:i+1], k[i:i+1], v[i:i+1]) for i in range(b)], axis=0)
def stack(f, reps=6):
  # several independent calls in one program, like the audio/video encoders' blocks
  def s(q, k, v):
    out = q
    for i in range(reps):
      out = f(out * 0.5 + q, k, v)
    return out
  return s
variants = {"native": nat, "split_h2": split_h(2), "split_h4": split_h(4), "split_b": split_b}
comp = {}
for name, f in variants.items():
  f = stack(f)
  loss = lambda q, k, v, f=f: jnp.sum(f(q, k, v) * g)
  comp[name] = (jax.jit(f).lower(q, k, v).compile(), jax.jit(jax.grad(loss, argnums=(0, 1, 2))).lower(q, k, v).compile())
res = {nm: ([], [], []) for nm in comp}
for rnd in range(5):
  for name, (cf, cb) in comp.items():
    for i, c in enumerate((cf, cb)):
      jax.block_until_ready(c(q, k, v)); ts = []; p = time.process_time(); w = time.perf_counter()
      for _ in range(50):
        t = time.perf_counter(); jax.block_until_ready(c(q, k, v)); ts.append(time.perf_counter() - t)
      res[name][i].append(statistics.median(ts) * 1e3)
      if i == 1: res[name][2].append((time.process_time() - p) / (time.perf_counter() - w))
for name, (f, fb, u) in res.items():
  print(f"{name:10s} fwd {statistics.median(f):.2f} ms  fwd+bwd {statistics.median(fb):.2f} ms  cpu/wall {statistics.median(u):.2f}")
