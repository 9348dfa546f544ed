"""hicmae_jax: HiCMAE (hierarchical contrastive masked autoencoder) in JAX/Flax NNX.

`hicmae_jax.from_pretrained(folder)` loads an exported model folder (sharing/pretrained.py).
It is imported on first use (PEP 562), so `import hicmae_jax.<module>` stays light: this file
sits in the top layer of docs/ARCHITECTURE.md, as the package's front door.
"""

__version__ = "0.1.0"


def __getattr__(name: str):
  if name == "from_pretrained":
    from hicmae_jax.sharing.pretrained import from_pretrained
    return from_pretrained
  raise AttributeError(f"module 'hicmae_jax' has no attribute {name!r}")
