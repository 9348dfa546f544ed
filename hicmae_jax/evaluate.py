"""Evaluation of a fine-tuning model over a split: multi-view averaging and the paper's metrics."""
from __future__ import annotations

import logging
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils

from hicmae_jax import metrics, runtime, sharding
from hicmae_jax.data import pipeline

log = logging.getLogger(__name__)


def eval_dataset(config, split_dir: str, mode: str):
  """The finite eval pipeline of this process for `split_dir` (mode 'val' or 'test')."""
  return pipeline.eval_dataset_from_config(
      config, split_dir, mode=mode, batch_size=config.eval_batch_size // jax.process_count())


def make_predict_fn(view, mesh):
  """jit(params, video, audio) -> logits [B, C] (float32), batch split over the mesh."""
  batch_sh = sharding.batch_sharding(mesh)

  @jax.jit
  def predict(params, video, audio):
    model = view.merge(params)
    out = model(video, audio, deterministic=True)
    return jax.lax.with_sharding_constraint(out["logits"].astype(jnp.float32), batch_sh)
  return runtime.compile_then_meet(predict, "predict")


def run_eval(config, params, view, mesh, split_dir: str, mode: str, *,
             class_names=(), predict_fn=None) -> dict[str, Any]:
  """Evaluates every clip of a split once per view; returns the metric report (JSON-able)."""
  ds = eval_dataset(config, split_dir, mode)
  predict = predict_fn or make_predict_fn(view, mesh)
  rows = {k: [] for k in ("logits", "label", "targets", "clip_index", "view_index", "valid")}
  it = iter(ds)
  try:
    for local in it:
      batch = sharding.global_batch({k: local[k] for k in ("video", "audio")}, mesh)
      logits = predict(params, batch["video"], batch["audio"])
      rows["logits"].append(np.asarray(multihost_utils.process_allgather(logits, tiled=True)))
      for key in ("label", "targets", "clip_index", "view_index", "valid"):
        if key in local:
          rows[key].append(np.asarray(multihost_utils.process_allgather(
              np.asarray(local[key]), tiled=True)))
  finally:
    if hasattr(it, "close"):
      it.close()
  if not rows["logits"]:
    raise ValueError(f"{split_dir!r} gave no eval batches: is the split empty or the eval "
                     f"batch ({config.eval_batch_size}) larger than the split?")
  cat = {k: np.concatenate(v) for k, v in rows.items() if v}
  skipped = getattr(it, "stats", {}).get("skipped", 0)
  if config.model.task == "classification":
    probs = jax.nn.softmax(cat["logits"].astype(np.float64), axis=-1)
    probs = np.asarray(probs, np.float64)
    clip_ids, mean_probs = metrics.average_views(cat["clip_index"], cat["view_index"], probs,
                                                 cat["valid"])
    first = {int(c): i for i, c in reversed(list(enumerate(cat["clip_index"])))}
    labels = np.array([cat["label"][first[int(c)]] for c in clip_ids])
    names = list(class_names) or [str(i) for i in range(config.model.num_classes)]
    report = metrics.classification_report(labels, mean_probs, names)
  else:
    valid = cat["valid"].astype(bool)
    clip_ids, mean_preds = metrics.average_views(cat["clip_index"], cat["view_index"],
                                                 cat["logits"].astype(np.float64), valid)
    first = {int(c): i for i, c in reversed(list(enumerate(cat["clip_index"])))}
    targets = np.stack([cat["targets"][first[int(c)]] for c in clip_ids])
    report = metrics.regression_report(targets, mean_preds,
                                       [f"target{i}" for i in range(targets.shape[1])])
  report["num_clips"] = int(len(clip_ids))
  report["num_skipped_records"] = int(skipped)
  report["split_dir"] = split_dir
  report["mode"] = mode
  return report
