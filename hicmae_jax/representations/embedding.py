"""2-D embeddings of features (PCA, exact t-SNE in numpy) and their scatter plot, by label."""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from hicmae_jax.representations import features, figures


def pca(x, dim: int = 2) -> tuple[np.ndarray, np.ndarray]:
  """x [N, F] -> (projection on the top `dim` principal axes [N, dim], explained variance
  ratio [dim]). Signs are fixed (largest |loading| positive) so reruns draw the same picture."""
  x = np.asarray(x, np.float64)
  if x.ndim != 2 or x.shape[0] < 2:
    raise ValueError(f"PCA needs features [N >= 2, F], got {x.shape}")
  centred = x - x.mean(axis=0)
  _, s, vt = np.linalg.svd(centred, full_matrices=False)
  dim = min(dim, vt.shape[0])
  axes = vt[:dim]
  signs = np.sign(axes[np.arange(dim), np.abs(axes).argmax(axis=1)])
  axes = axes * np.where(signs == 0, 1.0, signs)[:, None]
  var = s ** 2
  total = var.sum()
  ratio = var[:dim] / total if total > 0 else np.zeros(dim)
  return centred @ axes.T, ratio


def _conditional_p(d2: np.ndarray, perplexity: float, tol: float = 1e-5,
                   max_iter: int = 100) -> np.ndarray:
  """Row-wise Gaussian affinities [N, N] whose entropy is log(perplexity), by bisection on
  the precision of every row at once."""
  n = d2.shape[0]
  target = np.log(perplexity)
  beta = np.ones(n)
  lo = np.full(n, 0.0)
  hi = np.full(n, np.inf)
  off = ~np.eye(n, dtype=bool)
  # Shifting each row by its smallest distance leaves the entropy unchanged and keeps exp()
  # away from underflow for far-apart points.
  shifted = d2 - np.where(off, d2, np.inf).min(axis=1, keepdims=True)
  for _ in range(max_iter):
    p = np.exp(-shifted * beta[:, None]) * off
    sum_p = np.maximum(p.sum(axis=1), 1e-300)
    entropy = np.log(sum_p) + beta * (shifted * p).sum(axis=1) / sum_p
    diff = entropy - target
    if np.all(np.abs(diff) < tol):
      break
    up = diff > 0  # too flat: sharpen (raise the precision)
    lo = np.where(up, beta, lo)
    hi = np.where(up, hi, beta)
    beta = np.where(up, np.where(np.isinf(hi), beta * 2.0, (beta + hi) / 2.0),
                    (beta + lo) / 2.0)
  return p / sum_p[:, None]


