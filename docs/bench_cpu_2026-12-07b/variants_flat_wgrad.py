import jax, jax.numpy as jnp
from hicmae_jax.models import matmul as mm, embed
B = jax.lax.optimization_barrier
def make(mode):
  @jax.custom_vjp
  def f(x, w):
    return jax.lax.dot_general(x, w, (((x.ndim - 1,), (0,)), ((), ())))
  def fwd(x, w): return f(x, w), (x, w)
  def bwd(res, dy):
    x, w = res; k, n = w.shape
    x2, dy2 = x.reshape(-1, k), dy.reshape(-1, n)
    dx = jax.lax.dot_general(dy, w, (((dy.ndim - 1,), (1,)), ((), ())))
    if mode == "eig":
      dw = jax.lax.dot_general(B(x2), B(dy2), (((0,), (0,)), ((), ())))
    elif mode == "eig_nob":
      dw = jax.lax.dot_general(x2, dy2, (((0,), (0,)), ((), ())))
    return dx, dw.astype(w.dtype)
  f.defvjp(fwd, bwd); return f
def _patch(f):
  o1, o2 = mm.matmul, embed.matmul
  mm.matmul = f; embed.matmul = f
  def undo(): mm.matmul = o1; embed.matmul = o2
  return undo
def v_eig(): return _patch(make("eig"))
def v_eignob(): return _patch(make("eig_nob"))
