import jax, jax.numpy as jnp
from flax import nnx
from hicmae_jax.models import layers, hicmae, decoders, classifier, embed
def _set(pairs):
  old = [(mod, name, getattr(mod, name)) for mod, name, _ in pairs]
  for mod, name, val in pairs: setattr(mod, name, val)
  def undo():
    for mod, name, val in old: setattr(mod, name, val)
  return undo
OLD_LINEAR = [(mod, "linear", nnx.Linear) for mod in (layers, hicmae, decoders, classifier)] + [(embed, "matmul", jnp.dot)]
OLD_GELU = [(layers, "gelu_exact", lambda x: jax.nn.gelu(x, approximate=False))]
def v_old(): return _set(OLD_LINEAR + OLD_GELU)
def v_oldlin(): return _set(OLD_LINEAR)
def v_oldgelu(): return _set(OLD_GELU)
