"""The trainer: pre-training, fine-tuning and linear probing, top to bottom.

Sections: setup -> data -> model/optimizer -> start (resume order) -> step -> loop (logging,
checkpoints, evaluation, preemption) -> final evaluation.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

from hicmae_jax import checkpointing, evaluate, objectives, optim, runtime, sharding, writers
from hicmae_jax.checkpoints import mapping
from hicmae_jax.data import pipeline, schema
from hicmae_jax.models import params as params_lib
from hicmae_jax.models.classifier import FinetuneModel
from hicmae_jax.models.common import check_attention_impl
from hicmae_jax.models.hicmae import PretrainModel
from hicmae_jax.representations import reconstruction

log = logging.getLogger(__name__)


class NonFiniteError(FloatingPointError):
  """A non-finite loss or gradient norm (config.nonfinite = 'stop')."""


# ------------------------------------------------------------------------------------ config --

def validate_config(config: ml_collections.ConfigDict) -> None:
  """Fails fast, one line naming the key and the allowed values."""
  m = config.model
  if config.kind not in ("pretrain", "finetune", "linear_probe"):
    raise ValueError(f"config.kind={config.kind!r}; allowed: pretrain, finetune, linear_probe")
  check_attention_impl(m.attention_impl)
  for key in ("video_mask_ratio", "audio_mask_ratio"):
    if not 0.0 < m[key] < 1.0:
      raise ValueError(f"config.model.{key}={m[key]} must be in (0, 1)")
  if m.input_size % m.patch_size:
    raise ValueError(f"config.model.input_size={m.input_size} is not divisible by "
                     f"config.model.patch_size={m.patch_size}")
  if m.num_frames % m.tubelet_size:
    raise ValueError(f"config.model.num_frames={m.num_frames} is not divisible by "
                     f"config.model.tubelet_size={m.tubelet_size}")
  if m.audio_frames % m.audio_patch_size or m.audio_mel_bins % m.audio_patch_size:
    raise ValueError(f"config.model.audio_frames/audio_mel_bins ({m.audio_frames}, "
                     f"{m.audio_mel_bins}) must be divisible by audio_patch_size "
                     f"{m.audio_patch_size}")
  if config.kind == "pretrain":
    if len(m.hierarchy_layers) != m.decoder_depth - 1:
      raise ValueError(f"config.model.hierarchy_layers={tuple(m.hierarchy_layers)} must have "
                       f"decoder_depth - 1 = {m.decoder_depth - 1} entries")
    bad = [i for i in m.hierarchy_layers if not 0 <= i < min(m.video_depth, m.audio_depth)]
    if bad:
      raise ValueError(f"config.model.hierarchy_layers={tuple(m.hierarchy_layers)}: layers "
                       f"must be in [0, {min(m.video_depth, m.audio_depth)})")
    g = config.loss.contrastive_group_size
    if g > 0 and config.global_batch_size % g and g < config.global_batch_size:
      raise ValueError(f"config.loss.contrastive_group_size={g} must divide "
                       f"config.global_batch_size={config.global_batch_size} (or be 0: global)")
  if config.nonfinite not in ("stop", "skip"):
    raise ValueError(f"config.nonfinite={config.nonfinite!r}; allowed: stop, skip")
  if config.optim.accum_steps < 1:
    raise ValueError(f"config.optim.accum_steps={config.optim.accum_steps} must be >= 1")
  if not config.data.train_dir and not config.data.synthetic_dir:
    raise ValueError("config.data.train_dir is empty: pass --config.data.train_dir=<prepared "
                     "split> (or config.data.synthetic_dir for the built-in synthetic data)")


def ensure_synthetic_data(config: ml_collections.ConfigDict) -> None:
  """Generates the built-in synthetic dataset when the config asks for it (demo, tests)."""
  d = config.data
  if not d.synthetic_dir:
    return
  from hicmae_jax.data import synthetic
  if jax.process_index() == 0:
    synthetic.generate(d.synthetic_dir, num_train=d.synthetic_num_train,
                       num_val=d.synthetic_num_val, num_test=d.synthetic_num_test,
                       num_classes=d.synthetic_num_classes, frame_size=d.synthetic_frame_size,
                       num_frames=d.synthetic_num_frames, seed=config.seed, verbose=True)
  # not a device collective: the others may wait longer than gloo gives a new communicator
  runtime.barrier("synthetic_data_ready")
  with config.unlocked():
    split = "pretrain" if config.kind == "pretrain" else "train"
    d.train_dir = d.train_dir or os.path.join(d.synthetic_dir, split)
    if config.kind != "pretrain":
      d.val_dir = d.val_dir or os.path.join(d.synthetic_dir, "val")
      d.test_dir = d.test_dir or os.path.join(d.synthetic_dir, "test")


# -------------------------------------------------------------------------------------- data --

def train_dataset(config, per_process_batch: int, seed: int, row_block=(None, None)):
  """The training pipeline of config.kind over config.data.train_dir. row_block: (block,
  count) of global-batch rows this process fills (sharding.py)."""
  return pipeline.train_dataset_from_config(config, config.data.train_dir,
                                            batch_size=per_process_batch, seed=seed,
                                            shard=row_block)


# ------------------------------------------------------------------------------------- model --

def build_model(config, seed: int) -> nnx.Module:
  cls = PretrainModel if config.kind == "pretrain" else FinetuneModel
  return cls(config.model, rngs=nnx.Rngs(params=seed))


def frozen_predicate(config):
  return "encoders" if config.kind == "linear_probe" else config.optim.freeze


def make_tx(config, params, total_steps: int, steps_per_epoch: int):
  o = ml_collections.ConfigDict(config.optim.to_dict())
  # The original's scaling rule, on the effective batch (accumulated micro-batches included).
  effective = config.global_batch_size * config.optim.accum_steps
  o.lr = config.optim.base_lr * effective / 256
  o.min_lr = config.optim.min_base_lr * effective / 256
  o.freeze = frozen_predicate(config)
  num_encoder_layers = max(config.model.video_depth, config.model.audio_depth)
  return optim.make_optimizer(o, params, total_steps=total_steps,
                              steps_per_epoch=steps_per_epoch,
                              num_encoder_layers=num_encoder_layers,
                              num_fusion_layers=config.model.fusion_depth), o.lr


# -------------------------------------------------------------------------------------- step --

def make_loss_fn(config, view):
  """(params, batch, key, deterministic) -> (loss, scalar metrics)."""
  if config.kind == "pretrain":
    def loss_fn(params, batch, key, deterministic):
      model = view.merge(params)
      loss, aux = objectives.pretrain_loss(model, batch, loss_cfg=config.loss, key=key,
                                           deterministic=deterministic)
      return loss, {k: aux[k] for k in ("loss", "loss_video", "loss_audio", "loss_contrastive")}
    return loss_fn

  m = config.model

  def loss_fn(params, batch, key, deterministic):
    model = view.merge(params)
    rngs = None if deterministic else nnx.Rngs(dropout=key)
    out = model(batch["video"], batch["audio"], rngs=rngs, deterministic=deterministic)
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


def make_train_step(config, view, tx, state_shardings, mesh):
  loss_fn = make_loss_fn(config, view)
  base_key = jax.random.key(config.seed)

  def apply_update(params, opt_state, grads):
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  def step_fn(state, batch):
    key = jax.random.fold_in(base_key, state["step"])
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
  """Builds the model under the mesh and returns (view, tx, state, state shardings, peak lr).

  state = {params (flat dict), opt_state, step, nonfinite, first_nonfinite_step}, placed with
  the fsdp rule of `sharding.py`.
  """
  with jax.set_mesh(mesh):
    model = build_model(config, config.seed)
  view = params_lib.ParamsView(model)
  params = view.flat(model)
  del model
  param_sh = sharding.tree_shardings(params, mesh)
  params = jax.device_put(params, param_sh)
  tx, lr = make_tx(config, params, total_updates,
                   max(1, steps_per_epoch // config.optim.accum_steps))
  opt_state = jax.jit(tx.init)(params)
  opt_sh = sharding.tree_shardings(opt_state, mesh)
  scalars = {"step": jnp.zeros((), jnp.int32), "nonfinite": jnp.zeros((), jnp.int32),
             "first_nonfinite_step": jnp.full((), -1, jnp.int32)}
  state = {"params": params, "opt_state": opt_state, **scalars}
  state_sh = {"params": param_sh, "opt_state": opt_sh,
              **{k: sharding.replicated(mesh) for k in scalars}}
  return view, tx, jax.device_put(state, state_sh), state_sh, lr


# -------------------------------------------------------------------------------------- run --

class _Preemption:
  """SIGTERM -> save, then exit cleanly.

  One process: a Python handler sets a flag the loop checks. Several processes: they must
  agree on the step to save at (an Orbax save is collective), so JAX's preemption service
  (started by jax.distributed, which owns SIGTERM then) propagates a notice received by any
  process and `reached(step)` turns True on every process at the same step."""

  def __init__(self):
    self.requested = False
    self._previous = None
    self._multihost = jax.process_count() > 1

  def __enter__(self):
    if self._multihost:
      return self
    try:
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    except ValueError:  # not the main thread (e.g. some test runners)
      self._previous = None
    return self

  def _handle(self, signum, frame):
    del signum, frame
    log.warning("SIGTERM received: saving a checkpoint and stopping")
    self.requested = True

  def reached(self, step: int) -> bool:
    """Call once per step on every process: whether to save and stop after this step."""
    if self._multihost:
      from jax.experimental import multihost_utils
      if multihost_utils.reached_preemption_sync_point(step):
        log.warning("preemption notice: every process saves at step %d and stops", step)
        self.requested = True
    return self.requested

  def __exit__(self, *exc):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)


def _initial_weights(config, start, view, model, param_shardings):
  """Weights-only start from `init_from`: ours (any kind) mapped by name."""
  mngr = checkpointing.manager(start.directory, read_only=True)
  _, meta = checkpointing.read_meta(start.directory, start.step)
  src_kind = meta.get("kind", "")
  ours = view.flat(model)
  if src_kind == config.kind or (src_kind != "pretrain" and config.kind == "linear_probe"):
    target = ours
  else:
    # A pre-training checkpoint into the fine-tuning model: encoders and fusion by name.
    mesh = next(iter(param_shardings.values())).mesh
    raw = checkpointing.restore_params_as_saved(start.directory, start.step,
                                                sharding.replicated(mesh))
    keep = {k: v for k, v in raw.items() if k in ours}
    dropped = sorted(k for k in raw if k not in ours)
    missing = sorted(k for k in ours if k not in raw)
    log.info("init_from %s (a %s checkpoint): %d tensors loaded; dropped %d: %s", start.directory,
             src_kind, len(keep), len(dropped), ", ".join(dropped[:12]) + (" ..." if len(dropped) > 12 else ""))
    log.info("newly initialised (not in the checkpoint): %s", ", ".join(missing))
    shapes_bad = [f"{k}: {np.shape(v)} vs {ours[k].shape}" for k, v in keep.items()
                  if tuple(np.shape(v)) != tuple(ours[k].shape)]
    if shapes_bad:
      raise mapping.MappingError("init_from shape mismatch: " + "; ".join(shapes_bad))
    merged = dict(ours)
    merged.update({k: jnp.asarray(v, ours[k].dtype) for k, v in keep.items()})
    mngr.close()
    return jax.device_put(merged, param_shardings)
  abstract = checkpointing.abstract_like(target, param_shardings)
  restored = checkpointing.restore(mngr, start.step, params_target=abstract)
  mngr.close()
  log.info("init_from %s: all %d tensors loaded (weights only)", start.directory, len(target))
  return restored["params"]


def _restore_with_fallback(mngr, start, targets, data_iter, fallback: bool):
  """Restores start.step; a corrupt or truncated checkpoint is named by path, and with
  `fallback` the previous complete ones are tried, newest first."""
  steps = [start.step] + sorted((s for s in mngr.all_steps() if s < start.step), reverse=True)
  for i, step in enumerate(steps):
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


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains as the config says; returns the final metrics (also written to workdir)."""
  # ---- setup ---------------------------------------------------------------------------------
  validate_config(config)
  ensure_synthetic_data(config)
  os.makedirs(workdir, exist_ok=True)
  mesh = sharding.make_mesh(config.mesh)
  sharding.check_batch_divisible(config.global_batch_size, mesh)
  is_main = jax.process_index() == 0
  writer = writers.create_writer(workdir, just_logging=not is_main)
  log.info("devices: %d (%s), processes: %d, mesh: %s", jax.device_count(),
           jax.devices()[0].platform, jax.process_count(), dict(mesh.shape))
  per_process = config.global_batch_size // jax.process_count()
  log.info("global batch %d, per-process batch %d", config.global_batch_size, per_process)

  # ---- data ----------------------------------------------------------------------------------
  info = schema.DatasetInfo.load(config.data.train_dir)
  ds = train_dataset(config, per_process, config.seed,
                     sharding.process_row_block(mesh, config.global_batch_size))
  clips_per_epoch = info.num_clips * (config.data.num_repeats if config.kind == "pretrain" else 1)
  steps_per_epoch = max(1, clips_per_epoch // config.global_batch_size)
  total_steps = config.num_train_steps or config.num_epochs * steps_per_epoch
  total_updates = total_steps // config.optim.accum_steps
  log.info("train split %s: %d clips, %d steps/epoch, %d steps", config.data.train_dir,
           info.num_clips, steps_per_epoch, total_steps)

  # ---- model and optimizer -------------------------------------------------------------------
  view, tx, state, state_sh, lr = init_state(config, mesh, total_updates, steps_per_epoch)
  params, param_sh = state["params"], state_sh["params"]
  n_params = sum(int(np.prod(v.shape)) for v in params.values())
  log.info("model %s (%s): %s parameters; lr %.3g", config.kind, config.model.size,
           f"{n_params:,}", lr)
  if is_main:
    writer.write_texts(0, {"config": "```\n" + config.to_json(indent=2) + "\n```"})
    from clu import parameter_overview
    log.info("parameters:\n%s", parameter_overview.get_parameter_overview(
        # shapes only: under fsdp on several hosts a parameter is not readable by one process
        {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in params.items()},
        include_stats=False))

  # ---- start: workdir checkpoint -> resume -> init_from -> scratch ---------------------------
  meta_base = {"kind": config.kind, "model": config.model.to_dict(),
               "config": json.loads(config.to_json())}
  start = checkpointing.resolve_start(workdir, config.resume, config.init_from)
  ckpt_dir = checkpointing.checkpoint_dir(workdir)
  if start.mode == "workdir" and not config.allow_config_change:
    try:
      _, meta = checkpointing.read_meta(start.directory, start.step)
    except Exception:  # a damaged checkpoint: the restore below names it
      meta = {"model": json.loads(json.dumps(config.model.to_dict()))}
    if meta.get("model") != json.loads(json.dumps(config.model.to_dict())):
      raise ValueError(f"{start.directory} holds checkpoints of a run with another model "
                       f"config; use a new --workdir or --config.allow_config_change=True")
  data_iter = iter(ds)
  if start.mode in ("workdir", "resume"):
    mngr = checkpointing.manager(start.directory, read_only=start.mode == "resume")
    train_target = {k: v for k, v in state.items() if k != "params"}
    targets = dict(
        params_target=checkpointing.abstract_like(state["params"], param_sh),
        train_target=checkpointing.abstract_like(
            train_target, {k: v for k, v in state_sh.items() if k != "params"}))
    restored, used = _restore_with_fallback(mngr, start, targets, data_iter,
                                            config.checkpoint_fallback)
    state = {"params": restored["params"], **restored["train"]}
    log.info("resumed from %s step %d (%s)", start.directory, used, start.mode)
    if start.mode == "resume":
      mngr.close()
  elif start.mode == "init_from":
    state["params"] = _initial_weights(config, start, view, build_model(config, config.seed),
                                       param_sh)
  else:
    log.info("starting from scratch (seed %d)", config.seed)
  mngr = checkpointing.manager(ckpt_dir, max_to_keep=config.keep_checkpoints,
                               async_save=config.async_checkpointing)

  train_step = runtime.compile_then_meet(make_train_step(config, view, tx, state_sh, mesh),
                                         "train_step")
  recon_hook = reconstruction.make_training_hook(config, view, mesh, writer)
  first_step = int(state["step"])

  def save(step, force=False):
    checkpointing.save(mngr, step, params=state["params"],
                       train={k: v for k, v in state.items() if k != "params"},
                       data_iter=data_iter, meta=dict(meta_base, step=step), force=force)

  # ---- loop ----------------------------------------------------------------------------------
  from clu import periodic_actions
  report = periodic_actions.ReportProgress(num_train_steps=total_steps, writer=writer,
                                           every_steps=config.log_every_steps)
  hooks = [report]
  if is_main and config.profile_steps:
    hooks.append(periodic_actions.Profile(logdir=workdir, first_profile=config.profile_steps[0],
                                          num_profile_steps=config.profile_steps[1]
                                          - config.profile_steps[0]))
  select_dir = config.data.val_dir
  predict = evaluate.make_predict_fn(view, mesh) if config.kind != "pretrain" else None
  best, results = None, {}
  pending, last_log = [], time.time()
  step = first_step
  with _Preemption() as preempt:
    for step in range(first_step + 1, total_steps + 1):
      with jax.profiler.StepTraceAnnotation("train", step_num=step):
        local = next(data_iter)
        batch = sharding.global_batch(local, mesh)
        state, metrics = train_step(state, batch)
      pending.append(metrics)
      for h in hooks:
        h(step)
      if recon_hook is not None:  # reconstruction figure to TensorBoard
        recon_hook(step, state["params"], local)
      if step % config.log_every_steps == 0 or step == total_steps:
        summary = {k: float(np.mean([jax.device_get(m[k]) for m in pending])) for k in pending[0]}
        pending = []
        summary["lr"] = float(optim.current_lr(state["opt_state"]))
        summary["skipped_records"] = float(getattr(data_iter, "stats", {}).get("skipped", 0))
        summary["nonfinite_updates"] = float(state["nonfinite"])
        writer.write_scalars(step, summary)
        log.info("step %d/%d: %s (%.1fs)", step, total_steps,
                 ", ".join(f"{k}={v:.4g}" for k, v in sorted(summary.items())),
                 time.time() - last_log)
        last_log = time.time()
        nonfinite = int(state["nonfinite"])
        if nonfinite and config.nonfinite == "stop":
          bad = int(state["first_nonfinite_step"])
          mngr.wait_until_finished()
          raise NonFiniteError(
              f"non-finite loss or gradient norm at step {bad + 1}: the update was not applied "
              f"and the run stopped; the last good checkpoint in {ckpt_dir} is kept. Set "
              f"--config.nonfinite=skip to skip such updates instead.")
      if step % config.checkpoint_every_steps == 0 and step != total_steps:
        save(step)
      epoch_done = step % steps_per_epoch == 0
      epoch = step // steps_per_epoch
      if (config.kind != "pretrain" and select_dir and epoch_done
          and config.eval_every_epochs and epoch % config.eval_every_epochs == 0):
        res = evaluate.run_eval(config, state["params"], view, mesh, select_dir, "val",
                                class_names=info.class_names, predict_fn=predict)
        key = "uar" if "uar" in res else "ccc"
        writer.write_scalars(step, {f"val_{k}": v for k, v in res.items()
                                    if isinstance(v, (int, float))})
        log.info("epoch %d validation: %s", epoch, _brief(res))
        if best is None or res.get(key, 0) > best[1]:
          best = (epoch, res.get(key, 0))
      if preempt.reached(step):
        save(step, force=True)
        mngr.wait_until_finished()
        log.warning("preempted at step %d: checkpoint saved, exiting", step)
        results = {"preempted_at_step": step}
        break
    else:
      if mngr.latest_step() != step:  # a finished run started again has nothing new to save
        save(step, force=True)
      mngr.wait_until_finished()
  mngr.close()
  if hasattr(data_iter, "close"):
    data_iter.close()
  if results.get("preempted_at_step"):
    writer.flush()
    return results

  # ---- final evaluation ----------------------------------------------------------------------
  results = {"step": step, "kind": config.kind}
  if config.kind != "pretrain":
    for name, split_dir, mode in (("val", config.data.val_dir, "val"),
                                  ("test", config.data.test_dir, "test")):
      if split_dir:
        res = evaluate.run_eval(config, state["params"], view, mesh, split_dir, mode,
                                class_names=info.class_names, predict_fn=predict)
        results[name] = res
        log.info("final %s: %s", name, _brief(res))
        writer.write_scalars(step, {f"{name}_{k}": v for k, v in res.items()
                                    if isinstance(v, (int, float))})
    if best is not None:
      results["best_val_epoch"] = best[0]
  if is_main:
    checkpointing.write_json(os.path.join(workdir, "results.json"), results)
  writer.flush()
  log.info("done: checkpoints in %s, TensorBoard logs in %s, results in %s", ckpt_dir, workdir,
           os.path.join(workdir, "results.json"))
  return results


def _brief(res: dict) -> str:
  keys = [k for k in ("uar", "war", "weighted_f1", "pcc", "ccc", "num_clips")
          if k in res]
  return ", ".join(f"{k}={res[k]:.4g}" if isinstance(res[k], float) else f"{k}={res[k]}"
                   for k in keys)
