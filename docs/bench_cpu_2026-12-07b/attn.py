"""fwd+bwd of the native attention alone at decoder size, formulations alternated."""
import sys, time, statistics, jax, jax.numpy as jnp, numpy as np

from hicmae_jax.models import layers
B = jax.lax.optimization_barrier
b, n, h, d = [int(v) for v in (sys.argv[1:5] if len(sys.argv) > 4 else (2, 800, 6, 64))]
rng = np.random.default_rng(0)
q, k, v, g = (jnp.asarray(rng.standard_normal((b, n, h, d)), jnp.float32) for _ in range(4))
th = layers._to_heads
def make(fwdf, bwdf):
  @jax.custom_vjp
  def f(q, k, v): return fwdf(q, k, v)[0]
  f.defvjp(fwdf, bwdf); return f
def fwd_bar(q, k, v):
  ct = jnp.float32; qh, kh, vh = th(q), th(k), th(v)
  logits = B(jnp.einsum("bhqd,bhkd->bhqk", qh, kh))
  probs = jax.nn.softmax(logits, axis=-1)
  out = jnp.einsum("bhqk,bhkd->bhqd", probs, vh)
  return th(out), (qh, kh, vh, probs, out)
def bwd_bar(res, d_out):
  qh, kh, vh, probs, out = res; do = th(d_out)
  dv = jnp.einsum("bhqk,bhqd->bhkd", probs, do)
  dp = B(jnp.einsum("bhqd,bhkd->bhqk", do, vh))
  delta = jnp.sum(do * out, axis=-1, keepdims=True)
  ds = probs * (dp - delta)
  dq = jnp.einsum("bhqk,bhkd->bhqd", ds, kh); dk = jnp.einsum("bhqk,bhqd->bhkd", ds, qh)
  return th(dq), th(dk), th(dv)
def fwd_recip(q, k, v):
  qh, kh, vh = th(q), th(k), th(v)
  logits = jnp.einsum("bhqd,bhkd->bhqk", qh, kh)
  e = jnp.exp(logits - jnp.max(logits, -1, keepdims=True))
  probs = e * (1 / jnp.sum(e, -1, keepdims=True))
  out = jnp.einsum("bhqk,bhkd->bhqd", probs, vh)
  return th(out), (qh, kh, vh, probs, out)
def bwd_t(res, d_out):
  qh, kh, vh, probs, out = res; do = th(d_out)
  doT = B(jnp.swapaxes(do, 2, 3))
  dvT = jnp.einsum("bhdq,bhqk->bhdk", doT, probs)
  dp = jnp.einsum("bhqd,bhkd->bhqk", do, vh)
  delta = jnp.sum(do * out, axis=-1, keepdims=True)
  ds = probs * (dp - delta)
  dq = jnp.einsum("bhqk,bhkd->bhqd", ds, kh)
  qT = B(jnp.swapaxes(qh, 2, 3))
  dkT = jnp.einsum("bhdq,bhqk->bhdk", qT, ds)
  return th(dq), dkT.transpose(0, 3, 1, 2), dvT.transpose(0, 3, 1, 2)
def bwd_t2(res, d_out):
  qh, kh, vh, probs, out = res; do = th(d_out)
  doT = B(jnp.swapaxes(do, 2, 3))
  dvT = B(jnp.einsum("bhdq,bhqk->bhdk", doT, probs))
  dp = jnp.einsum("bhqd,bhkd->bhqk", do, vh)
  delta = jnp.sum(do * out, axis=-1, keepdims=True)
  ds = probs * (dp - delta)
  dq = jnp.einsum("bhqk,bhkd->bhqd", ds, kh)
  qT = B(jnp.swapaxes(qh, 2, 3))
  dkT = B(jnp.einsum("bhdq,bhqk->bhdk", qT, ds))
  return th(dq), dkT.transpose(0, 3, 1, 2), dvT.transpose(0, 3, 1, 2)
