"""Evaluation metrics (pure numpy), test-time view averaging, and report files.

Classification (SPEC 7): UAR = mean per-class recall over the classes present in the labels
(sklearn's `balanced_accuracy_score`), WAR = accuracy, weighted and macro F1 (sklearn's
`f1_score` with zero_division=0). Regression: PCC and CCC per dimension (CCC with the unbiased,
ddof=1, covariance and variances, as the original), MAE and RMSE.

The metric functions return fractions (UAR 0.8491); the reports give percentages as the paper
(UAR 84.91).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from hicmae_jax import io_utils


# ---- classification -----------------------------------------------------------------------------

def _as_labels(x) -> np.ndarray:
  x = np.asarray(x)
  if x.ndim != 1:
    raise ValueError(f"expected a 1-D array of class ids, got shape {x.shape}")
  return x.astype(np.int64)


def confusion_matrix(labels, preds, num_classes: int) -> np.ndarray:
  """labels, preds [N] class ids -> [C, C] int64 counts, rows = true class, cols = predicted
  (sklearn's convention)."""
  labels, preds = _as_labels(labels), _as_labels(preds)
  if labels.shape != preds.shape:
    raise ValueError(f"labels {labels.shape} and preds {preds.shape} differ")
  for name, x in (("labels", labels), ("preds", preds)):
    if x.size and (x.min() < 0 or x.max() >= num_classes):
      raise ValueError(f"{name} outside [0, {num_classes}): min {x.min()}, max {x.max()}")
  cm = np.zeros((num_classes, num_classes), np.int64)
  np.add.at(cm, (labels, preds), 1)
  return cm


def _num_classes(labels, preds, num_classes):
  if num_classes is not None:
    return num_classes
  return int(max(np.max(labels, initial=-1), np.max(preds, initial=-1))) + 1


def war(labels, preds) -> float:
  """Weighted average recall = accuracy: mean(labels == preds)."""
  labels, preds = _as_labels(labels), _as_labels(preds)
  return float(np.mean(labels == preds))


accuracy = war


def per_class_recall(labels, preds, num_classes: int | None = None) -> np.ndarray:
  """[C] recall per class; NaN for classes absent from the labels."""
  labels, preds = _as_labels(labels), _as_labels(preds)
  cm = confusion_matrix(labels, preds, _num_classes(labels, preds, num_classes))
  support = cm.sum(axis=1)
  with np.errstate(invalid="ignore", divide="ignore"):
    return np.where(support > 0, np.diag(cm) / np.maximum(support, 1), np.nan)


def uar(labels, preds, num_classes: int | None = None) -> float:
  """Unweighted average recall: mean recall over the classes that occur in `labels`.

  Classes with no true sample are left out of the mean (sklearn's balanced_accuracy_score,
  which is what UAR means), rather than counted as recall 0 (recall_score(average='macro')
  would zero-fill them with a warning when they are predicted).
  """
  return float(np.nanmean(per_class_recall(labels, preds, num_classes)))


def _f1_per_class(cm: np.ndarray) -> np.ndarray:
  tp = np.diag(cm).astype(np.float64)
  denom = cm.sum(axis=0) + cm.sum(axis=1)   # predicted + true = 2 tp + fp + fn
  # 0 where a class is neither predicted nor present (sklearn's zero_division=0).
  return np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)


def weighted_f1(labels, preds, num_classes: int | None = None) -> float:
  """Per-class F1 averaged with weights = true support (sklearn average='weighted')."""
  labels, preds = _as_labels(labels), _as_labels(preds)
  cm = confusion_matrix(labels, preds, _num_classes(labels, preds, num_classes))
  support = cm.sum(axis=1)
  if support.sum() == 0:
    return 0.0
  return float(np.sum(_f1_per_class(cm) * support) / support.sum())


def macro_f1(labels, preds, num_classes: int | None = None) -> float:
  """Unweighted mean F1 over the classes that occur in labels or preds (sklearn's default
  `labels=None`, average='macro', zero_division=0)."""
  labels, preds = _as_labels(labels), _as_labels(preds)
  cm = confusion_matrix(labels, preds, _num_classes(labels, preds, num_classes))
  seen = (cm.sum(axis=0) + cm.sum(axis=1)) > 0
  if not seen.any():
    return 0.0
  return float(np.mean(_f1_per_class(cm)[seen]))


