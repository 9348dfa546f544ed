import time, statistics, sys
import numpy as np, jax, jax.numpy as jnp
rng = np.random.default_rng(0)
specs = {"MLP up bwd nt [1600,384]x[1536,384]": ((1600,384),(1536,384),(1,),(1,)),
         "MLP down bwd nt [1600,1536]x[384,1536]": ((1600,1536),(384,1536),(1,),(1,)),
         "MLP up fwd nn [1600,384]x[384,1536]": ((1600,384),(384,1536),(1,),(0,))}
COPIES = 12  # rotating operand sets: > 64 MB in all, more than the caches
res = {}
for r in range(int(sys.argv[1])):
  for name, (ls, rs, lc, rc) in specs.items():
    f = jax.jit(lambda x, y, lc=lc, rc=rc: jax.lax.dot_general(x, y, ((lc, rc), ((), ()))))
    sets = [(jnp.asarray(rng.random(ls, dtype=np.float32)), jnp.asarray(rng.random(rs, dtype=np.float32))) for _ in range(COPIES)]
    fl = 2 * np.prod(ls) * rs[0 if rc == (1,) else 1]
    for mode in ("hot", "cold"):
      for a, b in sets[:2]: f(a, b).block_until_ready()
      w, c = [], []
      for i in range(24):
        a, b = sets[0] if mode == "hot" else sets[i % COPIES]
        t0, c0 = time.perf_counter(), time.process_time()
        f(a, b).block_until_ready()
        w.append(time.perf_counter() - t0); c.append(time.process_time() - c0)
      res.setdefault((name, mode), ([], []))
      res[(name, mode)][0].append(fl / statistics.median(w) / 1e9)
      res[(name, mode)][1].append(fl / statistics.median(c) / 1e9)
for (name, mode), (w, c) in res.items():
  print(f"{name:40s} {mode:4s} GFLOP/s wall {statistics.median(w):6.1f} ({min(w):.1f}-{max(w):.1f})  per CPU-s {statistics.median(c):6.1f}")
