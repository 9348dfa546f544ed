"""Times the converter on a full-size checkpoint in the original layout and checks it is lossless.

  python -m hicmae_jax.tools.benchmark_convert [--size=base] [--kind=pretrain] [--workdir=/tmp/x]

Builds a randomly initialised model of the size, exports it to an original-layout .pth with the
original's training args (the format of the released checkpoint-99.pth), converts that back
with the converter, and checks every tensor round-trips bit for bit. Prints the seconds each
stage took.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time

import absl.logging
import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import flags
from flax import nnx

from hicmae_jax import checkpointing, cli
from hicmae_jax.checkpoints import mapping
from hicmae_jax.checkpoints.conversion import convert_to_orbax
from hicmae_jax.checkpoints.pth_writer import save_state_dict_like_original
from hicmae_jax.models import params as params_lib, sizes
from hicmae_jax.models.classifier import FinetuneModel
from hicmae_jax.models.hicmae import PretrainModel

NUM_CLASSES = 6  # CREMA-D's, the fine-tuning parameter count of SPEC 1


def original_args(cfg, kind: str) -> dict:
  """The fields of the original's training args that the converter reads."""
  name = "pretrain_hicmae" if kind == "pretrain" else "avit"
  args = {"model": f"{name}_dim{cfg.dim}_patch{cfg.patch_size}_{cfg.input_size}_"
                   f"a{cfg.audio_frames}",
          "input_size": cfg.input_size, "num_frames": cfg.num_frames,
          "input_size_audio": cfg.audio_frames, "num_mel_bins": cfg.audio_mel_bins}
  if kind == "pretrain":
    args["return_intermediate_features"] = list(cfg.hierarchy_layers)
  else:
    args["nb_classes"] = cfg.num_classes
  return args


def _define_flags(values: flags.FlagValues) -> None:
  flags.DEFINE_string("size", "base", "model size (models/sizes.py)", flag_values=values)
  flags.DEFINE_enum("kind", "pretrain", ["pretrain", "finetune"], "which model",
                    flag_values=values)
  flags.DEFINE_string("workdir", "", "where the files go (default: a new temporary folder)",
                      flag_values=values)


def main(argv=None) -> int:
  """The command line (argv without the program name; None: sys.argv[1:]) -> the exit code
  (1: a tensor did not round-trip)."""
  return cli.run_own(_define_flags, _main, argv, doc=__doc__)


def _main(a: flags.FlagValues) -> int:
  absl.logging.set_verbosity(absl.logging.WARNING)
  workdir = a.workdir or tempfile.mkdtemp(prefix="bench_convert_")
  os.makedirs(workdir, exist_ok=True)
  cfg = sizes.model_config(a.size)
  cfg.num_classes = NUM_CLASSES
  cls = PretrainModel if a.kind == "pretrain" else FinetuneModel
  times = {}
  t = time.time()
  model = cls(cfg, rngs=nnx.Rngs(0))
  source = {p: np.asarray(v) for p, v in params_lib.flat_params(model).items()}
  state_dict = mapping.params_to_state_dict(source)
  pth = os.path.join(workdir, "checkpoint.pth")
  save_state_dict_like_original(pth, state_dict, epoch=99, args=original_args(cfg, a.kind))
  times["write_original_pth_s"] = round(time.time() - t, 2)
  t = time.time()
  out = os.path.join(workdir, "converted")
  # The config fills what args of a size without a registered original model (tiny) lack.
  report = convert_to_orbax(pth, out, config=cfg, overwrite=True)
  times["convert_s"] = round(time.time() - t, 2)
  mngr = checkpointing.manager(out, read_only=True)
  raw = mngr.restore(0, args=ocp.args.Composite(params=ocp.args.StandardRestore()))["params"]
  mngr.close()
  mismatched = [k for k, v in raw.items()
                if not np.array_equal(np.asarray(v), source[params_lib.path_of(k)])]
  times["file_mb"] = round(os.path.getsize(pth) / 2**20, 1)
  result = {"size": a.size, "kind": a.kind, "num_tensors": report["num_tensors"],
            "num_values": report["num_values"], "bit_exact": not mismatched, **times,
            "cpu_count": os.cpu_count(), "jax": jax.__version__}
  print(json.dumps(result, indent=2))
  return 0 if not mismatched else 1


if __name__ == "__main__":
  sys.exit(main())