def classification_report(labels, probs_or_logits, class_names: Sequence[str]) -> dict[str, Any]:
  """labels [N] ids, probs_or_logits [N, C] (argmax is the prediction) -> dict.

  Keys: num_samples, uar, war, weighted_f1, macro_f1 (percent), per_class_recall
  {name: percent or None when absent}, support {name: count}, confusion_matrix [C][C] (rows
  true, cols predicted), class_names.
  """
  scores = np.asarray(probs_or_logits)
  num_classes = len(class_names)
  if scores.ndim != 2 or scores.shape[1] != num_classes:
    raise ValueError(f"probs_or_logits {scores.shape}: expected [N, {num_classes}]")
  labels = _as_labels(labels)
  preds = scores.argmax(axis=1)
  cm = confusion_matrix(labels, preds, num_classes)
  recall = per_class_recall(labels, preds, num_classes)
  pct = lambda v: 100.0 * float(v)
  return {
      "num_samples": int(labels.size),
      "uar": pct(uar(labels, preds, num_classes)),
      "war": pct(war(labels, preds)),
      "weighted_f1": pct(weighted_f1(labels, preds, num_classes)),
      "macro_f1": pct(macro_f1(labels, preds, num_classes)),
      "per_class_recall": {n: (None if np.isnan(r) else pct(r))
                           for n, r in zip(class_names, recall)},
      "support": {n: int(s) for n, s in zip(class_names, cm.sum(axis=1))},
      "confusion_matrix": cm.tolist(),
      "class_names": list(class_names),
  }


# ---- test-time view averaging -------------------------------------------------------------------

def softmax64(logits) -> np.ndarray:
  """[..., C] -> float64 softmax (the original's test prediction computes it in float64)."""
  x = np.asarray(logits, np.float64)
  x = x - x.max(axis=-1, keepdims=True)
  e = np.exp(x)
  return e / e.sum(axis=-1, keepdims=True)


def average_views(clip_index, view_index, probs, valid) -> tuple[np.ndarray, np.ndarray]:
  """Mean probabilities over the views of each clip (SPEC 2a test prediction).

  clip_index [N] int, view_index [N] int, probs [N, C] (softmax probabilities, averaged in
  float64), valid [N] bool (False = padding rows of the last batch, skipped).
  Returns clip_ids [M] (sorted unique clip ids among valid rows) and mean_probs [M, C] float64.
  A (clip, view) pair seen twice raises ValueError: it means a row was evaluated twice (e.g.
  padding marked valid), which would silently re-weight that clip.
  """
  clip_index = np.asarray(clip_index, np.int64)
  view_index = np.asarray(view_index, np.int64)
  probs = np.asarray(probs, np.float64)
  valid = np.asarray(valid, bool)
  if probs.ndim != 2 or not (clip_index.shape == view_index.shape == valid.shape
                             == probs.shape[:1]):
    raise ValueError(f"shapes: clip_index {clip_index.shape}, view_index {view_index.shape}, "
                     f"probs {probs.shape}, valid {valid.shape}")
  clip_index, view_index, probs = clip_index[valid], view_index[valid], probs[valid]
  pairs = np.stack([clip_index, view_index], axis=1)
  if len(np.unique(pairs, axis=0)) != len(pairs):
    raise ValueError("a (clip, view) pair occurs more than once among the valid rows")
  clip_ids, inverse = np.unique(clip_index, return_inverse=True)
  sums = np.zeros((len(clip_ids), probs.shape[1]), np.float64)
  np.add.at(sums, inverse, probs)
  counts = np.bincount(inverse, minlength=len(clip_ids)).astype(np.float64)
  return clip_ids, sums / counts[:, None]


# ---- regression ---------------------------------------------------------------------------------

def _pair(targets, preds) -> tuple[np.ndarray, np.ndarray]:
  t = np.asarray(targets, np.float64)
  p = np.asarray(preds, np.float64)
  if t.shape != p.shape:
    raise ValueError(f"targets {t.shape} and preds {p.shape} differ")
  if t.ndim == 1:
    t, p = t[:, None], p[:, None]
  return t, p


