"""A .pth checkpoint (the original's, or one exported by this code) -> our kind, model config
and flat parameters, in memory.

The tensors give the kind (a decoder head: pre-training; a classifier head: fine-tuning), the
widths, depths, patch and tubelet sizes, the MLP ratio and the head's output count. What no
tensor records (UNRECORDED: head counts, input geometry, the pre-training hierarchy, the
fine-tuning task) comes from a certain source only:
  1. the file's own record: our export's MODEL_CONFIG_KEY entry (our whole model config), or
     the original's `args` (its argparse Namespace: `model` name, input_size, num_frames,
     input_size_audio, num_mel_bins, return_intermediate_features, nb_classes);
  2. explicit values (the converter's flags), which may not contradict the file's record;
  3. a model config (`--config`), used only where 1 and 2 leave gaps, and only when its
     architecture is the tensors'.
A value with no source makes the read fail with one error naming every missing value and
what provides it: nothing is guessed.
"""
from __future__ import annotations

import re
from typing import Any, Mapping, NamedTuple

import ml_collections
import numpy as np
from flax import nnx

from hicmae_jax import experiments, paths
from hicmae_jax.checkpoints import mapping
from hicmae_jax.checkpoints.pth_reader import read_torch_checkpoint
from hicmae_jax.models import params as params_lib, sizes
from hicmae_jax.models.classifier import FinetuneModel
from hicmae_jax.models.hicmae import PretrainModel

# The entry of our exported .pth files holding our model config (plain dict: the original's
# loaders and torch.load(weights_only=True) read it; the original code ignores it).
MODEL_CONFIG_KEY = "hicmae_jax_model_config"

# Model-config values that change what the model computes but that no tensor records.
UNRECORDED = {
    "pretrain": ("num_heads", "decoder_heads", "hierarchy_layers", "num_frames", "input_size",
                 "audio_frames", "audio_mel_bins"),
    "finetune": ("num_heads", "num_frames", "input_size", "audio_frames", "audio_mel_bins",
                 "task", "head_activation"),
}
# Read from the tensors: a model config for this checkpoint must agree on every one.
ARCHITECTURE = {
    "pretrain": ("dim", "video_depth", "audio_depth", "fusion_depth", "patch_size",
                 "tubelet_size", "audio_patch_size", "mlp_ratio", "decoder_dim",
                 "decoder_depth"),
    "finetune": ("dim", "video_depth", "audio_depth", "fusion_depth", "patch_size",
                 "tubelet_size", "audio_patch_size", "mlp_ratio"),
}
# Where the original's `args` keep the unrecorded values (fine-tuning clips are
# num_frames x num_segments frames: the original's all_frames).
_ARGS_FIELDS = {"input_size": "input_size", "audio_frames": "input_size_audio",
                "audio_mel_bins": "num_mel_bins",
                "hierarchy_layers": "return_intermediate_features"}
# The regression script's args have a loss choice; the classification script's have none.
_REGRESSION_ARG = "loss"


class ConversionError(ValueError):
  """The input is not a HiCMAE checkpoint we can read; the message says why and what helps."""


class OriginalCheckpoint(NamedTuple):
  """kind: pretrain | finetune; model: our model config; params: {dotted name: array};
  meta: what a converted checkpoint's meta holds (kind, model, step, source)."""
  kind: str
  model: ml_collections.ConfigDict
  params: dict[str, np.ndarray]
  meta: dict[str, Any]


def state_dict_of(obj: Any, path: str) -> Mapping[str, np.ndarray]:
  """The state dict of a loaded .pth: its 'model' / 'module' / 'state_dict' entry, or itself."""
  if isinstance(obj, Mapping):
    for key in ("model", "module", "state_dict"):
      if key in obj and isinstance(obj[key], Mapping):
        return obj[key]
    if obj and all(isinstance(v, np.ndarray) for v in obj.values()):
      return obj  # a bare state dict
  raise ConversionError(f"{path}: no 'model'/'module' state dict in this file (top-level "
                        f"keys: {sorted(obj)[:10] if isinstance(obj, Mapping) else type(obj)})")


