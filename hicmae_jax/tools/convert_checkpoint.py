"""Converts original HiCMAE PyTorch checkpoints to ours (Orbax) and back.

  # original -> ours (pre-training or fine-tuning checkpoint; size and classes inferred)
  python -m hicmae_jax.tools.convert_checkpoint --input=checkpoint-99.pth --output=/ckpt/hicmae_base
  # ours -> original layout (a file the original code loads with load_state_dict)
  python -m hicmae_jax.tools.convert_checkpoint --export --input=/ckpt/run/checkpoints --output=model.pth

No torch needed: the .pth zip/pickle is read with a restricted unpickler (tensors and plain
containers only). Nothing is written unless the whole conversion succeeds.
"""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
import sys
import tempfile
import time
from typing import Any, Mapping

import numpy as np

log = logging.getLogger("hicmae_jax.convert")


class ConversionError(ValueError):
  """The input is not a HiCMAE checkpoint we can convert; the message says why."""


def _state_dict(obj: Any, path: str) -> Mapping[str, np.ndarray]:
  if isinstance(obj, Mapping):
    for key in ("model", "module", "state_dict"):
      if key in obj and isinstance(obj[key], Mapping):
        return obj[key]
    if obj and all(isinstance(v, np.ndarray) for v in obj.values()):
      return obj  # a bare state dict
  raise ConversionError(f"{path}: no 'model'/'module' state dict in this file (top-level "
                        f"keys: {sorted(obj)[:10] if isinstance(obj, Mapping) else type(obj)})")


