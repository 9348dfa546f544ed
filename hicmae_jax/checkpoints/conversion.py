"""Checkpoint files both ways: a .pth -> our Orbax checkpoint folder, and ours -> a .pth in the
original's layout that carries our model config (so importing it back needs nothing else).

Nothing is written unless the whole conversion succeeds: locally the checkpoint is written
into a temporary folder renamed at the end; in a bucket (gs://..., which has no rename) Orbax
writes the step folder in place and marks it complete last (its commit_success.txt), so an
interrupted conversion leaves no checkpoint that a reader would take.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from typing import Any, Mapping

import jax
import ml_collections
import numpy as np

from hicmae_jax import checkpointing, paths
from hicmae_jax.checkpoints import mapping
from hicmae_jax.checkpoints.original import MODEL_CONFIG_KEY, ConversionError, read_original
from hicmae_jax.checkpoints.pth_writer import save_state_dict_like_original
from hicmae_jax.models import params as params_lib


def convert_to_orbax(input_path: str, output_dir: str, *,
                     explicit: Mapping[str, Any] | None = None,
                     config: ml_collections.ConfigDict | None = None,
                     overwrite: bool = False) -> dict[str, Any]:
  """A .pth -> an Orbax checkpoint folder (params + meta with the true model config) that our
  binaries restore. `explicit` / `config`: see `original.read_original`."""
  t0 = time.time()
  if paths.exists(output_dir) and paths.listdir(output_dir) and not overwrite:
    raise ConversionError(f"{output_dir} exists and is not empty: choose another --output "
                          f"or pass --overwrite")
  read = read_original(input_path, explicit=explicit, config=config)
  if paths.is_remote(output_dir):
    paths.rmtree(output_dir)
    _save_converted(output_dir, read)
    return _report(read, t0, output_dir)
  parent = os.path.dirname(os.path.abspath(output_dir)) or "."
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=".convert-", dir=parent)
  try:
    _save_converted(tmp, read)
    if os.path.exists(output_dir):
      shutil.rmtree(output_dir)
    os.replace(tmp, output_dir)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  return _report(read, t0, output_dir)


def _save_converted(directory: str, read) -> None:
  """The converted weights as step 0 of an Orbax checkpoint folder."""
  mngr = checkpointing.manager(directory)
  checkpointing.save(mngr, 0, params=jax.tree.map(np.asarray, read.params), meta=read.meta,
                     force=True)
  mngr.wait_until_finished()
  mngr.close()


def _report(read, t0: float, output_dir: str) -> dict[str, Any]:
  source = read.meta["source"]
  return {"kind": read.kind, "size": read.model.size, "num_tensors": source["num_tensors"],
          "num_values": source["num_values"], "model": read.model.to_dict(),
          "unrecorded_values_from": source["unrecorded_values_from"],
          "seconds": round(time.time() - t0, 2), "output": output_dir}


def export_to_torch(checkpoint_dir: str, output_path: str, step: int | None = None) -> dict:
  """Our checkpoint (a workdir or checkpoint folder) -> an original-layout .pth:
  {'model': state_dict, 'epoch': step, MODEL_CONFIG_KEY: our model config as plain values}."""
  step, meta, raw = checkpointing.read_params(checkpoint_dir, step)
  if not isinstance(meta.get("model"), Mapping):
    raise ConversionError(f"{checkpoint_dir} step {step}: the checkpoint's meta has no model "
                          f"config; it was not written by this code or its converter")
  params = {params_lib.path_of(k): np.asarray(v, np.float32) for k, v in raw.items()}
  state_dict = mapping.params_to_state_dict(params)
  # Through JSON: only dict/list/str/int/float/bool/None, which torch.load(weights_only=True)
  # reads (tuples would do too; lists are what the meta holds).
  model = json.loads(json.dumps(dict(meta["model"])))
  save_state_dict_like_original(output_path, state_dict, epoch=step,
                                extra={MODEL_CONFIG_KEY: model})
  return {"kind": meta.get("kind"), "num_tensors": len(state_dict), "step": step,
          "output": output_path}
