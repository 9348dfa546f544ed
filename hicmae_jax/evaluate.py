"""Evaluation of a fine-tuning model over a split (multi-view averaging, the paper's metrics),
and the evaluation job of a fine-tuning run: validation every `config.eval_every_epochs`
epochs, which selects the weights (BestCheckpoint), and at the end the test split on the
best-validation weights and on the last ones. The test evaluations also write every clip's
merged scores (clip_predictions.py: <workdir>/predictions.csv, and predictions_last.csv for the
last weights when they are not the selected ones)."""
from __future__ import annotations

import logging
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils

from hicmae_jax import checkpointing, clip_predictions, metrics, periodic, pixels, runtime, sharding
from hicmae_jax.data.format import record_index
from hicmae_jax.data.pipeline import factories as pipeline

log = logging.getLogger(__name__)


def eval_dataset(config, split_dir: str, mode: str):
  """The finite eval pipeline of this process for `split_dir` (mode 'val' or 'test')."""
  return pipeline.eval_dataset_from_config(
      config, split_dir, mode=mode, batch_size=config.eval_batch_size // jax.process_count())


def predict_program(view, mesh):
  """jit(params, video, audio[, video_crop_size]) -> logits [B, C] (float32), batch split over
  the mesh; with video_crop_size [B, 2] the video is frames the device resizes first
  (`pixels.resize_crops`). Not yet compiled (tools/aot_compile lowers it for a topology)."""
  batch_sh = sharding.batch_sharding(mesh)

  @jax.jit
  def predict(params, video, audio, video_crop_size=None):
    model = view.merge(params)
    if video_crop_size is not None:
      video = pixels.resize_crops(video, video_crop_size, model.geo.input_size)
    out = model(video, audio, deterministic=True)
    return jax.lax.with_sharding_constraint(out["logits"].astype(jnp.float32), batch_sh)
  return predict


def make_predict_fn(view, mesh):
  """`predict_program`, compiled by every process before any runs it (multi-host start)."""
  return runtime.compile_then_meet(predict_program(view, mesh), "predict")


def run_eval(config, params, view, mesh, split_dir: str, mode: str, *,
             class_names=(), predict_fn=None, predictions_path: str = "",
             per_view_scores: bool = False) -> dict[str, Any]:
  """Evaluates every clip of a split once per view; returns the metric report (JSON-able).

  predictions_path: where process 0 writes the per-clip predictions (clip_predictions.py:
  clip id, label, the merged scores the metrics use, the predicted class; per-view scores
  with per_view_scores). Rows are gathered from every process first, so a multi-host run
  writes one complete file. The report then names it in "predictions_file"."""
  ds = eval_dataset(config, split_dir, mode)
  predict = predict_fn or make_predict_fn(view, mesh)
  rows = {k: [] for k in ("logits", "label", "targets", "clip_index", "view_index", "valid")}
  it = iter(ds)
  try:
    for local in it:
      inputs = ("video", "audio") + (("video_crop_size",) if "video_crop_size" in local else ())
      batch = sharding.global_batch({k: local[k] for k in inputs}, mesh)
      logits = predict(params, *(batch[k] for k in inputs))
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
  task = config.model.task
  if task == "classification":
    scores = metrics.softmax64(cat["logits"])
    names = list(class_names) or [str(i) for i in range(config.model.num_classes)]
  else:
    scores = cat["logits"].astype(np.float64)
    names = [f"target{i}" for i in range(scores.shape[1])]
  write = bool(predictions_path) and jax.process_index() == 0
  preds = clip_predictions.from_views(
      task, names, clip_index=cat["clip_index"], view_index=cat["view_index"],
      valid=cat["valid"], scores=scores, labels=cat.get("label"), targets=cat.get("targets"),
      clip_ids=record_index.clip_ids(split_dir) if write else None)
  report = clip_predictions.metrics_report(preds)
  report["num_clips"] = len(preds)
  report["num_skipped_records"] = int(skipped)
  report["split_dir"] = split_dir
  report["mode"] = mode
  if predictions_path:
    if write:
      clip_predictions.write_csv(predictions_path, preds, per_view=per_view_scores)
      log.info("per-clip predictions of %s written to %s", split_dir, predictions_path)
    report["predictions_file"] = predictions_path
  return report


def brief(report: dict) -> str:
  """The headline numbers of a report, for the log."""
  keys = [k for k in ("uar", "war", "weighted_f1", "pcc", "ccc", "num_clips") if k in report]
  return ", ".join(f"{k}={report[k]:.4g}" if isinstance(report[k], float) else f"{k}={report[k]}"
                   for k in keys)


def _scalars(prefix: str, report: dict) -> dict[str, float]:
  return {f"{prefix}_{k}": v for k, v in report.items() if isinstance(v, (int, float))}


# ----------------------------------------------------------------------- evaluation job --

class EvaluationJob(periodic.Job):
  """Validation every eval_every_epochs epochs and the final val/test evaluation.

  results (finish): val (last weights), best_val_step / best_val_epoch / best_val (the
  selected validation), test (on the best-validation weights; on the last ones without a val
  split), test_last (on the last weights, when there is a val split), test_weights (which)."""

  def __init__(self, config, ctx: periodic.Context):
    self.config, self.ctx = config, ctx
    d = config.data
    self.every_steps = ctx.steps_per_epoch * config.eval_every_epochs if d.val_dir else 0
    self._predict = make_predict_fn(ctx.view, ctx.mesh)
    metric = "uar" if config.model.task == "classification" else "ccc"
    self.best = checkpointing.BestCheckpoint(
        ctx.workdir, metric, resumed=ctx.resumed,
        async_save=config.async_checkpointing) if d.val_dir else None
    self._last_val: tuple[int, dict] | None = None

  def _eval(self, params, split_dir: str, mode: str, predictions_file: str = ""
            ) -> dict[str, Any]:
    path = os.path.join(self.ctx.workdir, predictions_file) if predictions_file else ""
    return run_eval(self.config, params, self.ctx.view, self.ctx.mesh, split_dir, mode,
                    class_names=self.ctx.class_names, predict_fn=self._predict,
                    predictions_path=path)

  def run(self, step: int, state: dict, batch: dict) -> None:
    del batch
    self._validate(step, state["params"])

  def _validate(self, step: int, params) -> dict[str, Any]:
    report = self._eval(params, self.config.data.val_dir, "val")
    epoch = step // self.ctx.steps_per_epoch
    self.ctx.writer.write_scalars(step, _scalars("val", report))
    log.info("validation at step %d (epoch %d): %s", step, epoch, brief(report))
    self.best.offer(step, epoch, report, params, self.ctx.meta)
    self._last_val = (step, report)
    return report

  def finish(self, step: int, state: dict) -> dict[str, Any]:
    params, results = state["params"], {}
    if self.best is not None:
      # The last weights are a candidate too; not evaluated twice when the run ended on a
      # validation step.
      done = self._last_val is not None and self._last_val[0] == step
      results["val"] = self._last_val[1] if done else self._validate(step, params)
      if self.best.record is not None:
        record = self.best.record
        results.update(best_val_step=record["step"], best_val_epoch=record["epoch"],
                       best_val=record["val"])
    if self.config.data.test_dir:
      results.update(self._test(step, params))
    return results

  def _test(self, step: int, params) -> dict[str, Any]:
    test_dir = self.config.data.test_dir
    record = self.best.record if self.best is not None else None
    # Per-clip predictions: predictions.csv holds the reported test (the selected weights);
    # predictions_last.csv the last weights' when those differ.
    last_is_selected = record is None or record["step"] == step
    last = self._eval(params, test_dir, "test", clip_predictions.FILENAME if last_is_selected
                      else clip_predictions.LAST_FILENAME)
    if record is None:
      out = {"test": last, "test_weights": {"selected_by": "last", "step": step}}
    else:
      if last_is_selected:
        selected = last
      else:
        target = checkpointing.abstract_like(params, self.ctx.param_shardings)
        selected = self._eval(self.best.restore(target), test_dir, "test",
                              clip_predictions.FILENAME)
      out = {"test": selected, "test_last": last,
             "test_weights": {"selected_by": "best_val", "step": record["step"],
                              "epoch": record["epoch"]}}
    for name in ("test", "test_last"):
      if name in out:
        self.ctx.writer.write_scalars(step, _scalars(name, out[name]))
        log.info("%s (%s weights): %s", name, "last" if name == "test_last" else
                 out["test_weights"]["selected_by"], brief(out[name]))
    return out

  def close(self) -> None:
    if self.best is not None:
      self.best.close()


def evaluation_job(config, ctx: periodic.Context) -> EvaluationJob | None:
  """A fine-tuning run's evaluation job (train.TASKS) when it has a val or a test split. It
  uses every field of the Context (checkpoints of the best weights need meta and shardings)."""
  if not (config.data.val_dir or config.data.test_dir):
    return None
  return EvaluationJob(config, ctx)
