"""Default settings of the feature tools: the linear probe and the embedding plot.

ml_collections only, so configs (configs/common.py re-exports both) import them cheaply.
"""
import ml_collections


def feature_probe_config() -> ml_collections.ConfigDict:
  """Linear probe on exported features (python -m hicmae_jax.tools.linear_probe)."""
  p = ml_collections.ConfigDict()
  p.steps = 500               # AdamW steps on standardised features
  p.learning_rate = 1e-2
  p.weight_decay = 1e-4
  p.batch_size = 0            # 0: full batch
  p.seed = 0
  p.train_per_class = 0       # > 0: train on that many clips per class only (few-shot)
  return p


def embedding_plot_config() -> ml_collections.ConfigDict:
  """2-D embedding of exported features (python -m hicmae_jax.tools.plot_embeddings)."""
  e = ml_collections.ConfigDict()
  e.method = "tsne"           # tsne | pca
  e.perplexity = 30.0         # t-SNE: effective neighbours (lowered for small sets)
  e.iterations = 1000
  e.learning_rate = 200.0
  e.early_exaggeration = 12.0
  e.pca_dims = 50             # t-SNE runs on the first PCA components
  e.max_points = 5000         # a random subset above this (exact t-SNE is O(N^2))
  e.seed = 0
  return e
