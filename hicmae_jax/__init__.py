"""hicmae_jax: HiCMAE (hierarchical contrastive masked autoencoder) in JAX/Flax NNX."""

__version__ = "0.1.0"
