"""The trainer: pre-training, fine-tuning and linear probing, top to bottom.

Sections: config -> data -> tasks (what differs between the kinds, chosen once) -> step ->
state -> start (the resume order) -> loop (logging, checkpoints, periodic jobs, preemption) ->
run. Periodic jobs (fine-tuning evaluation, the reconstruction figure) are plain factories in the
task table, from evaluate.py and reconstruction.py (both below this module).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

from hicmae_jax import (
  barriers,
  checkpointing,
  device_augment,
  evaluate,
  io_utils,
  objectives,
  optim,
  paths,
  periodic,
  preemption,
  reconstruction,
  runtime,
  sharding,
  train_state,
  writers,
)
from hicmae_jax.checkpoints import transfer, weights as weights_lib
from hicmae_jax.config_validation import validate_config
from hicmae_jax.data.format import schema, split_reader
from hicmae_jax.data.pipeline import factories as pipeline
from hicmae_jax.data.prepare import synthetic

# After hicmae_jax.writers, which installs the TensorFlow-free writer these clu modules load.
from clu import parameter_overview, periodic_actions  # noqa: E402  isort:skip

log = logging.getLogger(__name__)


class NonFiniteError(FloatingPointError):
  """A non-finite loss or gradient norm (config.nonfinite = 'stop')."""


# ------------------------------------------------------------------------------------ config --

def ensure_synthetic_data(config: ml_collections.ConfigDict) -> None:
  """Generates the built-in synthetic dataset when the config asks for it (demo, tests)."""
  d = config.data
  if not d.synthetic_dir:
    return
  if jax.process_index() == 0:
    synthetic.generate(d.synthetic_dir, num_train=d.synthetic_num_train,
                       num_val=d.synthetic_num_val, num_test=d.synthetic_num_test,
                       num_classes=d.synthetic_num_classes, frame_size=d.synthetic_frame_size,
                       num_frames=d.synthetic_num_frames, seed=config.seed, verbose=True)
  # not a device collective: the others may wait longer than gloo gives a new communicator
  barriers.barrier("synthetic_data_ready")
  with config.unlocked():
    split = "pretrain" if config.kind == "pretrain" else "train"
    d.train_dir = d.train_dir or os.path.join(d.synthetic_dir, split)
    if config.kind != "pretrain":
      d.val_dir = d.val_dir or os.path.join(d.synthetic_dir, "val")
      d.test_dir = d.test_dir or os.path.join(d.synthetic_dir, "test")


# -------------------------------------------------------------------------------------- data --

def train_dataset(config, per_process_batch: int, seed: int, row_block=(None, None),
                  split: split_reader.Split | None = None):
  """The training pipeline of config.kind over config.data.train_dir (`split`: that split
  opened already, by `run`). row_block: (block, count) of global-batch rows this process
  fills (sharding.py)."""
  return pipeline.train_dataset_from_config(config, split or config.data.train_dir,
                                            batch_size=per_process_batch, seed=seed,
                                            shard=row_block)


# ------------------------------------------------------------------------------------- tasks --

def _pretrain_loss(config, view):
  """(params, batch, key, deterministic) -> (loss, scalar metrics) of the pre-training model."""
  def loss_fn(params, batch, key, deterministic):
    model = view.merge(params)
    loss, aux = objectives.pretrain_loss(model, batch, loss_cfg=config.loss, key=key,
                                         deterministic=deterministic)
    return loss, {k: aux[k] for k in ("loss", "loss_video", "loss_audio", "loss_contrastive")}
  return loss_fn


def _finetune_loss(config, view):
  """(params, batch, key, deterministic) -> (loss, scalar metrics) of the fine-tuning model:
  soft cross-entropy (mixup / label smoothing targets) or MSE for regression."""
  m = config.model

  def loss_fn(params, batch, key, deterministic):
    model = view.merge(params)
    rngs = None if deterministic else nnx.Rngs(dropout=key)
    # uint8 frames with the host's draws: cropped, flipped, erased, mixed here (same maths)
    video = device_augment.train_video(batch, m.input_size)
    out = model(video, batch["audio"], rngs=rngs, deterministic=deterministic)
    logits = out["logits"].astype(jnp.float32)
    if m.task == "classification":
      target = objectives.classification_targets(batch, m.num_classes,
                                                 config.data.label_smoothing)
      loss = objectives.soft_cross_entropy(logits, target)
      acc = jnp.mean(jnp.argmax(logits, -1) == batch["label"])
      return loss, {"loss": loss, "train_accuracy": acc}
    loss = jnp.mean(jnp.square(logits - batch["targets"]))
    return loss, {"loss": loss}
  return loss_fn


@dataclasses.dataclass(frozen=True)
class Task:
  """What differs between the kinds of run (config.kind); looked up once, in TASKS. The model
  class and the frozen-parameter rule of each kind are in train_state (MODELS, FREEZE).

  repeated_sampling: an epoch is num_clips * data.num_repeats clips (pre-training's repeated
    sampling), else num_clips.
  jobs: the factories of the periodic jobs the kind can have, factory(config, ctx) -> Job |
    None: each one's config keys turn it on or off.
  """
  loss: Callable
  repeated_sampling: bool
  jobs: tuple[Callable, ...]


TASKS = {
    "pretrain": Task(_pretrain_loss, True, (reconstruction.reconstruction_job,)),
    "finetune": Task(_finetune_loss, False, (evaluate.evaluation_job,)),
    "linear_probe": Task(_finetune_loss, False, (evaluate.evaluation_job,)),
}

# One home each, in train_state; named here too for the callers that know them as train.*.
build_model = train_state.build_model
frozen_predicate = train_state.frozen_predicate
make_tx = train_state.make_tx


def make_loss_fn(config, view):
  """(params, batch, key, deterministic) -> (loss, scalar metrics)."""
  return TASKS[config.kind].loss(config, view)


# -------------------------------------------------------------------------------------- step --

def make_train_step(config, view, tx, state_shardings, mesh):
  loss_fn = make_loss_fn(config, view)
  base_key = jax.random.key(config.seed)

  def apply_update(params, opt_state, grads):
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  def step_fn(state, batch):
    key = jax.random.fold_in(base_key, state["step"])
    # The mesh in context lets the loss say where its few gathered values go (losses.py).
    with jax.sharding.use_abstract_mesh(mesh.abstract_mesh):
      (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(
          state["params"], batch, key, False)
    grad_norm = optax.tree.norm(grads)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    # A non-finite update is never applied ('stop' also stops the run after the step). A cond,
    # not a select of new vs old: the select keeps the old moments alive next to the new ones,
    # and XLA then copies every first moment before updating it in place (~13 % of the CPU
    # Base step).
    params, opt_state = jax.lax.cond(
        finite, apply_update, lambda p, o, g: (p, o), state["params"], state["opt_state"], grads)
    new_state = {
        "params": params, "opt_state": opt_state, "step": state["step"] + 1,
        "nonfinite": state["nonfinite"] + (~finite).astype(jnp.int32),
        "first_nonfinite_step": jnp.where(
            (~finite) & (state["first_nonfinite_step"] < 0), state["step"],
            state["first_nonfinite_step"]),
    }
    metrics = dict(metrics, grad_norm=grad_norm)
    return new_state, metrics

  data_sh = sharding.batch_sharding(mesh)
  return jax.jit(step_fn, in_shardings=(state_shardings, data_sh),
                 out_shardings=(state_shardings, sharding.replicated(mesh)),
                 donate_argnums=(0,), compiler_options=sharding.compiler_options(mesh))


# ------------------------------------------------------------------------------------- state --

def init_state(config, mesh, total_updates: int, steps_per_epoch: int):
  """Returns (view, tx, state, state shardings, peak lr): the state of `train_state.describe`
  created sharded (no host holds the whole model first)."""
  spec = train_state.describe(config, mesh, total_updates, steps_per_epoch)
  return spec.view, spec.tx, spec.create(), spec.shardings, spec.lr


def _write_parameter_table(workdir: str, params: dict) -> None:
  """clu's parameter table into <workdir>/parameters.txt (process 0), not into the log."""
  table = parameter_overview.get_parameter_overview(
      # shapes only: under fsdp on several hosts a parameter is not readable by one process
      {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in params.items()},
      include_stats=False)
  path = os.path.join(workdir, "parameters.txt")
  io_utils.atomic_write(path, lambda f: f.write(table.encode("utf-8") + b"\n"))
  log.debug("parameters:\n%s", table)
  log.info("parameter table (%d tensors): %s", len(params), path)