def _depth(state_dict: Mapping[str, np.ndarray], prefix: str) -> int:
  ids = {int(m.group(1)) for k in state_dict for m in [re.match(prefix + r"(\d+)\.", k)] if m}
  return max(ids) + 1 if ids else 0


def tensor_facts(state_dict: Mapping[str, np.ndarray]) -> tuple[str, dict[str, Any]]:
  """(kind, {model-config key: value}) of what the tensors record (ARCHITECTURE, and
  `head_outputs`: the fine-tuning head's rows)."""
  if "decoder.head.weight" in state_dict:
    kind = "pretrain"
  elif "head.weight" in state_dict:
    kind = "finetune"
  else:
    raise ConversionError("neither 'decoder.head.weight' (pre-training) nor 'head.weight' "
                          "(fine-tuning) is in the state dict: not a HiCMAE checkpoint")
  norm = next((state_dict[k] for k in ("encoder.norm.weight", "encoder_audio.norm.weight")
               if k in state_dict), None)
  if norm is None:
    raise ConversionError("no encoder norm tensor: cannot tell the model width")
  facts: dict[str, Any] = {"dim": int(norm.shape[0]),
                           "video_depth": _depth(state_dict, r"encoder\.blocks\."),
                           "audio_depth": _depth(state_dict, r"encoder_audio\.blocks\."),
                           "fusion_depth": _depth(state_dict, r"encoder_fusion\.blocks\.")}
  video_patch = state_dict.get("encoder.patch_embed.proj.weight")  # [O, 3, kt, kh, kw]
  if video_patch is not None:
    facts["tubelet_size"], facts["patch_size"] = map(int, video_patch.shape[2:4])
  audio_patch = state_dict.get("encoder_audio.patch_embed.proj.weight")  # [O, 1, kh, kw]
  if audio_patch is not None:
    facts["audio_patch_size"] = int(audio_patch.shape[2])
  for prefix in ("encoder", "encoder_audio"):
    fc1 = state_dict.get(f"{prefix}.blocks.0.mlp.fc1.weight")  # [hidden, D]
    if fc1 is not None:
      facts["mlp_ratio"] = fc1.shape[0] / facts["dim"]
      break
  if kind == "pretrain":
    facts["decoder_depth"] = _depth(state_dict, r"decoder\.blocks\.")
    facts["decoder_dim"] = int(state_dict["decoder.norm.weight"].shape[0])
  else:
    facts["head_outputs"] = int(state_dict["head.weight"].shape[0])
  return kind, facts


def _args_dict(args: Any) -> dict[str, Any]:
  """The original's args (argparse Namespace as read, or a plain dict) as a dict."""
  if isinstance(args, Mapping):
    return dict(args)
  return dict(vars(args)) if hasattr(args, "__dict__") else {}


def values_from_args(args: Any, kind: str, facts: Mapping[str, Any],
                     path: str) -> dict[str, Any]:
  """The unrecorded values the original's training args pin down.

  Head counts come from the `model` name (e.g. pretrain_hicmae_dim512_patch16_160_a256): the
  original's registered models (Small, Base) fix them (SPEC 1)."""
  fields = _args_dict(args)
  values: dict[str, Any] = {}
  name = str(fields.get("model", ""))
  width = re.search(r"dim(\d+)", name)
  if width and int(width.group(1)) != facts["dim"]:
    raise ConversionError(f"{path}: args.model {name!r} names a {width.group(1)}-wide model "
                          f"but the tensors are {facts['dim']} wide")
  size = sizes.registered_size_of_width(facts["dim"]) if width else None
  if size:
    values["num_heads"] = sizes.SIZES[size]["num_heads"]
    if kind == "pretrain" and facts["decoder_dim"] == sizes.SIZES[size]["decoder_dim"]:
      values["decoder_heads"] = sizes.SIZES[size]["decoder_heads"]
  for key, field in _ARGS_FIELDS.items():
    if fields.get(field) is not None and key in UNRECORDED[kind]:
      values[key] = fields[field]
  if fields.get("num_frames") is not None:
    values["num_frames"] = int(fields["num_frames"]) * int(fields.get("num_segments") or 1)
  if "hierarchy_layers" in values:
    values["hierarchy_layers"] = tuple(int(i) for i in values["hierarchy_layers"])
  if kind == "finetune" and fields:
    values["task"] = "regression" if _REGRESSION_ARG in fields else "classification"
    if values["task"] == "classification":
      values["head_activation"] = "none"  # the classification script's head is plain linear
    classes = fields.get("nb_classes")
    if classes and int(classes) != facts["head_outputs"]:
      raise ConversionError(f"{path}: args.nb_classes={classes} but head.weight has "
                            f"{facts['head_outputs']} rows")
  return values


