import jax, jax.numpy as jnp, re
opts = {"xla_disable_hlo_passes": "cse_barrier_expander"}
x = jnp.ones((2, 800, 384)); w = jnp.ones((384, 1536)); g = jnp.ones((2, 800, 1536))
def ln(x): return (x - x.mean(-1, keepdims=True)) * jax.lax.rsqrt(x.var(-1, keepdims=True) + 1e-6)
@jax.custom_vjp
def mm2(x, w): return x @ w
mm2.defvjp(lambda x, w: (x @ w, (x, w)), lambda r, dy: (dy @ r[1].T, jax.lax.dot_general(r[0].reshape(-1, r[0].shape[-1]), dy.reshape(-1, dy.shape[-1]), (((0,), (0,)), ((), ())))))
for name, f in [("autodiff", lambda x, w: x @ w), ("flat", mm2)]:
  c = jax.jit(jax.grad(lambda x, w: jnp.sum(jnp.tanh(f(ln(x), w)) * g), (0, 1))).lower(x, w).compile(compiler_options=opts)
  t = c.as_text().split("ENTRY")[1]
  print(name)
  for l in t.splitlines():
    if "=" in l and ("dot" in l or "transpose" in l or "copy" in l or "ynn" in l):
      print("   ", re.sub(r", metadata=.*", "", l.strip())[:230])
