"""Linear probe on frozen features: softmax regression, trained with AdamW, reported as UAR/WAR.

Features are standardised with the training set's mean and std (so one learning rate suits
any checkpoint's feature scale); the classifier is W x + b trained full-batch (batch_size 0) or
on random mini-batches for a fixed number of steps, cross-entropy plus decoupled weight decay.
Rows that are windows of the same clip are scored per clip: their class probabilities are
averaged (as test-time views), so UAR/WAR count clips.
"""
from __future__ import annotations

import dataclasses
import functools
import logging
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from hicmae_jax import metrics
from hicmae_jax.representations import features

log = logging.getLogger(__name__)


@dataclasses.dataclass
class LinearProbe:
  """A trained probe: standardisation (mean, std [F]) and the classifier (kernel [F, C],
  bias [C])."""
  mean: np.ndarray
  std: np.ndarray
  kernel: np.ndarray
  bias: np.ndarray
  final_loss: float

  def logits(self, x: np.ndarray) -> np.ndarray:
    """x [N, F] -> [N, C]."""
    x = np.asarray(x, np.float64)
    if x.ndim != 2 or x.shape[1] != self.kernel.shape[0]:
      raise ValueError(f"features {x.shape}: the probe was trained on [N, "
                       f"{self.kernel.shape[0]}]")
    return ((x - self.mean) / self.std) @ self.kernel + self.bias


def _check_xy(x, y, name: str) -> tuple[np.ndarray, np.ndarray]:
  x = np.asarray(x, np.float32)
  y = np.asarray(y, np.int64)
  if x.ndim != 2 or y.shape != (x.shape[0],):
    raise ValueError(f"{name}: features {x.shape} and labels {y.shape} must be [N, F] and [N]")
  if (y < 0).any():
    raise ValueError(f"{name}: {int((y < 0).sum())} rows have no label (-1); a probe needs a "
                     f"labelled split")
  if not np.isfinite(x).all():
    raise ValueError(f"{name}: features hold non-finite values")
  return x, y


@functools.partial(jax.jit, static_argnames=("num_classes", "steps", "batch_size"))
def _train(xs, ys, learning_rate, weight_decay, key, *, num_classes: int, steps: int,
           batch_size: int):
  """AdamW on softmax cross-entropy, all steps in one scan; compiled once per shape."""
  n, f = xs.shape
  tx = optax.adamw(learning_rate, weight_decay=weight_decay)
  params = {"kernel": jnp.zeros((f, num_classes), jnp.float32),
            "bias": jnp.zeros((num_classes,), jnp.float32)}

  def loss_fn(p, xb, yb):
    logits = xb @ p["kernel"] + p["bias"]
    return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()

  def step(carry, k):
    p, opt_state = carry
    if batch_size and batch_size < n:
      idx = jax.random.choice(k, n, (batch_size,), replace=False)
      xb, yb = xs[idx], ys[idx]
    else:
      xb, yb = xs, ys
    loss, grads = jax.value_and_grad(loss_fn)(p, xb, yb)
    updates, opt_state = tx.update(grads, opt_state, p)
    return (optax.apply_updates(p, updates), opt_state), loss

  (params, _), losses = jax.lax.scan(step, (params, tx.init(params)),
                                     jax.random.split(key, steps))
  return params, losses


def fit(x, y, num_classes: int, *, steps: int = 500, learning_rate: float = 1e-2,
        weight_decay: float = 1e-4, batch_size: int = 0, seed: int = 0) -> LinearProbe:
  """Trains a linear classifier on x [N, F] with labels y [N] in [0, num_classes)."""
  x, y = _check_xy(x, y, "train")
  if y.max() >= num_classes:
    raise ValueError(f"train labels go up to {y.max()}, num_classes is {num_classes}")
  if steps < 1:
    raise ValueError(f"steps={steps} must be >= 1")
  mean = x.mean(axis=0)
  std = x.std(axis=0) + 1e-6  # constant features stay 0 instead of dividing by zero
  params, losses = _train(jnp.asarray((x - mean) / std), jnp.asarray(y),
                          jnp.float32(learning_rate), jnp.float32(weight_decay),
                          jax.random.key(seed), num_classes=int(num_classes), steps=int(steps),
                          batch_size=int(batch_size))
  return LinearProbe(mean=mean.astype(np.float64), std=std.astype(np.float64),
                     kernel=np.asarray(params["kernel"], np.float64),
                     bias=np.asarray(params["bias"], np.float64),
                     final_loss=float(losses[-1]))


