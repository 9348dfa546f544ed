import jax, jax.numpy as jnp
from flax import nnx
B = jax.lax.optimization_barrier

def make_dense(mode):
  @jax.custom_vjp
  def dense(x, w):
    return jax.lax.dot_general(x, w, (((x.ndim - 1,), (0,)), ((), ())))
  def fwd(x, w):
    return dense(x, w), (x, w)
  def bwd(res, dy):
    x, w = res
    k, n = w.shape
    x2, dy2 = x.reshape(-1, k), dy.reshape(-1, n)
    dx = jax.lax.dot_general(dy, w, (((dy.ndim - 1,), (1,)), ((), ())))
    if mode == "xt" or (mode == "min" and k <= n):
      xt = B(x2.T)
      dw = jnp.dot(xt, dy2)
    else:
      dyt = B(B(dy2).T) if mode != "min_nob" else B(dy2.T)
      dw = B(jnp.dot(dyt, x2)).T
    return dx, dw.astype(w.dtype)
  dense.defvjp(fwd, bwd)
  def dot_general(lhs, rhs, dims, precision=None, preferred_element_type=None, out_sharding=None):
    assert dims == (((lhs.ndim - 1,), (0,)), ((), ())), dims
    return dense(lhs, rhs)
  return dot_general

def _patch(mode):
  orig = nnx.Linear.__init__
  dg = make_dense(mode)
  def init(self, *a, **kw):
    orig(self, *a, **kw); self.dot_general = dg
  nnx.Linear.__init__ = init
  def undo(): nnx.Linear.__init__ = orig
  return undo

def v_dmin(): return _patch("min")
def v_dxt(): return _patch("xt")
def v_dminnob(): return _patch("min_nob")

import math
SQRT1_2 = 1 / math.sqrt(2); INV_SQRT_2PI = 1 / math.sqrt(2 * math.pi)
def gelu_erf(x, approximate=False):
  return 0.5 * x * (1 + jax.lax.erf(x * SQRT1_2))

@jax.custom_jvp
def gelu_jvp(x):
  return 0.5 * x * (1 + jax.lax.erf(x * SQRT1_2))
@gelu_jvp.defjvp
def _gj(primals, tangents):
  (x,), (t,) = primals, tangents
  cdf = 0.5 * (1 + jax.lax.erf(x * SQRT1_2))
  return x * cdf, t * (cdf + x * INV_SQRT_2PI * jnp.exp(-0.5 * x * x))

def _patch_gelu(f):
  orig = jax.nn.gelu
  jax.nn.gelu = lambda x, approximate=False: f(x)
  def undo(): jax.nn.gelu = orig
  return undo

def _both(*undos):
  def undo():
    for u in undos: u()
  return undo
def v_dxt_gerf(): return _both(_patch("xt"), _patch_gelu(gelu_erf))
def v_dxt_gjvp(): return _both(_patch("xt"), _patch_gelu(gelu_jvp))
def v_dmin_gerf(): return _both(_patch("min"), _patch_gelu(gelu_erf))
def v_dminnob_gerf(): return _both(_patch("min_nob"), _patch_gelu(gelu_erf))
