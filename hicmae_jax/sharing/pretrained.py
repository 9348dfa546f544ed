"""A trained model as a folder to share (safetensors + config.json + model card), and back:
`hicmae_jax.from_pretrained(folder)`.

Every checkpoint the feature export reads can be exported (a run's workdir, its checkpoints/
or best_val/ folder, a converted folder, an original .pth): `checkpoints.weights.load_weights`
reads it and `checkpoints.weights.bind` builds the model, for this module, the predictor and
the feature export alike. A fine-tuned checkpoint gives logits and features, a
pre-training one its encoders' features.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from hicmae_jax import paths
from hicmae_jax.checkpoints import safetensors_io, weights as weights_lib
from hicmae_jax.prediction import model as prediction_model
from hicmae_jax.sharing import model_card

log = logging.getLogger(__name__)
OUTPUTS = ("logits", "feature")
FINETUNED_KINDS = prediction_model.FINETUNED_KINDS


def outputs_for(weights: weights_lib.Weights, asked: Sequence[str] = ()) -> tuple[str, ...]:
  """The outputs an export gives: `asked`, else logits and feature for a fine-tuned model and
  feature for pre-trained encoders. Logits asked of a pre-training checkpoint are refused."""
  asked = tuple(asked) or (OUTPUTS if weights.kind in FINETUNED_KINDS else ("feature",))
  unknown = sorted(set(asked) - set(OUTPUTS))
  if unknown:
    raise ValueError(f"--outputs={','.join(asked)}: unknown {unknown}; allowed: logits, feature")
  if "logits" in asked and weights.kind not in FINETUNED_KINDS:
    raise ValueError(f"{weights.source.get('checkpoint')} is a {weights.kind} checkpoint: it "
                     f"has no classifier, so no logits; export its features (--outputs="
                     f"feature) or fine-tune it first (python -m hicmae_jax.main with "
                     f"--config.init_from)")
  return asked


def forward(view, outputs: Sequence[str]):
  """fn(params, video [B, T, S, S, 3] uint8 or float32, audio [B, A, M] float32) -> tuple of
  the `outputs` (float32 [B, C] logits, [B, F] feature), the model in inference mode."""
  outputs = tuple(outputs)

  def fn(params, video, audio):
    model = view.merge(params)
    out = (model(video, audio, deterministic=True) if "logits" in outputs
           else model.features(video, audio, deterministic=True))
    return tuple(out[k].astype(jnp.float32) for k in outputs)
  return fn


# ---------------------------------------------------------------------------------- export --

def run_results(checkpoint: str) -> dict[str, Any] | None:
  """The results.json of the run a checkpoint belongs to (its workdir, or the workdir above
  its checkpoints/ or best_val/ folder), None when there is none (a .pth, a converted folder)."""
  here = os.path.abspath(checkpoint)
  for folder in (here, os.path.dirname(here)):
    path = os.path.join(folder, "results.json")
    if os.path.isfile(path):
      with open(path) as f:
        return json.load(f)
  return None


def export_config(weights: weights_lib.Weights, *, class_names: Sequence[str] = (),
                  dataset: str = "") -> dict[str, Any]:
  """config.json's content (without the "weights" entry safetensors_io adds)."""
  from hicmae_jax import __version__
  train = dict(weights.source.get("config") or {})
  model = weights.model.to_dict()
  model["hierarchy_layers"] = list(model.get("hierarchy_layers", ()))
  config = {"kind": weights.kind, "model": model, "step": weights.source.get("step"),
            "sampling_rate": int((train.get("data") or {}).get("sampling_rate", 4)),
            "eval_batch_size": int(train.get("eval_batch_size", 32)),
            "hicmae_jax_version": __version__,
            "source": {k: v for k, v in weights.source.items()
                       if k != "config" and isinstance(v, (str, int, float, type(None)))}}
  if weights.kind in FINETUNED_KINDS:
    task = model["task"]
    count = model["num_classes"] if task == "classification" else model["num_targets"]
    recorded = weights.source.get("class_names" if task == "classification"
                                  else "target_names") or ()
    names, source = prediction_model.output_names(task, count, class_names=class_names,
                                                  dataset=dataset, train_config=train,
                                                  recorded=recorded)
    config["class_names" if task == "classification" else "target_names"] = names
    config["names_source"] = source
  return config


def export_safetensors(checkpoint: str, output: str, *, step: int | None = None,
                       model_hint=None, class_names: Sequence[str] = (), dataset: str = "",
                       for_hub: bool = False, licence: str = model_card.LICENCE,
                       overwrite: bool = False) -> dict[str, Any]:
  """A checkpoint -> `output`/{model.safetensors, config.json, README.md}; returns a summary.
  Every parameter of the checkpoint is written as it is (a pre-training one keeps its
  decoders: the folder is a complete copy of the checkpoint)."""
  weights = weights_lib.load_weights(checkpoint, step, model_hint=model_hint)
  weights_lib.bind(weights)  # the weights fit the model of their config: checked now
  config = export_config(weights, class_names=class_names, dataset=dataset)
  train = weights.source.get("config")
  num_params = int(sum(np.asarray(v).size for v in weights.params.values()))
  text = model_card.card(config, num_params=num_params, results=run_results(checkpoint),
                         train_config=train, for_hub=for_hub, licence=licence,
                         dataset=dataset)
  written = safetensors_io.write_folder(output, weights.params, config, text,
                                        overwrite=overwrite)
  return {"format": "safetensors", "kind": weights.kind, "output": output,
          "num_tensors": written["weights"]["num_tensors"], "num_values": num_params,
          "names": config.get("class_names") or config.get("target_names") or []}


# ---------------------------------------------------------------------------------- import --

@dataclasses.dataclass
class Pretrained:
  """A loaded model: `model` (the fine-tuning FinetuneModel, weights in), `weights`
  (weights_lib.Weights, what FeatureExtractor and the exports take), `names` (classes or
  targets; [] for pre-trained encoders), `config` (config.json).

  `__call__(video [B, T, S, S, 3] uint8 or normalised float32, audio [B, A, M] normalised
  fbank)` -> {"logits": float32 [B, C] (fine-tuned only), "feature": float32 [B, F]}."""
  model: Any
  weights: weights_lib.Weights
  names: list[str]
  config: dict[str, Any]
  outputs: tuple[str, ...]
  _run: Any = dataclasses.field(repr=False, default=None)
  _params: Any = dataclasses.field(repr=False, default=None)

  def __call__(self, video, audio) -> dict[str, np.ndarray]:
    out = self._run(self._params, jnp.asarray(video), jnp.asarray(audio))
    return {k: np.asarray(v) for k, v in zip(self.outputs, out)}


def from_pretrained(folder: str) -> Pretrained:
  """An exported folder (tools.export --format=safetensors) -> a model ready to run; also
  what `predict --model`, `--checkpoint` of the readers and the feature export accept."""
  if paths.is_remote(folder) or not safetensors_io.looks_exported(folder):
    safetensors_io.read_config(folder)  # names what is missing (no config.json, ...)
  weights = weights_lib.load_weights(folder)
  view, params = weights_lib.bind(weights)
  outputs = outputs_for(weights)
  config = safetensors_io.read_config(folder)
  names = list(config.get("class_names") or config.get("target_names") or [])
  return Pretrained(view.merge(params), weights, names, config, outputs,
                    jax.jit(forward(view, outputs)), params)