# ------------------------------------------------------------------------------------- start --

def _check_same_model(config, start: checkpointing.Start) -> None:
  """A workdir holding another model's checkpoints is refused (allow_config_change)."""
  want = json.loads(json.dumps(config.model.to_dict()))
  try:
    _, meta = checkpointing.read_meta(start.directory, start.step)
  except Exception:  # a damaged checkpoint: the restore names it
    meta = {"model": want}
  if meta.get("model") != want:
    raise ValueError(f"{start.directory} holds checkpoints of a run with another model "
                     f"config; use a new --workdir or --config.allow_config_change=True")


def initial_state(config, start: checkpointing.Start, mngr, state: dict, state_sh: dict,
                  data_iter) -> dict:
  """The state a run starts from, by the resume order that checkpointing.resolve_start
  decided: this workdir's checkpoint (full state and data position, restored with the run's
  own manager) -> config.resume (another run's full state) -> config.init_from (weights only)
  -> scratch (`state` as initialised)."""
  if start.mode in ("workdir", "resume"):
    source = mngr if start.mode == "workdir" else checkpointing.manager(start.directory,
                                                                         read_only=True)
    rest, rest_sh = ({k: v for k, v in tree.items() if k != "params"} for tree in (state, state_sh))
    targets = dict(params_target=checkpointing.abstract_like(state["params"], state_sh["params"]),
                   train_target=checkpointing.abstract_like(rest, rest_sh))
    restored, used = _restore_with_fallback(source, start, targets, data_iter,
                                            config.checkpoint_fallback)
    if source is not mngr:
      source.close()
    log.info("resumed from %s step %d (%s)", start.directory, used, start.mode)
    return {"params": restored["params"], **restored["train"]}
  if start.mode == "init_from":
    return dict(state, params=_initial_weights(config, start, state["params"],
                                               state_sh["params"]))
  log.info("starting from scratch (seed %d)", config.seed)
  return state


