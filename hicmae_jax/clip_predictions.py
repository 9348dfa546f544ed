"""Per-clip predictions of an evaluation: the merged (view-averaged) scores the metrics are
computed from, one row per clip, written as a CSV file and read back.

The original's final_test + merge wrote every clip's scores; this is that file. Metrics are
computed from `ClipPredictions.scores` both when evaluating and when reading the file back, so
the file reproduces the reported metrics exactly (floats are written with 17 significant
digits, which round-trips float64).

CSV columns, one row per clip in clip_index order:
  classification: clip_id, clip_index, label, label_name, predicted, predicted_name,
                  score_<class> ... (mean softmax probability over the clip's views),
                  with per-view scores also view<v>_<class> ... (empty where a view is absent)
  regression:     clip_id, clip_index, target_<name> ..., pred_<name> ... (mean over views),
                  with per-view scores also view<v>_<name> ...
"""
from __future__ import annotations

import csv
import dataclasses
import io
from typing import Any, Sequence

import numpy as np

from hicmae_jax import io_utils, metrics

FILENAME = "predictions.csv"            # a run's test split, scored on the selected weights
LAST_FILENAME = "predictions_last.csv"  # a run's test split on the last weights (with val)


@dataclasses.dataclass
class ClipPredictions:
  """Merged scores per clip.

  task: "classification" | "regression"; names: class names (classification) or target
  names; clip_index [M] int (record index in the split); clip_ids [M] str; labels [M] int
  (classification) or targets [M, K] float (regression); scores [M, C or K] float64, the
  mean over views of the softmax probabilities (classification) or outputs (regression);
  per_view [M, V, C or K] float64 with NaN where a clip lacks a view, or None."""
  task: str
  names: list[str]
  clip_index: np.ndarray
  clip_ids: list[str]
  labels: np.ndarray | None
  targets: np.ndarray | None
  scores: np.ndarray
  per_view: np.ndarray | None = None

  def __len__(self) -> int:
    return int(len(self.clip_index))


def from_views(task: str, names: Sequence[str], *, clip_index, view_index, valid, scores,
               labels=None, targets=None, clip_ids: Sequence[str] | None = None
               ) -> ClipPredictions:
  """Merges per-view rows into per-clip predictions.

  clip_index, view_index, valid [N]; scores [N, C] (probabilities, or regression outputs);
  labels [N] / targets [N, K] per row (a clip's first valid row gives its label).
  clip_ids: the split's clip ids in record order (record_index.clip_ids), or None for
  "#<clip_index>"."""
  clip_index = np.asarray(clip_index, np.int64)
  view_index = np.asarray(view_index, np.int64)
  valid = np.asarray(valid, bool)
  scores = np.asarray(scores, np.float64)
  ids, merged = metrics.average_views(clip_index, view_index, scores, valid)
  rows = np.flatnonzero(valid)
  first = {}
  for r in rows[::-1]:
    first[int(clip_index[r])] = r
  pick = np.array([first[int(c)] for c in ids], np.int64)
  num_views = int(view_index[valid].max()) + 1 if valid.any() else 0
  per_view = np.full((len(ids), num_views, scores.shape[1]), np.nan)
  position = np.searchsorted(ids, clip_index[valid])
  per_view[position, view_index[valid]] = scores[valid]
  if clip_ids is None:
    names_of = [f"#{int(c)}" for c in ids]
  else:
    if len(ids) and int(ids.max()) >= len(clip_ids):
      raise ValueError(f"clip_index {int(ids.max())} is beyond the split's {len(clip_ids)} "
                       f"records")
    names_of = [str(clip_ids[int(c)]) for c in ids]
  return ClipPredictions(
      task=task, names=list(names), clip_index=ids, clip_ids=names_of,
      labels=np.asarray(labels)[pick].astype(np.int64) if task == "classification" else None,
      targets=(np.asarray(targets, np.float64)[pick] if task == "regression" else None),
      scores=merged, per_view=per_view)


