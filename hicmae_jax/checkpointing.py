"""Orbax checkpoints: what a checkpoint holds and the resume order, in one place.

A checkpoint folder (`<workdir>/checkpoints/<step>/`) holds the items
  params : flat {dotted name: array} model parameters (readable names mirroring the original)
  train  : {"opt_state": ..., "step": int, "nonfinite": int} (absent in converted checkpoints)
  ds     : the grain iterator state of every process (absent in converted checkpoints)
  meta   : JSON {"kind", "step", "model": model config, "config": full config, "source"}
Saves are asynchronous and atomic (Orbax writes to a temporary folder and renames it), so a
run killed at any moment leaves only complete checkpoints behind.

Resume order (`resolve_start`): a checkpoint in the workdir (preemption), then `config.resume`
(another run's checkpoint folder, full state), then `config.init_from` (weights only), then
scratch.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
from typing import Any

import jax
import orbax.checkpoint as ocp

log = logging.getLogger(__name__)

ITEMS = ("params", "train", "ds", "meta")


def _grain_args():
  import grain  # local: heavy, and only needed when a data iterator is saved
  return grain.checkpoint.CheckpointSave, grain.checkpoint.CheckpointRestore


def manager(directory: str, *, max_to_keep: int | None = None, async_save: bool = False,
            read_only: bool = False) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(
      max_to_keep=max_to_keep, create=not read_only, read_only=read_only,
      enable_async_checkpointing=async_save)
  return ocp.CheckpointManager(os.path.abspath(directory), item_names=ITEMS, options=options)


def save(mngr: ocp.CheckpointManager, step: int, *, params, train=None, data_iter=None,
         meta: dict[str, Any], force: bool = False) -> bool:
  """Starts an (async) save of the given items at `step`."""
  args = {"params": ocp.args.StandardSave(params), "meta": ocp.args.JsonSave(meta)}
  if train is not None:
    args["train"] = ocp.args.StandardSave(train)
  if data_iter is not None:
    grain_save, _ = _grain_args()
    args["ds"] = grain_save(data_iter)
  return mngr.save(step, args=ocp.args.Composite(**args), force=force)


def abstract_like(tree, shardings):
  return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree,
                      shardings)


def restore(mngr: ocp.CheckpointManager, step: int, *, params_target, train_target=None,
            data_iter=None) -> dict[str, Any]:
  """Restores the requested items into sharded abstract targets; returns {item: value}."""
  args = {"params": ocp.args.StandardRestore(params_target), "meta": ocp.args.JsonRestore()}
  if train_target is not None:
    args["train"] = ocp.args.StandardRestore(train_target)
  if data_iter is not None:
    _, grain_restore = _grain_args()
    args["ds"] = grain_restore(data_iter)
  restored = mngr.restore(step, args=ocp.args.Composite(**args))
  return {k: restored[k] for k in args}


def restore_params_as_saved(directory: str, step: int, sharding=None) -> dict[str, jax.Array]:
  """All parameters of a checkpoint, whatever topology wrote it (a pod pre-training read on one
  machine), placed with `sharding` (default: this process's first device). The checkpoint's own
  shapes and dtypes; use `restore` with targets when they must match a model."""
  sharding = sharding or jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  path = os.path.join(os.path.abspath(directory), str(step), "params")
  meta = ocp.StandardCheckpointer().metadata(path)
  tree = getattr(meta, "item_metadata", meta)
  target = {k: jax.ShapeDtypeStruct(tuple(v.shape), v.dtype, sharding=sharding)
            for k, v in tree.items()}
  mngr = manager(directory, read_only=True)
  try:
    return mngr.restore(step, args=ocp.args.Composite(
        params=ocp.args.StandardRestore(target)))["params"]
  finally:
    mngr.close()


def read_params(checkpoint: str, step: int | None = None
                ) -> tuple[int, dict[str, Any], dict[str, jax.Array]]:
  """(step, meta, params) of our checkpoint: a checkpoint folder or a workdir holding one,
  the latest step unless given, readable whatever topology wrote it."""
  directory = checkpoint
  if os.path.isdir(checkpoint_dir(directory)):
    directory = checkpoint_dir(directory)
  step, meta = read_meta(directory, step)
  return step, meta, restore_params_as_saved(directory, step)


def read_meta(directory: str, step: int | None = None) -> tuple[int, dict[str, Any]]:
  """(step, meta) of the latest (or given) checkpoint in a folder; clear error if none."""
  mngr = manager(directory, read_only=True)
  step = mngr.latest_step() if step is None else step
  if step is None:
    raise FileNotFoundError(f"no checkpoint found in {directory!r} (expected Orbax step "
                            f"folders such as {directory}/1000)")
  meta = mngr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
  mngr.close()
  return step, meta


@dataclasses.dataclass
class Start:
  """Where a run starts: mode is 'workdir' | 'resume' | 'init_from' | 'scratch'."""
  mode: str
  directory: str = ""
  step: int | None = None


def checkpoint_dir(workdir: str) -> str:
  return os.path.join(workdir, "checkpoints")


def finished_steps(directory: str) -> list[int]:
  """Steps with a finished checkpoint folder in `directory` (a file listing, no Orbax manager;
  [] when the folder does not exist yet)."""
  return list(ocp.utils.checkpoint_steps(directory)) if os.path.isdir(directory) else []


def resolve_start(workdir: str, resume: str, init_from: str) -> Start:
  """The resume order, written once.

  The workdir's steps are listed from the file system (finished step folders only), not by an
  Orbax manager: managers run cross-process barriers, and the processes of a job can see the
  folder at different moments (process 0 creates it), so only a listing keeps every process on
  the same path."""
  own = checkpoint_dir(workdir)
  steps = finished_steps(own)
  if steps:
    return Start("workdir", own, max(steps))
  for mode, path in (("resume", resume), ("init_from", init_from)):
    if not path:
      continue
    directory = path
    if not any(name.isdigit() for name in os.listdir(path) if os.path.isdir(
        os.path.join(path, name))) and os.path.isdir(checkpoint_dir(path)):
      directory = checkpoint_dir(path)  # a workdir was given: use its checkpoints
    step, _ = read_meta(directory)
    return Start(mode, directory, step)
  return Start("scratch")


def write_json(path: str, obj: Any) -> None:
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(obj, f, indent=2, sort_keys=True, default=str)
  os.replace(tmp, path)