def _initial_weights(config, start, ours, param_shardings):
  """Weights-only start from `init_from`: our checkpoint, an exported folder or an original
  .pth, read and moved in as every reader does (`weights_lib.load_weights`, then
  `weights_lib.transfer_into` with bind's rule: a pre-training checkpoint gives a fine-tuning
  model its encoders and fusion encoder). ours: the freshly initialised flat params (sharded),
  which keep their values where the checkpoint has none and are never gathered. Our checkpoint
  of a kind that gives every tensor is restored straight into the sharded target instead
  (the same tensors, and no host holds the whole model)."""
  if start.step is not None:  # our Orbax checkpoint (a .pth or an exported folder has none)
    _, meta = checkpointing.read_meta(start.directory, start.step)
    if weights_lib.required_tensors(meta.get("kind", ""), config.kind) == transfer.ALL:
      mngr = checkpointing.manager(start.directory, read_only=True)
      abstract = checkpointing.abstract_like(ours, param_shardings)
      restored = checkpointing.restore(mngr, start.step, params_target=abstract)
      mngr.close()
      log.info("init_from %s: all %d tensors loaded (weights only)", start.directory, len(ours))
      return restored["params"]
  weights = weights_lib.load_weights(start.directory, start.step, model_hint=config)
  moved = weights_lib.transfer_into(weights, ours, config.kind)
  dropped = moved.dropped
  log.info("init_from %s (a %s checkpoint): %d tensors loaded; dropped %d: %s", start.directory,
           weights.kind, len(moved.loaded), len(dropped),
           ", ".join(dropped[:12]) + (" ..." if len(dropped) > 12 else ""))
  log.info("newly initialised (not in the checkpoint): %s", ", ".join(moved.missing) or "none")
  loaded = set(moved.loaded)
  return {k: _place(v, param_shardings[k]) if k in loaded else v
          for k, v in moved.params.items()}


