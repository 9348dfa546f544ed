import jax, jax.numpy as jnp, numpy as np, re, sys, time, statistics

@jax.custom_vjp
def dense(x, w):
  return jnp.dot(x, w)
def fwd(x, w):
  return jnp.dot(x, w), (x, w)
def bwd(res, dy):
  x, w = res
  x2, dy2 = x.reshape(-1, x.shape[-1]), dy.reshape(-1, dy.shape[-1])
  dx = jax.lax.dot_general(dy, w, (((dy.ndim - 1,), (1,)), ((), ())))
  dyt = jax.lax.optimization_barrier(dy2.T)          # [O, T], materialised
  dwt = jax.lax.optimization_barrier(jnp.dot(dyt, x2))  # [O, I]: lhs contracted on its minor dim
  return dx, dwt.T
dense.defvjp(fwd, bwd)

T, I, O = 1600, 1536, 384
rng = np.random.default_rng(0)
x = jnp.asarray(rng.random((2, 800, I), dtype=np.float32)); w = jnp.asarray(rng.random((I, O), dtype=np.float32))
g = jnp.asarray(rng.random((2, 800, O), dtype=np.float32))
def loss(f):
  return lambda x, w: jnp.sum(f(x, w) * g)
opts = {"xla_disable_hlo_passes": "cse_barrier_expander"}
fs = {"autodiff": jax.jit(jax.grad(loss(jnp.dot), argnums=(0, 1))),
      "custom": jax.jit(jax.grad(loss(dense), argnums=(0, 1)))}
comp = {}
for n, f in fs.items():
  c = f.lower(x, w).compile(compiler_options=opts); comp[n] = c
  t = c.as_text()
  dots = [l.strip()[:120] for l in t.splitlines() if " dot(" in l]
  print(n, "ynn fusions:", t.count('"__ynn_fusion"'), "| dots:", *dots, sep="\n  ")
  top = [l.strip()[:100] for l in t.split("ENTRY")[1].splitlines() if "=" in l][:12]
  print("  ENTRY:", *top, sep="\n    ")
a = comp["autodiff"](x, w); b = comp["custom"](x, w)
print("max diff dx", float(jnp.max(jnp.abs(a[0]-b[0]))), "dw", float(jnp.max(jnp.abs(a[1]-b[1]))/jnp.max(jnp.abs(a[1]))))
res = {n: ([], []) for n in comp}
for r in range(int(sys.argv[1])):
  for n, c in comp.items():
    jax.block_until_ready(c(x, w))
    wl, cl = [], []
    for _ in range(8):
      t0, c0 = time.perf_counter(), time.process_time(); jax.block_until_ready(c(x, w))
      wl.append(time.perf_counter() - t0); cl.append(time.process_time() - c0)
    res[n][0].append(statistics.median(wl) * 1e3); res[n][1].append(statistics.median(cl) * 1e3)
for n, (wl, cl) in res.items():
  print(f"{n:10s} grad (dx, dW) ms: wall {statistics.median(wl):.2f} ({min(wl):.2f}-{max(wl):.2f}) cpu {statistics.median(cl):.2f} ({min(cl):.2f}-{max(cl):.2f})")
