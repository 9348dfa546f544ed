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

import json
import logging
import sys

import absl.logging
from absl import flags

from hicmae_jax import cli, experiments
from hicmae_jax.checkpoints.conversion import convert_to_orbax, export_to_torch
from hicmae_jax.checkpoints.original import UNRECORDED, ConversionError


def _int_list(text: str) -> tuple[int, ...]:
  return tuple(int(x) for x in text.split(","))


# The flag of each value no tensor records (the flags are named after the model keys); the
# hierarchy is a comma list of block indices.
_STRING_FLAGS = ("hierarchy_layers", "task", "head_activation")


def _define_flags(values: flags.FlagValues) -> None:
  flags.DEFINE_string("input", None, ".pth file (or our checkpoint with --export)",
                      flag_values=values, required=True)
  flags.DEFINE_string("output", None, "Orbax folder (or .pth with --export)",
                      flag_values=values, required=True)
  flags.DEFINE_bool("export", False, "ours -> original layout", flag_values=values)
  flags.DEFINE_integer("step", None, "with --export: which step", flag_values=values)
  flags.DEFINE_string("config", "", "experiment config (path[:arg]) giving the values the file "
                      "does not record", flag_values=values)
  for key in dict.fromkeys(k for keys in UNRECORDED.values() for k in keys):
    define = flags.DEFINE_string if key in _STRING_FLAGS else flags.DEFINE_integer
    define(key, None, f"model.{key}, where the file does not record it", flag_values=values)
  flags.DEFINE_bool("overwrite", False, "replace an existing output", flag_values=values)


def main(argv=None) -> int:
  """The command line (argv without the program name; None: sys.argv[1:]) -> the exit code."""
  return cli.run_own(_define_flags, _main, argv, doc=__doc__)


def _main(values: flags.FlagValues) -> int:
  logging.basicConfig(level=logging.WARNING, format="%(message)s")
  absl.logging.set_verbosity(absl.logging.WARNING)  # Orbax logs every step at INFO
  explicit = {k: values[k].value for keys in UNRECORDED.values() for k in keys
              if values[k].value is not None}
  try:
    if "hierarchy_layers" in explicit:
      explicit["hierarchy_layers"] = _int_list(explicit["hierarchy_layers"])
    if values.export and (explicit or values.config):
      raise ConversionError("--config and the model flags describe a .pth being imported; "
                            "an export writes the checkpoint's own model config")
    if values.export:
      report = export_to_torch(values.input, values.output, values.step)
    else:
      config = experiments.load_config_file(values.config) if values.config else None
      report = convert_to_orbax(values.input, values.output, explicit=explicit, config=config,
                                overwrite=values.overwrite)
  # ConversionError, MappingError, CheckpointFormatError and a bad --config are ValueErrors.
  except (ValueError, FileNotFoundError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  print(json.dumps(report, indent=2, default=str))
  return 0


if __name__ == "__main__":
  sys.exit(main())