def tsne(x, dim: int = 2, *, perplexity: float = 30.0, iterations: int = 1000,
         learning_rate: float = 200.0, early_exaggeration: float = 12.0, pca_dims: int = 50,
         seed: int = 0) -> np.ndarray:
  """Exact t-SNE (van der Maaten & Hinton 2008; the reference implementation's schedule:
  early exaggeration and momentum 0.5 for the first quarter, then 0.8, adaptive gains).

  x [N, F] -> [N, dim]. O(N^2) memory and time per iteration: meant for up to a few thousand
  points. The perplexity is capped at (N - 1) / 3 for small sets."""
  x = np.asarray(x, np.float64)
  n = x.shape[0]
  if x.ndim != 2 or n < 4:
    raise ValueError(f"t-SNE needs features [N >= 4, F], got {x.shape}")
  if pca_dims and x.shape[1] > pca_dims:
    x, _ = pca(x, pca_dims)
  x = (x - x.mean(axis=0)) / max(float(x.std()), 1e-12)
  perplexity = min(perplexity, (n - 1) / 3.0)
  sq = (x * x).sum(axis=1)
  d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * x @ x.T, 0.0)
  p = _conditional_p(d2, perplexity)
  p = np.maximum((p + p.T) / (2.0 * n), 1e-12)
  rng = np.random.default_rng(seed)
  y = 1e-4 * rng.standard_normal((n, dim))
  step = np.zeros_like(y)
  gains = np.ones_like(y)
  switch = max(1, iterations // 4)
  off = ~np.eye(n, dtype=bool)
  for it in range(iterations):
    exaggeration = early_exaggeration if it < switch else 1.0
    momentum = 0.5 if it < switch else 0.8
    sy = (y * y).sum(axis=1)
    num = off / (1.0 + np.maximum(sy[:, None] + sy[None, :] - 2.0 * y @ y.T, 0.0))
    q = np.maximum(num / num.sum(), 1e-12)
    w = (exaggeration * p - q) * num
    grad = 4.0 * (w.sum(axis=1)[:, None] * y - w @ y)
    same = (grad > 0) == (step > 0)
    gains = np.maximum(np.where(same, gains * 0.8, gains + 0.2), 0.01)
    step = momentum * step - learning_rate * gains * grad
    y = y + step
    y -= y.mean(axis=0)
  return y


def embed(x, *, method: str = "tsne", seed: int = 0, **tsne_kw) -> tuple[np.ndarray, str]:
  """x [N, F] -> ([N, 2], a short description for the axis labels)."""
  if method == "pca":
    y, ratio = pca(x, 2)
    return y, f"PCA ({100 * ratio.sum():.0f}% of the variance)"
  if method == "tsne":
    return tsne(x, 2, seed=seed, **tsne_kw), "t-SNE"
  raise ValueError(f"method={method!r}; allowed: tsne, pca")


def knn_accuracy(x, labels, k: int = 5) -> float:
  """Leave-one-out k-nearest-neighbour accuracy (majority vote, Euclidean) of labelled rows:
  how well the labels cluster in a space (features or their 2-D embedding)."""
  x = np.asarray(x, np.float64)
  labels = np.asarray(labels)
  keep = labels >= 0
  x, labels = x[keep], labels[keep]
  n = x.shape[0]
  if n <= k:
    raise ValueError(f"{n} labelled rows: need more than k={k}")
  sq = (x * x).sum(axis=1)
  d2 = sq[:, None] + sq[None, :] - 2.0 * x @ x.T
  np.fill_diagonal(d2, np.inf)
  nearest = np.argsort(d2, axis=1, kind="stable")[:, :k]
  votes = labels[nearest]
  classes = np.unique(labels)
  counts = (votes[:, :, None] == classes[None, None, :]).sum(axis=1)
  return float(np.mean(classes[counts.argmax(axis=1)] == labels))


def embedding_figure(panels: Sequence[dict], class_names: Sequence[str], *, title: str = ""):
  """Scatter plots side by side, coloured by label. panels: [{"points": [N, 2], "labels":
  [N] (-1 = unlabelled, grey), "title": str, "axis": str}]. Returns a matplotlib Figure."""

  if not panels:
    raise ValueError("nothing to plot")
  fig = Figure(figsize=(4.2 * len(panels) + 1.4, 4.3 + (0.3 if title else 0)), dpi=80)
  FigureCanvasAgg(fig)
  colours = _palette(len(class_names))
  for i, panel in enumerate(panels):
    ax = fig.add_subplot(1, len(panels), i + 1)
    pts = np.asarray(panel["points"])
    labels = np.asarray(panel["labels"])
    size = 24 if len(pts) <= 500 else 8
    if (labels < 0).any():
      ax.scatter(pts[labels < 0, 0], pts[labels < 0, 1], s=size, c="0.6", label="no label",
                 linewidths=0)
    for k, name in enumerate(class_names):
      sel = labels == k
      if sel.any():
        ax.scatter(pts[sel, 0], pts[sel, 1], s=size, color=colours[k], label=name, linewidths=0)
    ax.set_title(panel.get("title", ""), fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlabel(panel.get("axis", ""), fontsize=8)
    if i == len(panels) - 1:
      ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False,
                markerscale=1.5)
  if title:
    fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  return fig


def plot_feature_dirs(dirs, output: str, config, *, titles=(), array: str = "feature",
                      title: str = "") -> dict:
  """`python -m hicmae_jax.tools.plot_embeddings` as a function: embeds every folder's
  features (settings: configs/common.py embedding_plot_config) into one PNG; returns the
  per-panel numbers."""


  if titles and len(titles) != len(dirs):
    raise ValueError(f"{len(titles)} titles for {len(dirs)} feature folders")
  panels, summary, class_names = [], [], []
  for i, d in enumerate(dirs):
    fs = features.load_features(d)
    x = fs.features if array == "feature" else fs.array(array)
    x = x.reshape(x.shape[0], -1)
    labels = fs.labels
    rng = np.random.default_rng(config.seed)
    if config.max_points and x.shape[0] > config.max_points:
      keep = np.sort(rng.choice(x.shape[0], config.max_points, replace=False))
      x, labels = x[keep], labels[keep]
    class_names = class_names or fs.class_names
    points, axis = embed(x, method=config.method, seed=config.seed,
                           **({} if config.method == "pca" else dict(
                               perplexity=config.perplexity, iterations=config.iterations,
                               learning_rate=config.learning_rate,
                               early_exaggeration=config.early_exaggeration,
                               pca_dims=config.pca_dims)))
    name = titles[i] if titles else os.path.basename(os.path.normpath(d))
    entry = {"features": d, "title": name, "num_points": int(x.shape[0])}
    if (labels >= 0).sum() > 5:
      entry["knn5_accuracy"] = round(100 * knn_accuracy(x, labels, 5), 2)
      name += f"\n5-NN accuracy {entry['knn5_accuracy']:.1f}%"
    panels.append({"points": points, "labels": labels, "title": name, "axis": axis})
    summary.append(entry)
  fig = embedding_figure(panels, class_names, title=title)
  figures.save_figure(fig, output)
  return {"output": output, "method": config.method, "panels": summary}


def _palette(n: int) -> list:
  cmap = colormaps["tab10" if n <= 10 else "tab20"]
  return [cmap(i % cmap.N) for i in range(n)]
