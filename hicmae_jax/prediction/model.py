"""A fine-tuned checkpoint as a predictor: inputs -> class probabilities (float64 softmax of
the logits, as the evaluation computes them) or regression outputs, with the names of its
classes or targets.

Every checkpoint kind the feature export reads works (`checkpoints/weights.load_weights`:
a run's workdir, its checkpoints/ folder, a converted folder, or an original .pth read
directly); it must be fine-tuned: a pre-trained model has no classifier.

Class names, first found: --class_names; the --dataset preset; the checkpoint's training
config (its train split's dataset_info.json, or the synthetic data's names); the --config's
train split; else class_0 .. class_{C-1}.
"""
from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from hicmae_jax import metrics
from hicmae_jax.checkpoints import weights as weights_lib
from hicmae_jax.data.format import datasets, schema

log = logging.getLogger(__name__)
FINETUNED_KINDS = weights_lib.FINETUNED_KINDS


def _split_names(split_dir: str, task: str) -> list[str]:
  """Class (or target) names recorded by a prepared split, [] when it is not there."""
  if not split_dir or not os.path.isfile(os.path.join(split_dir, schema.INFO_FILENAME)):
    return []
  info = schema.DatasetInfo.load(split_dir)
  if task == "classification":
    return list(info.class_names)
  return list(info.extra.get("target_names") or [])


def _config_names(config: Any, task: str) -> list[str]:
  """Names from an experiment config (dict or ConfigDict): its train split, else its
  synthetic data's train split."""
  data = (config or {}).get("data") or {}
  for split_dir in (data.get("train_dir", ""),
                    os.path.join(data["synthetic_dir"], "train") if data.get("synthetic_dir")
                    else ""):
    names = _split_names(split_dir, task)
    if names:
      return names
  return []


def output_names(task: str, count: int, *, class_names: Sequence[str] = (), dataset: str = "",
                 train_config: Any = None, config: Any = None,
                 recorded: Sequence[str] = ()) -> tuple[list[str], str]:
  """(names of the model's outputs, where they came from); see the module docstring.
  recorded: the names an exported model folder's config.json holds."""
  what = "classes" if task == "classification" else "targets"
  candidates = [(list(class_names), "--class_names")]
  if dataset:
    preset = datasets.get_preset(dataset)
    candidates.append((list(preset.class_names if task == "classification"
                            else preset.target_names), f"--dataset={dataset}"))
  candidates.append((list(recorded), "the model folder's config.json"))
  candidates.append((_config_names(train_config, task), "the checkpoint's training config"))
  candidates.append((_config_names(config, task), "--config"))
  for names, source in candidates:
    if not names:
      continue
    if len(names) != count:
      if source.startswith("--"):
        raise ValueError(f"{source} gives {len(names)} {what} ({', '.join(names)}) but the "
                         f"model has {count}")
      continue
    return names, source
  prefix = "class" if task == "classification" else "target"
  return [f"{prefix}_{i}" for i in range(count)], "default (pass --class_names or --dataset)"


@dataclasses.dataclass
class Predictor:
  """`predictor(video [B, T, S, S, 3], audio [B, A, M])` (normalised float32 inputs) ->
  {"scores": float64 [B, C]}: softmax probabilities, or the regression outputs.

  task, names (classes or targets), names_source, model (config), source (checkpoint),
  sampling_rate (frames between sampled frames, from the training config), batch_size."""
  task: str
  names: list[str]
  names_source: str
  model: Any
  source: dict[str, Any]
  sampling_rate: int
  batch_size: int
  _params: dict = dataclasses.field(repr=False, default_factory=dict)
  _run: Any = dataclasses.field(repr=False, default=None)

  def __call__(self, video: np.ndarray, audio: np.ndarray) -> dict[str, np.ndarray]:
    logits = np.asarray(self._run(self._params, video, audio))
    if self.task == "classification":
      return {"scores": metrics.softmax64(logits)}
    return {"scores": logits.astype(np.float64)}


def load_predictor(checkpoint: str, step: int | None = None, *, config=None,
                   class_names: Sequence[str] = (), dataset: str = "", batch_size: int = 0,
                   sampling_rate: int = 0) -> Predictor:
  """Reads a fine-tuned checkpoint (config: an experiment config for a .pth that records no
  model config; its data.sampling_rate and eval_batch_size are used too)."""
  weights = weights_lib.load_weights(checkpoint, step, model_hint=config)
  if weights.kind not in FINETUNED_KINDS:
    raise ValueError(f"--checkpoint={checkpoint} is a {weights.kind} checkpoint: it has no "
                     f"classifier. Fine-tune it first (python -m hicmae_jax.main with "
                     f"--config.init_from), or export its features (tools.export_features)")
  train_config = weights.source.pop("config", None) or {}
  experiment = None
  if config is not None:
    from hicmae_jax import experiments
    experiment = experiments.experiment_for_kind(config, weights.kind)
  cfg = weights.model
  count = cfg.num_classes if cfg.task == "classification" else cfg.num_targets
  recorded = weights.source.get("class_names" if cfg.task == "classification"
                                else "target_names") or ()
  names, names_source = output_names(cfg.task, count, class_names=class_names, dataset=dataset,
                                     train_config=train_config, config=experiment,
                                     recorded=recorded)
  if not sampling_rate:
    sampling_rate = (experiment.data.sampling_rate if experiment is not None
                     else train_config.get("data", {}).get("sampling_rate", 4))
  if not batch_size:
    batch_size = (experiment.eval_batch_size if experiment is not None
                  else train_config.get("eval_batch_size", 32))
  view, params = weights_lib.bind(weights)

  @jax.jit
  def run(params, video, audio):
    return view.merge(params)(video, audio, deterministic=True)["logits"].astype(jnp.float32)

  log.info("model: %s (%s, %d %s from %s), sampling rate %d, batch %d", checkpoint, cfg.task,
           count, "classes" if cfg.task == "classification" else "targets", names_source,
           sampling_rate, batch_size)
  return Predictor(cfg.task, names, names_source, cfg, weights.source, int(sampling_rate),
                   int(batch_size), params, run)