def _place(value: np.ndarray, sharding) -> jax.Array:
  """A host array (every process holds all of it) as a global array of `sharding`: each
  device receives only its own block."""
  value = np.asarray(value)
  return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])


def _restore_with_fallback(mngr, start, targets, data_iter, fallback: bool):
  """Restores start.step; a corrupt or truncated checkpoint is named by path, and with
  `fallback` the previous complete ones are tried, newest first."""
  steps = [start.step] + sorted((s for s in mngr.all_steps() if s < start.step), reverse=True)
  for step in steps:
    path = os.path.join(start.directory, str(step))
    try:
      return checkpointing.restore(mngr, step, data_iter=data_iter, **targets), step
    except Exception as e:  # Orbax/tensorstore raise many types for damaged files
      if not fallback:
        raise RuntimeError(
            f"checkpoint {path} cannot be restored ({type(e).__name__}: {str(e)[:300]}). "
            f"Pass --config.checkpoint_fallback=True to start from the previous checkpoint "
            f"instead, or remove the damaged folder.") from e
      log.error("checkpoint %s cannot be restored (%s: %s); trying the previous one", path,
                type(e).__name__, str(e)[:300])
  raise RuntimeError(f"no checkpoint in {start.directory} can be restored "
                     f"(tried steps {steps})")


def results_path(workdir: str) -> str:
  return os.path.join(workdir, "results.json")


def _finished_results(workdir: str, start: checkpointing.Start, total_steps: int):
  """The results of this run when it has already finished (its last checkpoint is the final
  step and results.json is there), else None. A finished run started again evaluates nothing
  and writes nothing: results.json and TensorBoard keep what it wrote. Every process reads the
  file, as they all read the checkpoint folder (a shared file system)."""
  path = results_path(workdir)
  if start.mode != "workdir" or start.step != total_steps or not paths.exists(path):
    return None
  results = io_utils.read_json(path)
  if results.get("step") != total_steps:
    return None
  log.info("this run already finished (step %d): results in %s (remove that file to evaluate "
           "again)", total_steps, path)
  return results


# -------------------------------------------------------------------------------------- loop --

@dataclasses.dataclass
class _Run:
  """What the loop and the end of a run need besides the train state."""
  config: ml_collections.ConfigDict
  workdir: str
  mesh: Any
  writer: Any
  mngr: Any                 # this run's CheckpointManager (<workdir>/checkpoints)
  data_iter: Any
  meta: dict                # checkpoint meta: kind, model and full config
  total_steps: int
  jobs: list


def _save(r: _Run, step: int, state: dict, force: bool = False) -> None:
  checkpointing.save(r.mngr, step, params=state["params"],
                     train={k: v for k, v in state.items() if k != "params"},
                     data_iter=r.data_iter, meta=dict(r.meta, step=step), force=force)


def _progress_hooks(r: _Run) -> list:
  c = r.config
  hooks = [periodic_actions.ReportProgress(num_train_steps=r.total_steps, writer=r.writer,
                                           every_steps=c.log_every_steps)]
  if jax.process_index() == 0 and c.profile_steps:
    hooks.append(periodic_actions.Profile(logdir=r.workdir, first_profile=c.profile_steps[0],
                                          num_profile_steps=c.profile_steps[1]
                                          - c.profile_steps[0]))
  return hooks