def clip_probabilities(probe: LinearProbe, x, clip_ids: Sequence[str]
                       ) -> tuple[list[str], np.ndarray]:
  """Per-clip class probabilities: the mean over a clip's rows (windows) of softmax(logits).

  Returns (clip ids in first-seen order, probabilities [num_clips, C])."""
  probs = metrics.softmax64(probe.logits(x))
  order: dict[str, int] = {}
  for c in clip_ids:
    order.setdefault(c, len(order))
  inverse = np.array([order[c] for c in clip_ids])
  sums = np.zeros((len(order), probs.shape[1]))
  np.add.at(sums, inverse, probs)
  return list(order), sums / np.bincount(inverse)[:, None]


def evaluate(probe: LinearProbe, x, y, clip_ids: Sequence[str],
             class_names: Sequence[str]) -> dict[str, Any]:
  """The classification report (UAR, WAR, F1 in percent; confusion matrix) over clips."""
  x, y = _check_xy(x, y, "eval")
  ids, probs = clip_probabilities(probe, x, clip_ids)
  first = {}
  for c, label in zip(clip_ids, y):
    if first.setdefault(c, label) != label:
      raise ValueError(f"clip {c!r} has rows with different labels")
  labels = np.array([first[c] for c in ids])
  report = metrics.classification_report(labels, probs, list(class_names))
  report["num_clips"] = len(ids)
  report["num_rows"] = int(x.shape[0])
  return report


def few_shot_subset(labels: np.ndarray, clip_ids: Sequence[str], per_class: int,
                    seed: int) -> np.ndarray:
  """Row indices of `per_class` random clips of each class (all their windows); per_class 0
  keeps every row. The learning check probes with few labels, where features matter most."""
  if per_class <= 0:
    return np.arange(len(labels))
  rng = np.random.default_rng(seed)
  clip_label: dict[str, int] = {}
  for c, label in zip(clip_ids, labels):
    clip_label.setdefault(c, int(label))
  chosen = set()
  for k in sorted(set(clip_label.values())):
    clips = sorted(c for c, label in clip_label.items() if label == k)
    if len(clips) < per_class:
      raise ValueError(f"class {k} has {len(clips)} clips, fewer than per_class={per_class}")
    chosen.update(rng.choice(clips, per_class, replace=False).tolist())
  return np.array([i for i, c in enumerate(clip_ids) if c in chosen])


def run_probe(train_set, eval_sets: dict[str, Any], *, steps: int, learning_rate: float,
              weight_decay: float, batch_size: int = 0, seed: int = 0,
              train_per_class: int = 0) -> dict[str, Any]:
  """Fits on a FeatureSet (optionally `train_per_class` clips per class) and evaluates on
  {name: FeatureSet}; returns {"train": report, name: report, ..., "settings": {...}}."""
  names = train_set.class_names
  if not names:
    raise ValueError(f"{train_set.directory}: no labels, cannot train a probe")
  for name, s in eval_sets.items():
    if s.features.shape[1] != train_set.features.shape[1]:
      raise ValueError(f"{name} features are {s.features.shape[1]}-dimensional, train "
                       f"features {train_set.features.shape[1]}: export both with the same "
                       f"checkpoint")
  rows = few_shot_subset(train_set.labels, train_set.clip_ids, train_per_class, seed)
  x, y = train_set.features[rows], train_set.labels[rows]
  ids = [train_set.clip_ids[i] for i in rows]
  probe = fit(x, y, len(names), steps=steps, learning_rate=learning_rate,
              weight_decay=weight_decay, batch_size=batch_size, seed=seed)
  out = {"train": evaluate(probe, x, y, ids, names)}
  for name, s in eval_sets.items():
    out[name] = evaluate(probe, s.features, s.labels, s.clip_ids, names)
  out["settings"] = {"steps": steps, "learning_rate": learning_rate,
                     "weight_decay": weight_decay, "batch_size": batch_size, "seed": seed,
                     "train_per_class": train_per_class, "train_clips": len(set(ids)),
                     "feature_dim": int(x.shape[1]), "final_train_loss": probe.final_loss}
  return out


def probe_feature_dirs(train: str, evals: dict[str, str], config) -> dict:
  """`python -m hicmae_jax.tools.linear_probe` as a function: loads the folders, fits on
  `train`, evaluates every {name: folder} of `evals` (config: feature_probe_config)."""
  train_set = features.load_features(train)
  eval_sets = {name: features.load_features(path) for name, path in evals.items() if path}
  results = run_probe(train_set, eval_sets, steps=config.steps,
                            learning_rate=config.learning_rate,
                            weight_decay=config.weight_decay, batch_size=config.batch_size,
                            seed=config.seed, train_per_class=config.train_per_class)
  results["features"] = {"train": train, **{k: v for k, v in evals.items() if v}}
  return results