def fwd_eig(q, k, v):
  # scores with the lhs contracted on its major dim: XLA's own (Eigen) dot, not YNNPACK's
  qh, kh, vh = th(q), th(k), th(v)
  qT = B(jnp.swapaxes(qh, 2, 3))
  logits = jnp.einsum("bhdq,bhkd->bhqk", qT, kh)
  probs = jax.nn.softmax(logits, axis=-1)
  out = jnp.einsum("bhqk,bhkd->bhqd", probs, vh)
  return th(out), (qh, kh, vh, probs, out)
def fwd_fold(q, k, v):
  # batch and heads folded into one batch dim
  qh, kh, vh = th(q), th(k), th(v)
  s = qh.shape
  logits = jnp.einsum("xqd,xkd->xqk", qh.reshape(-1, s[2], s[3]), kh.reshape(-1, kh.shape[2], s[3])).reshape(s[0], s[1], s[2], -1)
  probs = jax.nn.softmax(logits, axis=-1)
  out = jnp.einsum("bhqk,bhkd->bhqd", probs, vh)
  return th(out), (qh, kh, vh, probs, out)
def _one_fwd(q, k, v):
  # one (batch, head): q, k, v [n, d]
  logits = q @ k.T
  p = jax.nn.softmax(logits, axis=-1)
  o = p @ v
  return o, (q, k, v, p, o)
def _one_bwd(res, do):
  q, k, v, p, o = res
  dv = jnp.einsum("qk,qd->kd", p, do)
  dp = do @ v.T
  ds = p * (dp - jnp.sum(do * o, -1, keepdims=True))
  return ds @ k, jnp.einsum("qk,qd->kd", ds, q), dv
one = make(_one_fwd, _one_bwd)
def mapped(chunk):
  def f(q, k, v):
    b, n, h, d = q.shape
    qh, kh, vh = (th(t).reshape(b * h // chunk, chunk, n, d) for t in (q, k, v))
    o = jax.lax.map(lambda a: jax.vmap(one)(*a), (qh, kh, vh))
    return th(o.reshape(b, h, n, d))
  return f
variants = {
  "map1": mapped(1),
  "map2": mapped(2),
  "map6": mapped(6),
  "eig_fwd": make(fwd_eig, layers._native_attention_bwd),
  "fold_fwd": make(fwd_fold, layers._native_attention_bwd),
  "bwd_t": make(layers._native_attention_fwd, bwd_t),
  "bwd_t2": make(layers._native_attention_fwd, bwd_t2),
  "native": layers._native_attention,
  "bar_fwd": make(fwd_bar, layers._native_attention_bwd),
  "bar_both": make(fwd_bar, bwd_bar),
  "bar_bwd": make(layers._native_attention_fwd, bwd_bar),
  "recip": make(fwd_recip, layers._native_attention_bwd),
}
if len(sys.argv) > 5:
  variants = {k: variants[k] for k in ["native"] + sys.argv[5].split(",")}
opts = {"xla_disable_hlo_passes": "cse_barrier_expander"}
comp = {}
for name, f in variants.items():
  loss = lambda q, k, v, f=f: jnp.sum(f(q, k, v) * g)
  comp[name] = (jax.jit(f).lower(q, k, v).compile(compiler_options=opts),
                jax.jit(jax.grad(loss, argnums=(0, 1, 2))).lower(q, k, v).compile(compiler_options=opts))
ref = comp["native"][1](q, k, v)
for name, (cf, cb) in comp.items():
  r = cb(q, k, v); print(name, "max rel diff", max(float(jnp.max(jnp.abs(a - c)) / jnp.max(jnp.abs(a))) for a, c in zip(ref, r)))
res = {nm: ([], []) for nm in comp}
for rnd in range(5):
  for name, (cf, cb) in comp.items():
    for i, c in enumerate((cf, cb)):
      jax.block_until_ready(c(q, k, v)); ts = []
      for _ in range(10):
        t = time.perf_counter(); jax.block_until_ready(c(q, k, v)); ts.append(time.perf_counter() - t)
      res[name][i].append(statistics.median(ts) * 1e3)
for name, (f, fb) in res.items():
  print(f"{name:10s} fwd {statistics.median(f):.2f} ms  fwd+bwd {statistics.median(fb):.2f} ms  (min {min(fb):.2f})")