def _log_summary(r: _Run, step: int, state: dict, pending: list, seconds: float) -> None:
  """Mean of the step metrics since the last summary, to TensorBoard and the log; stops the
  run on a non-finite update when config.nonfinite is 'stop'."""
  summary = {k: float(np.mean([jax.device_get(m[k]) for m in pending])) for k in pending[0]}
  summary["lr"] = float(optim.current_lr(state["opt_state"]))
  summary["skipped_records"] = float(getattr(r.data_iter, "stats", {}).get("skipped", 0))
  summary["nonfinite_updates"] = float(state["nonfinite"])
  r.writer.write_scalars(step, summary)
  log.info("step %d/%d: %s (%.1fs)", step, r.total_steps,
           ", ".join(f"{k}={v:.4g}" for k, v in sorted(summary.items())), seconds)
  if int(state["nonfinite"]) and r.config.nonfinite == "stop":
    bad = int(state["first_nonfinite_step"])
    r.mngr.wait_until_finished()
    raise NonFiniteError(
        f"non-finite loss or gradient norm at step {bad + 1}: the update was not applied "
        f"and the run stopped; the last good checkpoint in {r.mngr.directory} is kept. Set "
        f"--config.nonfinite=skip to skip such updates instead.")


def _save_and_stop(r: _Run, step: int, state: dict, preempt: preemption.Preemption) -> None:
  """The preemption save: says what it waits for and how long each part took."""
  waited = preempt.seconds_since_notice()
  log.warning("step %d finished%s; writing its checkpoint", step,
              "" if waited is None else f" {waited:.1f}s after the signal")
  t0 = time.monotonic()
  _save(r, step, state, force=True)
  r.mngr.wait_until_finished()
  log.warning("preempted at step %d: checkpoint saved in %.1fs, exiting", step,
              time.monotonic() - t0)


def _train_loop(r: _Run, state: dict, train_step) -> tuple[dict, int, bool]:
  """Steps from the state's step to total_steps; returns (state, last step, preempted)."""
  hooks = _progress_hooks(r)
  pending, last_log = [], time.time()
  step = int(state["step"])
  with preemption.Preemption() as preempt:
    for step in range(step + 1, r.total_steps + 1):
      preempt.step = step
      with jax.profiler.StepTraceAnnotation("train", step_num=step):
        local = next(r.data_iter)
        state, metrics = train_step(state, sharding.global_batch(local, r.mesh))
      pending.append(metrics)
      for h in hooks:
        h(step)
      if step % r.config.log_every_steps == 0 or step == r.total_steps:
        _log_summary(r, step, state, pending, time.time() - last_log)
        pending, last_log = [], time.time()
      if preempt.reached(step):
        # The checkpoint first: a validation due at this step may outlast the grace period.
        _save_and_stop(r, step, state, preempt)
        periodic.run_due(r.jobs, step, state, local)
        return state, step, True
      if step % r.config.checkpoint_every_steps == 0 and step != r.total_steps:
        _save(r, step, state)
      periodic.run_due(r.jobs, step, state, local)
  if r.mngr.latest_step() != step:  # a finished run started again has nothing new to save
    _save(r, step, state, force=True)
  r.mngr.wait_until_finished()
  return state, step, False


def _finish(r: _Run, state: dict, step: int, preempted: bool) -> dict[str, Any]:
  """Closes the run; unless preempted, the jobs' final evaluations go to results.json."""
  r.mngr.close()
  if hasattr(r.data_iter, "close"):
    r.data_iter.close()
  results = {"preempted_at_step": step} if preempted else {"step": step,
                                                            "kind": r.config.kind}
  if not preempted:
    for job in r.jobs:
      results.update(job.finish(step, state))
  for job in r.jobs:
    job.close()
  r.writer.flush()
  if preempted:
    return results
  if jax.process_index() == 0:
    io_utils.write_json(results_path(r.workdir), results)
  log.info("done: checkpoints in %s, TensorBoard logs in %s, results in %s",
           checkpointing.checkpoint_dir(r.workdir), r.workdir, results_path(r.workdir))
  return results


# --------------------------------------------------------------------------------------- run --

