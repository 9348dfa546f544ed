"""A model's weights as every reader takes them: `Weights` (kind, model config, flat
parameters, where they came from), read from any checkpoint (`load_weights`: a run's workdir,
its checkpoints/ folder, a converted folder, an exported safetensors folder or an original
.pth), or drawn (`random_weights`), and `bind`: weights -> (ParamsView, params) of a model
class, the one "weights -> model -> transfer_by_name" of feature export, predict, the exports,
`from_pretrained` and the reconstruction picture; `transfer_into`, the same transfer into
parameters that exist already (the trainer's `config.init_from`, into its sharded fresh ones).

Binding a fine-tuning model (`FinetuneModel`): a fine-tuned checkpoint gives every tensor, any
other its encoders and fusion encoder by name (the names line up, as for `config.init_from`);
the fine-tuning-only pieces keep their initial values, which are constants: layer weights
uniform (HFF = plain mean over blocks) and an identity LayerNorm. A pre-training model
(`PretrainModel`) needs every one of its tensors.
"""
from __future__ import annotations

import copy
import dataclasses
import logging
import os
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from hicmae_jax import checkpointing, paths
from hicmae_jax.checkpoints import mapping, original, safetensors_io, transfer
from hicmae_jax.models import params as params_lib
from hicmae_jax.models.classifier import FinetuneModel
from hicmae_jax.models.hicmae import PretrainModel

log = logging.getLogger(__name__)

FINETUNED_KINDS = ("finetune", "linear_probe")


@dataclasses.dataclass
class Weights:
  """A model's parameters and where they came from.

  kind: "pretrain" | "finetune" | "linear_probe" (a checkpoint's kind) or "random";
  model: the model config (ml_collections); params: flat {dotted name: array};
  source: JSON-able description (checkpoint path and step, or the init seed)."""
  kind: str
  model: Any
  params: dict[str, np.ndarray]
  source: dict[str, Any]


def model_config(raw: dict) -> ml_collections.ConfigDict:
  """The model config a checkpoint recorded (JSON) as a ConfigDict."""
  raw = dict(raw, hierarchy_layers=tuple(raw.get("hierarchy_layers", ())))  # JSON gave a list
  return ml_collections.ConfigDict(raw)


def load_weights(checkpoint: str, step: int | None = None, *, model_hint=None) -> Weights:
  """Reads a checkpoint: a run's workdir, its checkpoints/ folder, a converted checkpoint
  folder (`tools.convert_checkpoint`), an exported folder or a .pth (read in memory,
  `checkpoints.original`).

  Our checkpoints carry their model config. For a .pth, what the tensors do not record (head
  counts, hierarchy layers, input sizes) comes from the file itself (our export carries our
  model config, the original's full checkpoints their training args), else from
  `model_hint` (a model config, or an experiment config: nested ones give the experiment of
  the file's kind); with neither the read is refused, naming what is missing."""
  if not checkpoint:
    raise ValueError("no checkpoint given: pass --checkpoint=<workdir, checkpoint folder or "
                     ".pth> (or --random_init for the untrained baseline)")
  if not paths.exists(checkpoint):
    raise FileNotFoundError(f"checkpoint {checkpoint!r} not found: pass a run's workdir, its "
                            f"checkpoints/ folder, a converted checkpoint folder or an "
                            f"original .pth file")
  if not paths.is_remote(checkpoint) and safetensors_io.looks_exported(checkpoint):
    return exported_weights(checkpoint)
  if paths.isfile(checkpoint):
    if not checkpoint.endswith((".pth", ".pt")):
      raise ValueError(f"checkpoint {checkpoint!r} is a file but not a .pth: pass an original "
                       f"PyTorch checkpoint or one of our checkpoint folders")
    read = original.read_original(checkpoint, config=model_hint)
    return Weights(read.kind, read.model, {k: np.asarray(v) for k, v in read.params.items()},
                   {"checkpoint": paths.absolute(checkpoint), "step": None,
                    **read.meta["source"]})
  step, meta, raw = checkpointing.read_params(checkpoint, step)
  directory = checkpointing.resolve_checkpoint_dir(checkpoint)
  if "model" not in meta or "kind" not in meta:
    raise ValueError(f"{directory} step {step}: the checkpoint's meta has no model config / "
                     f"kind; it was not written by this code or its converter")
  return Weights(meta["kind"], model_config(meta["model"]),
                 {k: np.asarray(v) for k, v in raw.items()},
                 {"checkpoint": paths.absolute(directory), "step": int(step),
                  "config": meta.get("config")})


