"""Converts HiCMAE PyTorch checkpoints to ours (Orbax) and back.

  # original -> ours (pre-training or fine-tuning checkpoint with its training args)
  python -m hicmae_jax.tools.convert_checkpoint --input=checkpoint-99.pth --output=/ckpt/hicmae_base
  # a bare state dict: the values no tensor records come from the experiment config
  python -m hicmae_jax.tools.convert_checkpoint --input=model.pth --output=/ckpt/x \
      --config=configs/finetune_crema_d.py
  # ours -> original layout (the original code loads it; our model config rides along)
  python -m hicmae_jax.tools.convert_checkpoint --export --input=/ckpt/run --output=model.pth

Widths, depths and classes are read from the tensors; head counts, input sizes, the hierarchy
and the task from the file (our export's model config, or the original's args), else from
--config or the flags below. Nothing is guessed: an import that lacks one says which and how
to give it. No torch needed (hicmae_jax/checkpoints/). Nothing is written unless the whole
conversion succeeds.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys

import absl.logging

from hicmae_jax import experiments
from hicmae_jax.checkpoints.conversion import convert_to_orbax, export_to_torch
from hicmae_jax.checkpoints.original import UNRECORDED, ConversionError


def _int_list(text: str) -> tuple[int, ...]:
  return tuple(int(x) for x in text.split(","))


# The flag type of each value no tensor records (the flags are named after the model keys).
_FLAG_TYPES = {"hierarchy_layers": _int_list, "task": str, "head_activation": str}


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--input", required=True, help=".pth file (or our checkpoint with --export)")
  parser.add_argument("--output", required=True, help="Orbax folder (or .pth with --export)")
  parser.add_argument("--export", action="store_true", help="ours -> original layout")
  parser.add_argument("--step", type=int, default=None, help="with --export: which step")
  parser.add_argument("--config", default="", help="experiment config (path[:arg]) giving the "
                      "values the file does not record")
  for key in dict.fromkeys(k for keys in UNRECORDED.values() for k in keys):
    parser.add_argument(f"--{key}", type=_FLAG_TYPES.get(key, int), default=None,
                        help=f"model.{key}, where the file does not record it")
  parser.add_argument("--overwrite", action="store_true")
  return parser


def main(argv=None) -> int:
  args = _parser().parse_args(argv)
  logging.basicConfig(level=logging.WARNING, format="%(message)s")
  absl.logging.set_verbosity(absl.logging.WARNING)  # Orbax logs every step at INFO
  explicit = {k: getattr(args, k) for keys in UNRECORDED.values() for k in keys
              if getattr(args, k) is not None}
  try:
    if args.export and (explicit or args.config):
      raise ConversionError("--config and the model flags describe a .pth being imported; "
                            "an export writes the checkpoint's own model config")
    if args.export:
      report = export_to_torch(args.input, args.output, args.step)
    else:
      config = experiments.load_config_file(args.config) if args.config else None
      report = convert_to_orbax(args.input, args.output, explicit=explicit, config=config,
                                overwrite=args.overwrite)
  # ConversionError, MappingError, CheckpointFormatError and a bad --config are ValueErrors.
  except (ValueError, FileNotFoundError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  print(json.dumps(report, indent=2, default=str))
  return 0


if __name__ == "__main__":
  sys.exit(main())
