"""Weight-gradient dots as XLA leaves them in the step (lhs contracted on dim 0: not a YNNPACK
fusion, XLA's own dot) vs the same product in a form YNNPACK takes."""
import time, statistics, sys
import numpy as np, jax, jax.numpy as jnp
rng = np.random.default_rng(0)
T, DIN, DOUT = 1600, 1536, 384
h = jnp.asarray(rng.random((T, DIN), dtype=np.float32))
dyt = jnp.asarray(rng.random((DOUT, T), dtype=np.float32))   # dy^T as XLA stores it
dy = jnp.asarray(rng.random((T, DOUT), dtype=np.float32))
fl = 2 * T * DIN * DOUT
fs = {
 "in-step form: h[T,Din] c0 x dyT[Dout,T] c1": jax.jit(lambda a, b: jax.lax.dot_general(a, b, (((0,), (1,)), ((), ())))),
 "dyT[Dout,T] c1 x h[T,Din] c0 (nn), out^T": jax.jit(lambda a, b: jax.lax.dot_general(b, a, (((1,), (0,)), ((), ())))),
}
for n, f in fs.items():
  txt = f.lower(h, dyt).compile().as_text()
  print(n, "| ynn" if "__ynn_fusion" in txt else "| not ynn", "|", [l.strip()[:90] for l in txt.splitlines() if " dot(" in l][:1])
res = {n: ([], []) for n in fs}
for r in range(int(sys.argv[1])):
  for n, f in fs.items():
    f(h, dyt).block_until_ready()
    w, c = [], []
    for _ in range(10):
      t0, c0 = time.perf_counter(), time.process_time(); f(h, dyt).block_until_ready()
      w.append(time.perf_counter() - t0); c.append(time.process_time() - c0)
    res[n][0].append(fl / statistics.median(w) / 1e9); res[n][1].append(fl / statistics.median(c) / 1e9)
for n, (w, c) in res.items():
  print(f"{n:45s} GFLOP/s wall {statistics.median(w):6.1f} ({min(w):.1f}-{max(w):.1f}) per CPU-s {statistics.median(c):6.1f} ({min(c):.1f}-{max(c):.1f})")
