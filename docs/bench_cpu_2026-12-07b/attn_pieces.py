"""Each product and elementwise piece of the native attention's backward, jitted and timed alone
(median of 20), at the decoder's shape [2, 800, 6, 64] (or argv: b n h d)."""
import statistics, sys, time
import jax, jax.numpy as jnp, numpy as np
b, n, h, d = [int(v) for v in (sys.argv[1:5] if len(sys.argv) > 4 else (2, 800, 6, 64))]
rng = np.random.default_rng(0)
def r(*s): return jnp.asarray(rng.standard_normal(s), jnp.float32)
qh, kh, vh, do, out = r(b, h, n, d), r(b, h, n, d), r(b, h, n, d), r(b, h, n, d), r(b, h, n, d)
probs = jax.nn.softmax(r(b, h, n, n), -1); dp = r(b, h, n, n); delta = r(b, h, n, 1)
opts = {"xla_disable_hlo_passes": "cse_barrier_expander"}
pieces = {
  "scores qk^T (3|3)": (lambda q, k: jnp.einsum("bhqd,bhkd->bhqk", q, k), (qh, kh)),
  "scores + softmax": (lambda q, k: jax.nn.softmax(jnp.einsum("bhqd,bhkd->bhqk", q, k), -1), (qh, kh)),
  "softmax alone": (lambda x: jax.nn.softmax(x, -1), (dp,)),
  "out = p v (3|2)": (lambda p, v: jnp.einsum("bhqk,bhkd->bhqd", p, v), (probs, vh)),
  "dv = p^T dO (2|2)": (lambda p, o: jnp.einsum("bhqk,bhqd->bhkd", p, o), (probs, do)),
  "dp = dO v^T (3|3)": (lambda o, v: jnp.einsum("bhqd,bhkd->bhqk", o, v), (do, vh)),
  "delta = rowsum(dO*O)": (lambda o, x: jnp.sum(o * x, -1, keepdims=True), (do, out)),
  "ds = p (dp - delta)": (lambda p, g, dl: p * (g - dl), (probs, dp, delta)),
  "dp + ds fused": (lambda o, v, p, dl: p * (jnp.einsum("bhqd,bhkd->bhqk", o, v) - dl), (do, vh, probs, delta)),
  "dq = ds k (3|2)": (lambda s, k: jnp.einsum("bhqk,bhkd->bhqd", s, k), (dp, kh)),
  "dk = ds^T q (2|2)": (lambda s, q: jnp.einsum("bhqk,bhqd->bhkd", s, q), (dp, qh)),
}
comp = {k: (jax.jit(f).lower(*a).compile(compiler_options=opts), a) for k, (f, a) in pieces.items()}
res = {k: [] for k in comp}
for rnd in range(3):
  for k, (c, a) in comp.items():
    jax.block_until_ready(c(*a)); ts = []
    for _ in range(20):
      t = time.perf_counter(); jax.block_until_ready(c(*a)); ts.append(time.perf_counter() - t)
    res[k].append(statistics.median(ts) * 1e3)
dot_gflop = 2 * b * h * n * n * d / 1e9
for k, v in res.items():
  ms = statistics.median(v)
  gf = f"{dot_gflop / ms * 1e3:6.1f} GFLOP/s" if "(" in k and "rowsum" not in k and "p (dp" not in k else ""
  print(f"{k:24s} {ms:7.2f} ms {gf}")
