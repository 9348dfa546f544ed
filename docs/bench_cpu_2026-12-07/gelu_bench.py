import time, statistics, sys
import numpy as np, jax, jax.numpy as jnp
from jax import lax
x = jnp.asarray(np.random.default_rng(0).normal(size=(1600, 1536)).astype(np.float32))
g = jnp.asarray(np.random.default_rng(1).normal(size=(1600, 1536)).astype(np.float32))
def erfc_gelu(x): return jax.nn.gelu(x, approximate=False)
def erf_gelu(x): return 0.5 * x * (1.0 + lax.erf(x * np.float32(np.sqrt(0.5))))
def fb(f):
  return jax.jit(lambda x: jax.vjp(f, x)[1](g)[0] + f(x))
fs = {"jax.nn.gelu (erfc)": fb(erfc_gelu), "0.5x(1+erf) (torch's)": fb(erf_gelu)}
res = {n: ([], []) for n in fs}
for r in range(int(sys.argv[1])):
  for n, f in fs.items():
    f(x).block_until_ready()
    w0, c0 = time.perf_counter(), time.process_time()
    for _ in range(10): f(x).block_until_ready()
    res[n][0].append((time.perf_counter()-w0)/10*1e3); res[n][1].append((time.process_time()-c0)/10*1e3)
for n, (w, c) in res.items():
  print(f"{n:24s} fwd+bwd [1600,1536] ms: wall {statistics.median(w):.2f} ({min(w):.2f}-{max(w):.2f}) cpu {statistics.median(c):.2f} ({min(c):.2f}-{max(c):.2f})")
print("max |diff| f32", float(jnp.max(jnp.abs(erfc_gelu(x) - erf_gelu(x)))))