def pcc(targets, preds) -> np.ndarray:
  """Pearson correlation per dimension: [N] or [N, K] -> [K] (NaN for a constant column)."""
  t, p = _pair(targets, preds)
  dt, dp = t - t.mean(0), p - p.mean(0)
  with np.errstate(invalid="ignore", divide="ignore"):
    return (dt * dp).sum(0) / np.sqrt((dt ** 2).sum(0) * (dp ** 2).sum(0))


def ccc(targets, preds) -> np.ndarray:
  """Concordance correlation per dimension: 2 cov / (var_t + var_p + (mean_t - mean_p)^2),
  covariance and variances unbiased (ddof=1) as the original. [N] or [N, K] -> [K]."""
  t, p = _pair(targets, preds)
  n = t.shape[0]
  mt, mp = t.mean(0), p.mean(0)
  cov = ((t - mt) * (p - mp)).sum(0) / (n - 1)
  vt = ((t - mt) ** 2).sum(0) / (n - 1)
  vp = ((p - mp) ** 2).sum(0) / (n - 1)
  with np.errstate(invalid="ignore", divide="ignore"):
    return 2 * cov / (vt + vp + (mt - mp) ** 2)


def mae(targets, preds) -> np.ndarray:
  t, p = _pair(targets, preds)
  return np.abs(t - p).mean(0)


def rmse(targets, preds) -> np.ndarray:
  t, p = _pair(targets, preds)
  return np.sqrt(((t - p) ** 2).mean(0))


def regression_report(targets, preds, names: Sequence[str]) -> dict[str, Any]:
  """targets, preds [N, K] -> {num_samples, per_dim {name: {pcc, ccc, mae, rmse}}, pcc, ccc,
  mae, rmse (means over dimensions)}. PCC and CCC in percent like the paper, MAE / RMSE in
  target units."""
  t, p = _pair(targets, preds)
  if t.shape[1] != len(names):
    raise ValueError(f"{t.shape[1]} target dimensions but {len(names)} names")
  values = {"pcc": 100.0 * pcc(t, p), "ccc": 100.0 * ccc(t, p), "mae": mae(t, p),
            "rmse": rmse(t, p)}
  report: dict[str, Any] = {"num_samples": int(t.shape[0]), "names": list(names)}
  report["per_dim"] = {n: {k: float(v[i]) for k, v in values.items()}
                       for i, n in enumerate(names)}
  report.update({k: float(np.mean(v)) for k, v in values.items()})
  return report


# ---- files --------------------------------------------------------------------------------------


def save_confusion_matrix_png(cm, class_names: Sequence[str], path, *,
                              title: str = "", normalise: bool = True) -> None:
  """Heat map of the confusion matrix (rows true, cols predicted), written atomically.

  Colours show row-normalised recall when normalise=True; every cell is annotated with its
  count. Uses matplotlib's Agg canvas directly, so no pyplot global state or display is needed.
  """
  # imported here: matplotlib is heavy, and only the reports that draw a picture need it
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure

  cm = np.asarray(cm)
  n = len(class_names)
  if cm.shape != (n, n):
    raise ValueError(f"confusion matrix {cm.shape} for {n} class names")
  rows = cm.sum(axis=1, keepdims=True)
  shown = cm / np.maximum(rows, 1) if normalise else cm
  size = max(4.0, 0.6 * n + 2.0)
  fig = Figure(figsize=(size, size), dpi=100)
  FigureCanvasAgg(fig)
  ax = fig.add_subplot(1, 1, 1)
  im = ax.imshow(shown, cmap="Blues", vmin=0, vmax=1 if normalise else None)
  fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
  ax.set_xticks(range(n), labels=list(class_names), rotation=45, ha="right")
  ax.set_yticks(range(n), labels=list(class_names))
  ax.set_xlabel("predicted")
  ax.set_ylabel("true")
  if title:
    ax.set_title(title)
  threshold = (shown.max() if shown.size else 0) / 2
  for i in range(n):
    for j in range(n):
      ax.text(j, i, str(int(cm[i, j])), ha="center", va="center", fontsize=8,
              color="white" if shown[i, j] > threshold else "black")
  fig.tight_layout()
  io_utils.atomic_write(path, lambda f: fig.savefig(f, format="png"))