def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains as the config says; returns the final metrics (also written to workdir)."""
  # ---- setup ---------------------------------------------------------------------------------
  validate_config(config)
  runtime.use_compilation_cache(config.get("compilation_cache_dir", ""))
  ensure_synthetic_data(config)
  paths.makedirs(workdir)  # local or gs://bucket/... (paths.py)
  runtime.check_shared_workdir(workdir)  # every process writes the same checkpoints
  task = TASKS[config.kind]
  mesh = sharding.make_mesh(config.mesh)
  sharding.check_batch_divisible(config.global_batch_size, mesh)
  is_main = jax.process_index() == 0
  log.info("devices: %d (%s), processes: %d, mesh: %s", jax.device_count(),
           jax.devices()[0].platform, jax.process_count(), dict(mesh.shape))
  per_process = config.global_batch_size // jax.process_count()
  log.info("global batch %d, per-process batch %d", config.global_batch_size, per_process)

  # ---- data ----------------------------------------------------------------------------------
  train_split = split_reader.open_split(config.data.train_dir)  # read once, handed down
  info = train_split.info
  # The evaluation splits too: a damaged shard fails now, not after training.
  for split_dir in (config.data.val_dir, config.data.test_dir):
    if split_dir:
      schema.DatasetInfo.load(split_dir)
  clips_per_epoch = info.num_clips * (config.data.num_repeats if task.repeated_sampling else 1)
  steps_per_epoch = max(1, clips_per_epoch // config.global_batch_size)
  total_steps = config.num_train_steps or config.num_epochs * steps_per_epoch
  log.info("train split %s: %d clips, %d steps/epoch, %d steps", config.data.train_dir,
           info.num_clips, steps_per_epoch, total_steps)

  # ---- start: workdir checkpoint -> resume -> init_from -> scratch ---------------------------
  start = checkpointing.resolve_start(workdir, config.resume, config.init_from)
  if start.mode == "workdir" and not config.allow_config_change:
    _check_same_model(config, start)
  finished = _finished_results(workdir, start, total_steps)
  if finished is not None:
    return finished
  ds = train_dataset(config, per_process, config.seed,
                     sharding.process_row_block(mesh, config.global_batch_size), train_split)
  writer = writers.create_writer(workdir, just_logging=not is_main)

  # ---- model and optimizer -------------------------------------------------------------------
  view, tx, state, state_sh, lr = init_state(config, mesh,
                                             total_steps // config.optim.accum_steps,
                                             steps_per_epoch)
  n_params = sum(int(np.prod(v.shape)) for v in state["params"].values())
  log.info("model %s (%s): %s parameters; lr %.3g", config.kind, config.model.size,
           f"{n_params:,}", lr)
  if is_main:
    _write_parameter_table(workdir, state["params"])
    if start.mode != "workdir":  # a resumed run wrote it when it started
      writer.write_texts(0, {"config": "```\n" + config.to_json(indent=2) + "\n```"})
  mngr = checkpointing.manager(checkpointing.checkpoint_dir(workdir),
                               max_to_keep=config.keep_checkpoints,
                               async_save=config.async_checkpointing)
  data_iter = iter(ds)
  state = initial_state(config, start, mngr, state, state_sh, data_iter)
  train_step = runtime.compile_then_meet(make_train_step(config, view, tx, state_sh, mesh),
                                         "train_step")
  meta = {"kind": config.kind, "model": config.model.to_dict(),
          "config": json.loads(config.to_json())}
  ctx = periodic.Context(workdir=workdir, view=view, mesh=mesh, writer=writer,
                         param_shardings=state_sh["params"], class_names=info.class_names,
                         steps_per_epoch=steps_per_epoch, meta=meta,
                         resumed=start.mode == "workdir")
  r = _Run(config, workdir, mesh, writer, mngr, data_iter, meta, total_steps,
           periodic.build(task.jobs, config, ctx))

  # ---- loop and final evaluation -------------------------------------------------------------
  state, step, preempted = _train_loop(r, state, train_step)
  return _finish(r, state, step, preempted)
