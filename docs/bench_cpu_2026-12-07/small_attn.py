import time, statistics, sys
import numpy as np, jax, jax.numpy as jnp
from jax import lax
rng = np.random.default_rng(0)
B,H,N,D = 2,8,80,64
def mk(*s): return jnp.asarray(rng.random(s, dtype=np.float32))
q, k = mk(B,H,N,D), mk(B,H,N,D)
kt = mk(B,H,D,N)
qt = mk(B,H,D,N)
fl = 2*B*H*N*N*D
fns = {
 "nt  q[b,h,n,d].k[b,h,n,d]": (jax.jit(lambda a,b: jnp.einsum("bhqd,bhkd->bhqk", a, b)), (q,k)),
 "nn  q[b,h,n,d].k[b,h,d,n]": (jax.jit(lambda a,b: jnp.einsum("bhqd,bhdk->bhqk", a, b)), (q,kt)),
 "tn  q[b,h,d,n].k[b,h,d,n]": (jax.jit(lambda a,b: jnp.einsum("bhdq,bhdk->bhqk", a, b)), (qt,kt)),
 "nt batch folded [16,80,64]": (jax.jit(lambda a,b: jnp.einsum("xqd,xkd->xqk", a, b)), (q.reshape(16,N,D),k.reshape(16,N,D))),
}
res = {n: ([],[]) for n in fns}
for r in range(int(sys.argv[1]) if len(sys.argv)>1 else 5):
  for n,(f,args) in fns.items():
    for _ in range(3): f(*args).block_until_ready()
    w,c=[],[]
    for _ in range(200):
      t0,c0=time.perf_counter(),time.process_time(); f(*args).block_until_ready()
      w.append(time.perf_counter()-t0); c.append(time.process_time()-c0)
    res[n][0].append(fl/statistics.median(w)/1e9); res[n][1].append(fl/statistics.median(c)/1e9)
for n,(w,c) in res.items():
  print(f"{n:30s} wall GFLOP/s median {statistics.median(w):6.1f} ({min(w):.1f}-{max(w):.1f})  cpu {statistics.median(c):6.1f}")