def _check_architecture(model: Mapping[str, Any], kind: str, facts: Mapping[str, Any],
                        what: str) -> None:
  """Refuses a model config whose architecture is not the tensors'."""
  differ = [f"{k} {model.get(k)!r} (tensors: {facts[k]!r})" for k in ARCHITECTURE[kind]
            if k in facts and model.get(k) != facts[k]]
  if differ:
    raise ConversionError(f"{what} is not this checkpoint's model: {', '.join(differ)}")


def _normalised(values: Mapping[str, Any]) -> dict[str, Any]:
  out = dict(values)
  if out.get("hierarchy_layers") is not None:
    out["hierarchy_layers"] = tuple(int(i) for i in out["hierarchy_layers"])
  return out


def _missing_error(path: str, kind: str, missing: list[str], record_source: str) -> str:
  why = (f"its {record_source} lack them" if record_source else
         f"it carries neither our export's {MODEL_CONFIG_KEY!r} nor the original's 'args'")
  flags = " ".join(f"--{k}=..." for k in missing)
  return (f"{path}: this {kind} checkpoint's {', '.join(missing)} are recorded neither in its "
          f"tensors nor in the file ({why}); nothing is guessed: pass --config=<the "
          f"experiment config of this model> (its model section gives them) or, to "
          f"convert_checkpoint, {flags}")


def _check_fits(cfg: ml_collections.ConfigDict, kind: str, path: str) -> None:
  """Refuses values the tensors rule out (head counts, the hierarchy's layers)."""
  problems = []
  if cfg.num_heads < 1 or cfg.dim % cfg.num_heads:
    problems.append(f"num_heads={cfg.num_heads} does not divide width {cfg.dim}")
  if kind == "pretrain":
    if cfg.decoder_heads < 1 or cfg.decoder_dim % cfg.decoder_heads:
      problems.append(f"decoder_heads={cfg.decoder_heads} does not divide decoder width "
                      f"{cfg.decoder_dim}")
    depths = [d for d in (cfg.video_depth, cfg.audio_depth) if d]
    depth = min(depths) if depths else 0
    layers = tuple(cfg.hierarchy_layers)
    if len(layers) != cfg.decoder_depth - 1 or (layers and max(layers) >= depth):
      problems.append(f"hierarchy_layers={layers} do not fit encoder depth {depth} / decoder "
                      f"depth {cfg.decoder_depth} (the original's return_intermediate_features)")
  if problems:
    raise ConversionError(f"{path}: {'; '.join(problems)}")