def exported_weights(folder: str) -> Weights:
  """The weights of a folder written by `tools.export --format=safetensors`; source["config"]
  holds what a training config would give the readers (class names, sampling rate, batch)."""
  config, params = safetensors_io.read_folder(folder)
  train_like = {"data": {"sampling_rate": config.get("sampling_rate", 4)},
                "eval_batch_size": config.get("eval_batch_size", 32)}
  return Weights(config["kind"], model_config(config["model"]), params,
                 {"checkpoint": os.path.abspath(folder), "step": config.get("step"),
                  "format": "safetensors", "config": train_like,
                  "class_names": list(config.get("class_names") or []),
                  "target_names": list(config.get("target_names") or [])})


def random_weights(model_cfg, seed: int) -> Weights:
  """The pre-training model's initial parameters for `seed`: what pre-training starts from."""
  model = PretrainModel(model_cfg, rngs=nnx.Rngs(params=seed))
  flat = {k: np.asarray(v) for k, v in params_lib.ParamsView(model).flat(model).items()}
  return Weights("random", copy.deepcopy(model_cfg), flat, {"random_init_seed": int(seed)})


def finetune_model_config(model_cfg):
  """The fine-tuning model config that reads a checkpoint's encoders (a pre-training config
  has no classes: a 1-output head is built and never used)."""
  cfg = copy.deepcopy(model_cfg)
  with cfg.unlocked():
    if cfg.task == "classification" and cfg.num_classes <= 0:
      cfg.num_classes = 1
    if cfg.task == "regression" and cfg.num_targets <= 0:
      cfg.num_targets = 1
  return cfg


def required_tensors(source_kind: str, target_kind: str) -> tuple[str, ...]:
  """The target tensors (name prefixes) that weights of `source_kind` must give a model of
  `target_kind`: every one between the same kind or two fine-tuned kinds; otherwise (pre-trained
  or random weights into a fine-tuning model) the encoders and the fusion encoder."""
  if source_kind == target_kind or (source_kind in FINETUNED_KINDS
                                    and target_kind in FINETUNED_KINDS):
    return transfer.ALL
  return transfer.SHARED_PREFIXES


def transfer_into(weights: Weights, target: Mapping[str, Any], target_kind: str, *,
                  required: tuple[str, ...] | None = None, target_name: str = ""
                  ) -> transfer.Transfer:
  """`weights` moved by name into `target` (a model's flat parameters, numpy or jax arrays,
  sharded ones too: target values are neither moved nor gathered) with `required_tensors`'
  rule unless `required` is given. ValueError names the weights and what does not fit
  (`target_name`, default "the <target_kind> model")."""
  required = required_tensors(weights.kind, target_kind) if required is None else required
  target_name = target_name or f"{target_kind} model"
  try:
    return transfer.transfer_by_name(weights.params, target, required=required)
  except mapping.MappingError as e:
    raise ValueError(f"the {weights.kind} weights {weights.source.get('checkpoint', '')} do "
                     f"not fit the {target_name}: {e}") from e


def bind(weights: Weights, model_cls=FinetuneModel, *, seed: int = 0
         ) -> tuple[params_lib.ParamsView, dict[str, jax.Array]]:
  """`weights` in a `model_cls` (FinetuneModel or PretrainModel) of their model config, as
  (view, params): `view.merge(params)` is the model. The fine-tuning model takes what the
  module docstring says (`required_tensors`); the pre-training model every tensor. ValueError
  names the weights and what does not fit."""
  if model_cls is FinetuneModel:
    cfg = finetune_model_config(weights.model)
    required = required_tensors(weights.kind, "finetune")
  elif model_cls is PretrainModel:
    if weights.kind in FINETUNED_KINDS:
      raise ValueError(f"{weights.source.get('checkpoint', '')} is a {weights.kind} "
                       f"checkpoint: it has no decoders. Pass a pre-training checkpoint (a "
                       f"pretrain run's workdir or an original pre-training .pth)")
    cfg, required = weights.model, transfer.ALL
  else:
    raise ValueError(f"bind: model_cls must be FinetuneModel or PretrainModel, got "
                     f"{model_cls!r}")
  model = model_cls(cfg, rngs=nnx.Rngs(params=seed))
  view = params_lib.ParamsView(model)
  moved = transfer_into(weights, view.flat(model), "", required=required,
                        target_name=f"{model_cls.__name__} of their config")
  if moved.missing:
    log.info("%s: %d tensors from the %s weights; at their initial values: %s",
             model_cls.__name__, len(moved.loaded), weights.kind, ", ".join(moved.missing))
  return view, {k: jnp.asarray(v) for k, v in moved.params.items()}