def metrics_report(preds: ClipPredictions) -> dict[str, Any]:
  """The paper's metrics of the merged scores (metrics.classification_report /
  regression_report)."""
  if preds.task == "classification":
    return metrics.classification_report(preds.labels, preds.scores, preds.names)
  return metrics.regression_report(preds.targets, preds.scores, preds.names)


# ------------------------------------------------------------------------------------- files --

def _number(x: float) -> str:
  return "" if np.isnan(x) else repr(float(x))  # repr: shortest exact float64 text


def to_csv_text(preds: ClipPredictions, per_view: bool = False) -> str:
  names = preds.names
  out = io.StringIO()
  w = csv.writer(out, lineterminator="\n")
  views = preds.per_view.shape[1] if (per_view and preds.per_view is not None) else 0
  view_cols = [f"view{v}_{n}" for v in range(views) for n in names]
  if preds.task == "classification":
    w.writerow(["clip_id", "clip_index", "label", "label_name", "predicted", "predicted_name"]
               + [f"score_{n}" for n in names] + view_cols)
    predicted = preds.scores.argmax(axis=1)
    for i in range(len(preds)):
      label = int(preds.labels[i])
      w.writerow([preds.clip_ids[i], int(preds.clip_index[i]), label,
                  names[label] if 0 <= label < len(names) else "", int(predicted[i]),
                  names[predicted[i]]] + [_number(s) for s in preds.scores[i]]
                 + [_number(s) for s in preds.per_view[i, :views].reshape(-1)])
  else:
    w.writerow(["clip_id", "clip_index"] + [f"target_{n}" for n in names]
               + [f"pred_{n}" for n in names] + view_cols)
    for i in range(len(preds)):
      w.writerow([preds.clip_ids[i], int(preds.clip_index[i])]
                 + [_number(t) for t in preds.targets[i]] + [_number(s) for s in preds.scores[i]]
                 + [_number(s) for s in preds.per_view[i, :views].reshape(-1)])
  return out.getvalue()


def write_csv(path: str, preds: ClipPredictions, per_view: bool = False) -> None:
  """Writes the predictions (atomically); per_view adds the per-view score columns."""
  text = to_csv_text(preds, per_view)
  io_utils.atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def _floats(row: dict, columns: Sequence[str]) -> np.ndarray:
  return np.array([float(row[c]) if row[c] != "" else np.nan for c in columns], np.float64)


def read_csv(path: str) -> ClipPredictions:
  """A file written by write_csv -> ClipPredictions (per_view when the file has it)."""
  with open(path, newline="") as f:
    reader = csv.DictReader(f)
    header = reader.fieldnames or []
    rows = list(reader)
  if "clip_id" not in header or "clip_index" not in header:
    raise ValueError(f"{path}: not a predictions file (no clip_id / clip_index column)")
  classification = "label" in header
  value_prefix = "score_" if classification else "pred_"
  names = [c[len(value_prefix):] for c in header if c.startswith(value_prefix)]
  views = 0
  while any(c.startswith(f"view{views}_") for c in header):
    views += 1
  scores = np.stack([_floats(r, [value_prefix + n for n in names]) for r in rows]) if rows \
      else np.zeros((0, len(names)))
  per_view = None
  if views:
    per_view = np.stack([_floats(r, [f"view{v}_{n}" for v in range(views) for n in names])
                         for r in rows]).reshape(len(rows), views, len(names))
  return ClipPredictions(
      task="classification" if classification else "regression", names=names,
      clip_index=np.array([int(r["clip_index"]) for r in rows], np.int64),
      clip_ids=[r["clip_id"] for r in rows],
      labels=np.array([int(r["label"]) for r in rows], np.int64) if classification else None,
      targets=(None if classification else
               np.stack([_floats(r, ["target_" + n for n in names]) for r in rows])),
      scores=scores, per_view=per_view)


def report_from_file(path: str) -> dict[str, Any]:
  """The metrics recomputed from a predictions file (equal to the evaluation's report)."""
  return metrics_report(read_csv(path))
