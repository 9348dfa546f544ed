import time, statistics, sys
import numpy as np, jax, jax.numpy as jnp
rng = np.random.default_rng(0)
B,H,N,D = 2,8,80,64
def mk(*s): return jnp.asarray(rng.random(s, dtype=np.float32))
q, k = mk(B,H,N,D), mk(B,H,N,D)
kt = mk(B,H,D,N)
REP=50
fl = 2*B*H*N*N*D*REP
def loop(eq):
  def f(a,b):
    return tuple(jnp.einsum(eq, a[i], b) for i in range(REP))
  return jax.jit(f)
q = jnp.stack([q + i for i in range(REP)])
fns = {"nt (current scores)": (loop("bhqd,bhkd->bhqk"), (q,k)), "tn": (loop("bhdq,bhdk->bhqk"), (jnp.swapaxes(q,-1,-2),kt)),
       "nn": (loop("bhqd,bhdk->bhqk"), (q,kt))}
res = {n: ([],[]) for n in fns}
for r in range(int(sys.argv[1]) if len(sys.argv)>1 else 5):
  for n,(f,args) in fns.items():
    for _ in range(2): jax.block_until_ready(f(*args))
    w,c=[],[]
    for _ in range(20):
      t0,c0=time.perf_counter(),time.process_time(); jax.block_until_ready(f(*args))
      w.append(time.perf_counter()-t0); c.append(time.process_time()-c0)
    res[n][0].append(fl/statistics.median(w)/1e9); res[n][1].append(fl/statistics.median(c)/1e9)
for n,(w,c) in res.items():
  print(f"{n:30s} wall GFLOP/s median {statistics.median(w):6.1f} ({min(w):.1f}-{max(w):.1f})  cpu {statistics.median(c):6.1f}")
f = fns["nt (current scores)"][0]
#()[:150] for l in f.lower(q,k).compile().as_text().splitlines() if "fusion(" in l or "while" in l][:6])
