"""Experiment configs as the tools receive them: load a config file, and find the experiment
(and its model) that applies to a kind of checkpoint.

A config is flat (one experiment: `config.model`, `config.data`, ...) or nests experiments:
configs/demo.py holds `config.pretrain` and `config.finetune`, and its top-level `model` is
only a placeholder. The nested ones decide; a config whose model for a kind cannot be told is
refused, never defaulted.
"""
from __future__ import annotations

import importlib.util
import os

import ml_collections

# Which nested experiment serves a kind of checkpoint, in order of preference.
_EXPERIMENT_FOR_KIND = {
    "pretrain": ("pretrain",),
    "finetune": ("finetune",),
    "linear_probe": ("linear_probe", "finetune"),  # same model as fine-tuning
}


def load_config_file(spec: str) -> ml_collections.ConfigDict:
  """`path[:arg]` (as `--config` takes it) -> the file's get_config() or get_config(arg)."""
  path, _, arg = spec.partition(":")
  if not os.path.isfile(path):
    raise FileNotFoundError(f"config file {path!r} not found: pass --config=configs/<name>.py")
  module_spec = importlib.util.spec_from_file_location(
      "config_" + os.path.splitext(os.path.basename(path))[0], path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  if not hasattr(module, "get_config"):
    raise ValueError(f"config file {path!r} defines no get_config()")
  return module.get_config(arg) if arg else module.get_config()


def nested_experiments(config: ml_collections.ConfigDict) -> dict[str, ml_collections.ConfigDict]:
  """The experiments a config nests ({name: sub-config with a model}); {} for a flat one."""
  return {name: value for name, value in config.items()
          if isinstance(value, ml_collections.ConfigDict) and "model" in value}


def experiment_for_kind(config: ml_collections.ConfigDict,
                        kind: str) -> ml_collections.ConfigDict:
  """The experiment of `config` whose model a `kind` checkpoint has (pretrain | finetune |
  linear_probe): the nested one of that kind, else the config itself when flat."""
  if kind not in _EXPERIMENT_FOR_KIND:
    raise ValueError(f"unknown checkpoint kind {kind!r}; allowed: {sorted(_EXPERIMENT_FOR_KIND)}")
  nested = nested_experiments(config)
  if nested:
    for name in _EXPERIMENT_FOR_KIND[kind]:
      if name in nested:
        return nested[name]
    raise ValueError(f"the config nests the experiments {sorted(nested)}, none of them for a "
                     f"{kind} model: pass the config of the {kind} experiment")
  if not isinstance(config.get("model"), ml_collections.ConfigDict):
    raise ValueError("the config has no model section (config.model): pass an experiment "
                     "config such as configs/<name>.py")
  return config


def model_config_for_kind(config: ml_collections.ConfigDict,
                          kind: str) -> ml_collections.ConfigDict:
  """The model config of `experiment_for_kind`; a model config (it has `dim`) is its own."""
  if "dim" in config:
    return config
  return experiment_for_kind(config, kind).model