def infer_model_config(state_dict: Mapping[str, np.ndarray], args: Any = None):
  """Model config (size, depths, classes, kind) from the tensors; returns (kind, config)."""
  from configs import common
  if "decoder.head.weight" in state_dict:
    kind = "pretrain"
  elif "head.weight" in state_dict:
    kind = "finetune"
  else:
    raise ConversionError("neither 'decoder.head.weight' (pre-training) nor 'head.weight' "
                          "(fine-tuning) is in the state dict: not a HiCMAE checkpoint")

  def depth(prefix):
    ids = {int(m.group(1)) for k in state_dict for m in [re.match(prefix + r"(\d+)\.", k)] if m}
    return max(ids) + 1 if ids else 0

  if "encoder.norm.weight" in state_dict:
    dim = int(state_dict["encoder.norm.weight"].shape[0])
  elif "encoder_audio.norm.weight" in state_dict:
    dim = int(state_dict["encoder_audio.norm.weight"].shape[0])
  else:
    raise ConversionError("no encoder norm tensor: cannot infer the model width")
  size = {v["dim"]: k for k, v in common.SIZES.items() if k != "test"}.get(dim)
  cfg = common.model_config(size or "base")
  cfg.size = size or f"custom{dim}"
  cfg.dim = dim
  if size is None:
    cfg.num_heads = max(1, dim // 64)  # every released size uses 64-wide heads
  cfg.video_depth = depth(r"encoder\.blocks\.")
  cfg.audio_depth = depth(r"encoder_audio\.blocks\.")
  cfg.fusion_depth = depth(r"encoder_fusion\.blocks\.")
  if kind == "pretrain":
    cfg.decoder_depth = depth(r"decoder\.blocks\.")
    cfg.decoder_dim = int(state_dict["decoder.norm.weight"].shape[0])
    if size is None or cfg.decoder_dim != common.SIZES[size]["decoder_dim"]:
      cfg.decoder_heads = max(1, cfg.decoder_dim // 64)
    layers = getattr(args, "return_intermediate_features", None) if args is not None else None
    if isinstance(args, Mapping):
      layers = args.get("return_intermediate_features", layers)
    if layers:
      cfg.hierarchy_layers = tuple(int(i) for i in layers)
  else:
    head = state_dict["head.weight"]
    cfg.num_classes = int(head.shape[0])
    if args is not None:
      nb = getattr(args, "nb_classes", None)
      if isinstance(args, Mapping):
        nb = args.get("nb_classes", nb)
      if nb and int(nb) != cfg.num_classes:
        raise ConversionError(f"args.nb_classes={nb} but head.weight has {cfg.num_classes} rows")
  return kind, cfg


def read_original(input_path: str, *, hierarchy_layers=None, num_heads: int = 0,
                  decoder_heads: int = 0) -> tuple[str, Any, dict[str, np.ndarray], dict]:
  """Original .pth -> (kind, model config, flat {dotted name: array} params, meta), in memory.

  What `convert_to_orbax` writes, for tools that use an original checkpoint directly (feature
  export)."""
  from flax import nnx

  from hicmae_jax.checkpoints import mapping, torch_format
  from hicmae_jax.models import params as params_lib
  from hicmae_jax.models.classifier import FinetuneModel
  from hicmae_jax.models.hicmae import PretrainModel

  obj = torch_format.read_torch_checkpoint(input_path)
  state_dict = _state_dict(obj, input_path)
  args = obj.get("args") if isinstance(obj, Mapping) else None
  kind, cfg = infer_model_config(state_dict, args)
  if hierarchy_layers:
    cfg.hierarchy_layers = tuple(hierarchy_layers)
  # Head counts leave no trace in the tensors: the size table gives them for the released
  # sizes; other widths need the flags.
  if kind == "pretrain" and (len(cfg.hierarchy_layers) != cfg.decoder_depth - 1 or max(
      cfg.hierarchy_layers) >= min(cfg.video_depth, cfg.audio_depth)):
    raise ConversionError(f"hierarchy layers {tuple(cfg.hierarchy_layers)} do not fit encoder "
                          f"depth {cfg.video_depth} / decoder depth {cfg.decoder_depth}: pass "
                          f"--hierarchy_layers (the original's return_intermediate_features)")
  if num_heads:
    cfg.num_heads = num_heads
  if decoder_heads:
    cfg.decoder_heads = decoder_heads
  cls = PretrainModel if kind == "pretrain" else FinetuneModel
  shapes = params_lib.param_shapes(nnx.eval_shape(lambda: cls(cfg, rngs=nnx.Rngs(0))))
  params, _ = mapping.state_dict_to_params(state_dict, shapes)
  flat = {params_lib.key_of(p): v for p, v in params.items()}
  epoch = obj.get("epoch") if isinstance(obj, Mapping) else None
  meta = {"kind": kind, "model": cfg.to_dict(), "step": 0,
          "source": {"converted_from": os.path.abspath(input_path),
                     "epoch": epoch if isinstance(epoch, (int, float)) else None,
                     "num_tensors": len(state_dict),
                     "num_values": int(sum(v.size for v in state_dict.values()))}}
  return kind, cfg, flat, meta


def convert_to_orbax(input_path: str, output_dir: str, *, hierarchy_layers=None,
                     num_heads: int = 0, decoder_heads: int = 0,
                     overwrite: bool = False) -> dict[str, Any]:
  """Original .pth -> an Orbax checkpoint folder (params + meta) our binaries restore."""
  import jax

  from hicmae_jax import checkpointing

  t0 = time.time()
  if os.path.exists(output_dir) and os.listdir(output_dir) and not overwrite:
    raise ConversionError(f"{output_dir} exists and is not empty: choose another --output "
                          f"or pass --overwrite")
  kind, cfg, flat, meta = read_original(input_path, hierarchy_layers=hierarchy_layers,
                                        num_heads=num_heads, decoder_heads=decoder_heads)
  parent = os.path.dirname(os.path.abspath(output_dir)) or "."
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=".convert-", dir=parent)
  try:
    mngr = checkpointing.manager(tmp)
    checkpointing.save(mngr, 0, params=jax.tree.map(np.asarray, flat), meta=meta, force=True)
    mngr.wait_until_finished()
    mngr.close()
    if os.path.exists(output_dir):
      shutil.rmtree(output_dir)
    os.replace(tmp, output_dir)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  report = {"kind": kind, "size": cfg.size, "num_tensors": meta["source"]["num_tensors"],
            "num_values": meta["source"]["num_values"], "model": cfg.to_dict(),
            "seconds": round(time.time() - t0, 2), "output": output_dir}
  return report


def export_to_torch(checkpoint_dir: str, output_path: str, step: int | None = None) -> dict:
  """Our checkpoint (params item) -> an original-layout .pth ({'model': state_dict})."""
  from hicmae_jax import checkpointing
  from hicmae_jax.checkpoints import mapping, torch_format
  from hicmae_jax.models import params as params_lib

  step, meta, raw = checkpointing.read_params(checkpoint_dir, step)
  params = {params_lib.path_of(k): np.asarray(v, np.float32) for k, v in raw.items()}
  state_dict = mapping.params_to_state_dict(params)
  torch_format.save_state_dict_like_original(output_path, state_dict, epoch=step)
  return {"kind": meta.get("kind"), "num_tensors": len(state_dict), "step": step,
          "output": output_path}


def main(argv=None) -> int:
  import argparse
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--input", required=True, help=".pth file (or our checkpoint with --export)")
  parser.add_argument("--output", required=True, help="Orbax folder (or .pth with --export)")
  parser.add_argument("--export", action="store_true", help="ours -> original layout")
  parser.add_argument("--step", type=int, default=None, help="with --export: which step")
  parser.add_argument("--hierarchy_layers", default="", help="e.g. 3,6,9 (pre-training)")
  parser.add_argument("--num_heads", type=int, default=0,
                      help="encoder heads, for widths outside the size table (default dim/64)")
  parser.add_argument("--decoder_heads", type=int, default=0, help="likewise for the decoders")
  parser.add_argument("--overwrite", action="store_true")
  a = parser.parse_args(argv)
  logging.basicConfig(level=logging.WARNING, format="%(message)s")
  import absl.logging
  absl.logging.set_verbosity(absl.logging.WARNING)  # Orbax logs every step at INFO
  from hicmae_jax.checkpoints.mapping import MappingError
  from hicmae_jax.checkpoints.torch_format import CheckpointFormatError
  try:
    if a.export:
      report = export_to_torch(a.input, a.output, a.step)
    else:
      layers = tuple(int(x) for x in a.hierarchy_layers.split(",")) if a.hierarchy_layers else None
      report = convert_to_orbax(a.input, a.output, hierarchy_layers=layers,
                                num_heads=a.num_heads, decoder_heads=a.decoder_heads,
                                overwrite=a.overwrite)
  except (ConversionError, MappingError, CheckpointFormatError, FileNotFoundError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  print(json.dumps(report, indent=2, default=str))
  return 0


if __name__ == "__main__":
  sys.exit(main())
