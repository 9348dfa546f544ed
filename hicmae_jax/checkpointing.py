"""Orbax checkpoints: what a checkpoint holds and the resume order, in one place.

A checkpoint folder (`<workdir>/checkpoints/<step>/`) holds the items
  params : flat {dotted name: array} model parameters (readable names mirroring the original)
  train  : {"opt_state": ..., "step": int, "nonfinite": int} (absent in converted checkpoints)
  ds     : the grain iterator state of every process (absent in converted checkpoints)
  meta   : JSON {"kind", "step", "model": model config, "config": full config, "source"}
Saves are asynchronous and atomic (Orbax writes to a temporary folder and renames it), so a
run killed at any moment leaves only complete checkpoints behind.

Every folder here may be local or in a bucket (gs://...): paths go through paths.py, and
Orbax writes arrays with tensorstore's own GCS driver.

Resume order (`resolve_start`): a checkpoint in the workdir (preemption), then `config.resume`
(another run's checkpoint folder, full state), then `config.init_from` (weights only: our
checkpoint, an original .pth or an exported folder), then scratch.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import os
from typing import Any

import jax
import orbax.checkpoint as ocp

from hicmae_jax import barriers, log_noise, paths

log = logging.getLogger(__name__)

ITEMS = ("params", "train", "ds", "meta")


def _grain_args():
  import grain  # local: heavy, and only needed when a data iterator is saved
  return grain.checkpoint.CheckpointSave, grain.checkpoint.CheckpointRestore


def manager(directory: str, *, max_to_keep: int | None = None, async_save: bool = False,
            read_only: bool = False, best_metric: str = "") -> ocp.CheckpointManager:
  """best_metric: keep the `max_to_keep` checkpoints with the highest metrics[best_metric]
  (Orbax's best-checkpoint policy) instead of the latest ones."""
  if read_only:  # before the options: their check logs the first of Orbax's notes
    log_noise.drop_orbax_read_only_notes()
  best = dict(best_fn=lambda m: m[best_metric], best_mode="max",
              keep_checkpoints_without_metrics=False) if best_metric else {}
  # Orbax's barriers are device collectives, and XLA:CPU's gloo gives the other processes
  # only 30 s to join the communicator its first collective creates (later ones wait as long
  # as needed). A manager is usually the first collective of a job, reached by each process
  # after its own compiles: meet at the coordination service's barrier first.
  barriers.barrier("checkpoint_manager")
  options = ocp.CheckpointManagerOptions(
      max_to_keep=max_to_keep, create=not read_only, read_only=read_only,
      enable_async_checkpointing=async_save, **best)
  return ocp.CheckpointManager(paths.absolute(directory), item_names=ITEMS, options=options)


def save(mngr: ocp.CheckpointManager, step: int, *, params, train=None, data_iter=None,
         meta: dict[str, Any], force: bool = False, metrics=None) -> bool:
  """Starts an (async) save of the given items at `step` (metrics: for a best_metric
  manager)."""
  args = {"params": ocp.args.StandardSave(params), "meta": ocp.args.JsonSave(meta)}
  if train is not None:
    args["train"] = ocp.args.StandardSave(train)
  if data_iter is not None:
    grain_save, _ = _grain_args()
    args["ds"] = grain_save(data_iter)
  return mngr.save(step, args=ocp.args.Composite(**args), force=force, metrics=metrics)


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
  path = os.path.join(paths.absolute(directory), str(step), "params")
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
  directory = resolve_checkpoint_dir(checkpoint)
  step, meta = read_meta(directory, step)
  return step, meta, restore_params_as_saved(directory, step)


def read_meta(directory: str, step: int | None = None) -> tuple[int, dict[str, Any]]:
  """(step, meta) of the latest (or given) checkpoint in a folder; a missing folder, one with
  no finished checkpoint and a missing step each get their own error."""
  steps = _steps_or_explain(directory)
  step = max(steps) if step is None else step
  if step not in steps:
    raise FileNotFoundError(f"{directory!r} has no checkpoint of step {step}; it has steps "
                            f"{sorted(steps)} (omit the step for the latest)")
  mngr = manager(directory, read_only=True)
  meta = mngr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
  mngr.close()
  return step, meta


def _steps_or_explain(directory: str) -> list[int]:
  """The finished steps in `directory`; FileNotFoundError saying what is wrong if none."""
  if not paths.isdir(directory):
    raise FileNotFoundError(
        f"checkpoint folder {directory!r} does not exist: pass a run's workdir, its "
        f"checkpoints/ folder or a converted checkpoint folder")
  steps = finished_steps(directory)
  if steps:
    return steps
  unfinished = sorted(n for n in paths.listdir(directory) if "orbax-checkpoint-tmp" in n)
  if unfinished:
    raise FileNotFoundError(
        f"{directory!r} holds only unfinished saves ({', '.join(unfinished[:3])}): the run was "
        f"stopped while writing its first checkpoint. Start that run again (it begins anew) or "
        f"pass another folder")
  raise FileNotFoundError(
      f"{directory!r} holds no checkpoint (no step folder such as {directory}/1000): a run "
      f"writes its first one after config.checkpoint_every_steps steps; is it the right folder?")


@dataclasses.dataclass
class Start:
  """Where a run starts: mode is 'workdir' | 'resume' | 'init_from' | 'scratch'."""
  mode: str
  directory: str = ""
  step: int | None = None


def checkpoint_dir(workdir: str) -> str:
  return os.path.join(workdir, "checkpoints")


def best_dir(workdir: str) -> str:
  """The best-validation weights of a fine-tuning run (BestCheckpoint)."""
  return os.path.join(workdir, "best_val")


def resolve_checkpoint_dir(path: str) -> str:
  """The checkpoint folder `path` names: `path` itself when it holds step folders (a
  checkpoints/ folder, a converted checkpoint, best_val/), else its checkpoints/ subfolder when
  there is one (a run's workdir), else `path` (read_meta then says what is wrong with it)."""
  if finished_steps(path) or not paths.isdir(checkpoint_dir(path)):
    return path
  return checkpoint_dir(path)


def finished_steps(directory: str) -> list[int]:
  """Steps with a finished checkpoint folder in `directory` (a file listing, no Orbax manager;
  [] when the folder does not exist yet)."""
  return list(ocp.utils.checkpoint_steps(directory)) if paths.isdir(directory) else []


# The files of an exported folder (checkpoints/safetensors_io.py), which no Orbax checkpoint
# folder or run workdir holds.
_EXPORTED_FILES = ("config.json", "model.safetensors")


def _weights_only(path: str) -> bool:
  """A file (an original .pth) or an exported folder: weights without a training state."""
  return paths.isfile(path) or any(paths.exists(os.path.join(path, n))
                                    for n in _EXPORTED_FILES)


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
    if _weights_only(path):
      if mode == "resume":
        raise ValueError(f"config.resume={path!r} holds weights only (a .pth or an exported "
                         f"folder): resume takes a run's checkpoints (full state); start from "
                         f"those weights with config.init_from")
      return Start(mode, path)  # step None: read by checkpoints/weights.load_weights
    directory = resolve_checkpoint_dir(path)
    step, _ = read_meta(directory)
    return Start(mode, directory, step)
  return Start("scratch")



class BestCheckpoint:
  """The best-validation weights of a fine-tuning run: `<workdir>/best_val/<step>/` (params, and
  meta whose "best" entry is {step, epoch, metric, value, val}).

  Orbax's best-checkpoint policy (best_fn on `metric`, mode max, max_to_keep 1) keeps the one
  with the highest value. Weights are written only when a validation beats the best so far, so
  a tie keeps the earlier step and no checkpoint is written that the policy would drop at once.
  The best so far is read back from the folder: a resumed or extended run goes on with the same
  selection. Every process calls `offer` with the same report (evaluation gathers every
  prediction), as the save is collective."""

  def __init__(self, workdir: str, metric: str, *, resumed: bool, async_save: bool):
    self.directory = best_dir(workdir)
    self.metric = metric
    self.record: dict[str, Any] | None = None
    steps = finished_steps(self.directory)
    self._mngr = manager(self.directory, max_to_keep=1, async_save=async_save,
                         best_metric=metric)
    if steps and not resumed:
      # Left by an earlier attempt of this workdir that wrote no training checkpoint: this run
      # starts anew, so its selection does too.
      log.warning("%s: removing best-validation step(s) %s of an earlier attempt (this run "
                  "starts without a checkpoint)", self.directory, steps)
      for step in steps:
        self._mngr.delete(step)
    elif steps:
      self.record = read_meta(self.directory, max(steps))[1].get("best")

  def offer(self, step: int, epoch: int, report: dict[str, Any], params,
            meta: dict[str, Any]) -> bool:
    """Saves `params` as the best when report[metric] beats it; returns whether it did."""
    value = float(report.get(self.metric, math.nan))
    if not math.isfinite(value):
      log.warning("validation %s=%s at step %d is not finite: not a best candidate",
                  self.metric, value, step)
      return False
    # A resumed run redoes the steps after its last training checkpoint exactly, so a record
    # at a later step than this one was made by this very computation: keep it.
    if self.record is not None and (value <= self.record["value"] or step <= self.record["step"]):
      return False
    val = {k: v for k, v in report.items() if isinstance(v, (int, float, str))}
    record = {"step": step, "epoch": epoch, "metric": self.metric, "value": value, "val": val}
    save(self._mngr, step, params=params, meta=dict(meta, step=step, best=record), force=True,
         metrics={self.metric: value})
    self.record = record
    log.info("best validation so far (%s=%.4g at step %d): weights saved in %s", self.metric,
             value, step, self.directory)
    return True

  def restore(self, params_target) -> dict[str, jax.Array]:
    """The best weights, into an abstract sharded target (see abstract_like)."""
    self._mngr.wait_until_finished()
    return restore(self._mngr, self.record["step"], params_target=params_target)["params"]

  def close(self) -> None:
    self._mngr.wait_until_finished()
    self._mngr.close()