def resolve_model_config(kind: str, facts: Mapping[str, Any], *, path: str,
                         record: Mapping[str, Any] | None = None, record_source: str = "",
                         explicit: Mapping[str, Any] | None = None,
                         fallback: ml_collections.ConfigDict | None = None
                         ) -> tuple[ml_collections.ConfigDict, dict[str, str]]:
  """Our model config for a checkpoint: the tensors' facts plus the unrecorded values, from
  `record` (the file's: our whole model config, or the values of the original's args),
  `explicit` values and, for what is still missing, `fallback` (see the module docstring).

  Returns (config, {unrecorded key: where its value came from})."""
  explicit = _normalised(explicit or {})
  stray = sorted(set(explicit) - set(UNRECORDED[kind]))
  if stray:
    raise ConversionError(f"{path}: {', '.join('--' + k for k in stray)} do not apply to a "
                          f"{kind} checkpoint")
  base = None
  if record and "dim" in record:  # our whole model config
    _check_architecture(record, kind, facts, f"{path}: its {record_source}")
    base = dict(record)
  values = _normalised({k: v for k, v in (record or {}).items() if k in UNRECORDED[kind]})
  origin = {k: record_source for k in values}
  conflicts = [f"--{k}={v!r} (the file records {values[k]!r})" for k, v in explicit.items()
               if k in values and values[k] != v]
  if conflicts:
    raise ConversionError(f"{path}: the explicit values contradict the file: "
                          f"{', '.join(conflicts)}")
  values.update(explicit)
  origin.update({k: "explicit" for k in explicit})
  missing = [k for k in UNRECORDED[kind] if k not in values]
  if missing and fallback is not None:
    _check_architecture(fallback, kind, facts, f"{path}: the given model config (--config)")
    values.update(_normalised({k: fallback[k] for k in missing}))
    origin.update({k: "config" for k in missing})
    base = base or fallback.to_dict()
    missing = []
  if missing:
    raise ConversionError(_missing_error(path, kind, missing, record_source))
  if base is None:
    # Defaults of what does not change the computation (dtype, masks, ...); a size label.
    size = next((name for name, row in sizes.SIZES.items() if row["dim"] == facts["dim"]), None)
    base = dict(sizes.model_config(size or "base").to_dict(), size=size or f"custom{facts['dim']}")
  # One dict, tuples in place, before the ConfigDict: it would keep a JSON list's type.
  cfg = ml_collections.ConfigDict(_normalised(
      {**base, **{k: v for k, v in facts.items() if k != "head_outputs"}, **values}))
  if kind == "finetune":
    regression = cfg.task == "regression"
    cfg.num_classes = 0 if regression else facts["head_outputs"]
    cfg.num_targets = facts["head_outputs"] if regression else 0
  _check_fits(cfg, kind, path)
  return cfg, origin


def _file_record(obj: Any, kind: str, facts: Mapping[str, Any],
                 path: str) -> tuple[dict[str, Any], str]:
  """(record, its name) of what the file itself says beyond its tensors; ({}, "") if nothing."""
  if not isinstance(obj, Mapping):
    return {}, ""
  if isinstance(obj.get(MODEL_CONFIG_KEY), Mapping):
    return dict(obj[MODEL_CONFIG_KEY]), f"{MODEL_CONFIG_KEY!r} entry"
  if obj.get("args") is not None:
    return values_from_args(obj["args"], kind, facts, path), "training args"
  return {}, ""


def read_original(path: str, *, explicit: Mapping[str, Any] | None = None,
                  config: ml_collections.ConfigDict | None = None) -> OriginalCheckpoint:
  """A .pth file -> OriginalCheckpoint (what `conversion.convert_to_orbax` writes).

  explicit: {UNRECORDED key: value} given by hand (the converter's flags); config: a model
  config or an experiment config (nested ones too: the experiment of the file's kind), for
  the values neither the file nor `explicit` gives."""
  obj = read_torch_checkpoint(path)
  state_dict = state_dict_of(obj, path)
  kind, facts = tensor_facts(state_dict)
  record, record_source = _file_record(obj, kind, facts, path)
  fallback = experiments.model_config_for_kind(config, kind) if config is not None else None
  cfg, origin = resolve_model_config(kind, facts, path=path, record=record,
                                     record_source=record_source, explicit=explicit,
                                     fallback=fallback)
  cls = PretrainModel if kind == "pretrain" else FinetuneModel
  shapes = params_lib.param_shapes(nnx.eval_shape(lambda: cls(cfg, rngs=nnx.Rngs(0))))
  params, _ = mapping.state_dict_to_params(state_dict, shapes)
  flat = {params_lib.key_of(p): v for p, v in params.items()}
  epoch = obj.get("epoch") if isinstance(obj, Mapping) else None
  meta = {"kind": kind, "model": cfg.to_dict(), "step": 0,
          "source": {"converted_from": paths.absolute(path),
                     "epoch": epoch if isinstance(epoch, (int, float)) else None,
                     "num_tensors": len(state_dict),
                     "num_values": int(sum(v.size for v in state_dict.values())),
                     "unrecorded_values_from": origin}}
  return OriginalCheckpoint(kind, cfg, flat, meta)
