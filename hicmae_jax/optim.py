"""Optimiser: AdamW with the original's weight-decay groups, layer-wise lr decay, the per-step
warm-up + cosine schedule, optional clipping, gradient accumulation and frozen parameters.

Everything here works on any parameter pytree whose paths name the parameters:
  * an `nnx.State` of Variables (what `nnx.Optimizer(model, tx, wrt=nnx.Param)` passes to
    `tx.init`), whose tree paths end in the Variable's `.value` attribute;
  * a pure `nnx.State` / nested dict of arrays (what `nnx.Optimizer.update` passes to
    `tx.update`);
  * a flat {dotted name: array} dict (`hicmae_jax.models.params.ParamsView.flat`).
All three normalise to the same path, e.g. ('encoder', 'blocks', 3, 'attn', 'qkv', 'kernel').
Masks and scales are computed from the tree handed to each call, so they never need to match a
structure fixed in advance.

Config fields (`config.optim`, an ml_collections.ConfigDict):
  base_lr, min_base_lr  lr and final lr per 256 clips; scaled by global_batch_size / 256 (the
                        original's rule). Alternatively `lr`, `min_lr`: already scaled (used as
                        is when present).
  warmup_epochs         linear warm-up length in epochs (`warmup_steps` > 0, if present,
                        overrides it, as the original's --warmup_steps).
  weight_decay          AdamW decoupled weight decay (not on 1-D parameters or mask tokens).
  b1, b2, eps           AdamW moments.
  layer_decay           None or 1.0 = off; else lr scale decay**(max_id - layer_id) (SPEC 7).
  clip_grad_norm        global-norm clipping threshold; 0 / None = off.
  accum_steps           gradient accumulation (optax.MultiSteps); 1 = off.
  freeze                'none' | 'encoders' (linear probe: only fc_norm and head train).
"""
from __future__ import annotations

import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

Path = tuple  # ('encoder', 'blocks', 3, 'attn', 'qkv', 'kernel')

MASK_TOKEN_NAMES = ("mask_token", "mask_token_audio")
ENCODER_NAMES = ("encoder", "encoder_audio")
FUSION_NAMES = ("encoder_fusion",)
FUSION_BLOCK_NAMES = ("blocks", "blocks_audio")


# ---- paths --------------------------------------------------------------------------------------

def _key_name(entry) -> Any:
  if isinstance(entry, jax.tree_util.DictKey):
    return entry.key
  if isinstance(entry, jax.tree_util.GetAttrKey):
    return entry.name
  if isinstance(entry, jax.tree_util.SequenceKey):
    return entry.idx
  if isinstance(entry, jax.tree_util.FlattenedIndexKey):
    return entry.key
  return entry


def normalise_path(keypath) -> Path:
  """A jax key path (or a plain tuple / dotted string) -> our parameter path.

  Drops the trailing `.value` attribute of nnx Variables and splits dotted names (flat dicts),
  turning digit parts into ints: ('encoder', 'blocks', 3, 'attn', 'q_bias').
  """
  if isinstance(keypath, str):
    keypath = (keypath,)
  names = [_key_name(k) for k in keypath]
  if (names and names[-1] == "value" and keypath
      and isinstance(keypath[-1], jax.tree_util.GetAttrKey)):
    names = names[:-1]   # the array inside an nnx Variable
  out: list = []
  for n in names:
    if isinstance(n, str):
      out.extend(int(p) if p.isdigit() else p for p in n.split("."))
    else:
      out.append(int(n) if isinstance(n, (int, np.integer)) else n)
  return tuple(out)


def _is_leaf(x) -> bool:
  # optax.MaskedNode (an empty NamedTuple) is what masked transforms put in place of skipped
  # parameters; treat it as a leaf so maps keep it (and do not recurse into it).
  return isinstance(x, optax.MaskedNode)


def map_with_path(fn: Callable[[Path, Any], Any], tree):
  """tree_map over leaves with our normalised path: fn(path, leaf)."""
  def f(kp, leaf):
    if isinstance(leaf, optax.MaskedNode):
      return leaf
    return fn(normalise_path(kp), leaf)
  return jax.tree_util.tree_map_with_path(f, tree, is_leaf=_is_leaf)


def flat_leaves(tree) -> dict[Path, Any]:
  """{normalised path: leaf} for any of the supported parameter trees (for tests and logs)."""
  leaves, _ = jax.tree_util.tree_flatten_with_path(tree, is_leaf=_is_leaf)
  return {normalise_path(kp): leaf for kp, leaf in leaves}


def _ndim(leaf) -> int:
  return len(np.shape(leaf)) if not hasattr(leaf, "shape") else len(leaf.shape)


# ---- weight decay -------------------------------------------------------------------------------

def decays(path: Path, ndim: int) -> bool:
  """True if weight decay applies: only to >= 2-D tensors (kernels), never to mask tokens.

  The original skips 1-D tensors, names ending in '.bias' and an exact-name list that contains
  'mask_token' but not 'mask_token_audio', so its audio mask token (3-D) is decayed by accident.
  We decay neither mask token on purpose (SPEC 11); every other tensor matches the original.
  """
  if any(name in MASK_TOKEN_NAMES for name in path):
    return False
  return ndim > 1


def weight_decay_mask(params):
  """Pytree of bools shaped like `params` (True = decay)."""
  return map_with_path(lambda p, x: decays(p, _ndim(x)), params)


# ---- layer-wise lr decay ------------------------------------------------------------------------

def layer_id(path: Path, *, num_encoder_layers: int, num_fusion_layers: int) -> int:
  """The original's layer id (SPEC 7).

  patch embeds 0; encoder block i (video and audio) i + 1; fusion layer j (its video `blocks`
  and audio `blocks_audio`) num_encoder_layers + 1 + j; everything else (encoder norms, layer
  weights, fc_norm, head, fusion norms, decoders) num_encoder_layers + num_fusion_layers + 1.
  """
  path = normalise_path(path)
  top = num_encoder_layers + num_fusion_layers + 1
  if len(path) >= 2 and path[0] in ENCODER_NAMES:
    if path[1] == "patch_embed":
      return 0
    if path[1] == "blocks" and len(path) >= 3:
      return int(path[2]) + 1
  if len(path) >= 3 and path[0] in FUSION_NAMES and path[1] in FUSION_BLOCK_NAMES:
    return num_encoder_layers + 1 + int(path[2])
  return top


def layer_scale(path: Path, decay: float, num_encoder_layers: int, num_fusion_layers: int) -> float:
  """decay ** (max_id - layer_id); 1.0 for the head and every 'everything else' tensor."""
  max_id = num_encoder_layers + num_fusion_layers + 1
  lid = layer_id(path, num_encoder_layers=num_encoder_layers,
                 num_fusion_layers=num_fusion_layers)
  return float(decay) ** (max_id - lid)


def layer_decay_scales(params, decay: float, num_encoder_layers: int, num_fusion_layers: int):
  """Pytree of Python floats shaped like `params`: each tensor's lr scale."""
  return map_with_path(
      lambda p, _: layer_scale(p, decay, num_encoder_layers, num_fusion_layers), params)


def count_layers(params) -> tuple[int, int]:
  """(num_encoder_layers, num_fusion_layers) read from the parameter paths.

  The encoder count is the deeper of the two encoders (both are 10 in every released size);
  unimodal models have no fusion layers, so their top id is depth + 1, as the original's
  unimodal `get_num_layers`.
  """
  enc, fus = 0, 0
  for p in flat_leaves(params):
    if len(p) >= 3 and p[0] in ENCODER_NAMES and p[1] == "blocks":
      enc = max(enc, int(p[2]) + 1)
    if len(p) >= 3 and p[0] in FUSION_NAMES and p[1] in FUSION_BLOCK_NAMES:
      fus = max(fus, int(p[2]) + 1)
  return enc, fus


def scale_by_layer(scale_fn: Callable[[Path], float]) -> optax.GradientTransformation:
  """Multiplies each update by scale_fn(path) (a static Python float per parameter).

  Placed after AdamW (whose update already includes -lr * (adam + wd * p)), this is exactly the
  original's per-group lr = lr * lr_scale, weight decay included (torch AdamW decays by
  lr_group * wd).
  """
  def init_fn(params):
    del params
    return optax.EmptyState()

  def update_fn(updates, state, params=None):
    del params
    def scale(path, u):
      s = scale_fn(path)
      return u if s == 1.0 else u * jnp.asarray(s, u.dtype)
    return map_with_path(scale, updates), state

  return optax.GradientTransformation(init_fn, update_fn)


# ---- schedules ----------------------------------------------------------------------------------

def scaled_lr(lr: float, global_batch: int) -> float:
  """The original's linear scaling rule: lr * global_batch / 256."""
  return lr * global_batch / 256


def lr_schedule(base_lr: float, min_lr: float, warmup_steps: int,
                total_steps: int) -> optax.Schedule:
  """Per-step lr as the original's `cosine_scheduler` (optimizer steps, 0-based).

  Warm-up: np.linspace(0, base_lr, warmup_steps)[s], i.e. base_lr * s / (warmup_steps - 1),
  so the last warm-up step already reaches base_lr (the original's linspace includes its
  endpoint). Then i = s - warmup_steps: min + 0.5 (base - min)(1 + cos(pi i / (total - warmup))).
  Steps at or past total_steps give min_lr (the original's table simply ends there).
  """
  warmup_steps = int(warmup_steps)
  total_steps = int(total_steps)
  decay_steps = max(total_steps - warmup_steps, 1)

  def schedule(count):
    s = jnp.asarray(count, jnp.float32)
    warm = base_lr * s / max(warmup_steps - 1, 1)
    i = jnp.clip(s - warmup_steps, 0, decay_steps)
    cos = min_lr + 0.5 * (base_lr - min_lr) * (1 + jnp.cos(jnp.pi * i / decay_steps))
    return jnp.where(s < warmup_steps, warm, cos)

  return schedule


def schedule_table(base_lr: float, min_lr: float, warmup_steps: int,
                   total_steps: int) -> np.ndarray:
  """The original's schedule array (numpy float64), for tests and plots."""
  warm = np.linspace(0, base_lr, warmup_steps) if warmup_steps > 0 else np.array([])
  iters = np.arange(total_steps - warmup_steps)
  cos = np.array([min_lr + 0.5 * (base_lr - min_lr) * (1 + math.cos(math.pi * i / len(iters)))
                  for i in iters])
  return np.concatenate((warm, cos))


# ---- freezing -----------------------------------------------------------------------------------

def _freeze_none(path: Path) -> bool:
  del path
  return False


def _freeze_encoders(path: Path) -> bool:
  # Linear probing: only the classifier (fc_norm + head) learns.
  return path[0] not in ("fc_norm", "head")


FREEZE_PREDICATES: dict[str, Callable[[Path], bool]] = {
    "none": _freeze_none,
    "encoders": _freeze_encoders,
}


def freeze_predicate(name_or_fn) -> Callable[[Path], bool]:
  if callable(name_or_fn):
    return name_or_fn
  name = name_or_fn or "none"
  if name not in FREEZE_PREDICATES:
    raise ValueError(f"optim.freeze={name!r}; allowed: {sorted(FREEZE_PREDICATES)}")
  return FREEZE_PREDICATES[name]


# ---- the optimizer ------------------------------------------------------------------------------

def _get(cfg, name, default=None):
  return cfg.get(name, default) if hasattr(cfg, "get") else getattr(cfg, name, default)


def resolve_lrs(optim_cfg, global_batch_size: int | None) -> tuple[float, float]:
  """(peak lr, final lr) after the batch scaling rule."""
  if _get(optim_cfg, "lr") is not None:
    return float(optim_cfg.lr), float(_get(optim_cfg, "min_lr", 0.0))
  if global_batch_size is None:
    raise ValueError("optim has base_lr/min_base_lr (per 256 clips): pass global_batch_size")
  return (scaled_lr(float(optim_cfg.base_lr), global_batch_size),
          scaled_lr(float(optim_cfg.min_base_lr), global_batch_size))


def make_schedule(optim_cfg, *, total_steps: int, steps_per_epoch: int,
                  global_batch_size: int | None = None) -> optax.Schedule:
  """The lr schedule make_optimizer uses (in optimizer updates, i.e. after accumulation)."""
  lr, min_lr = resolve_lrs(optim_cfg, global_batch_size)
  warmup = _get(optim_cfg, "warmup_steps", -1) or -1
  if warmup <= 0:
    warmup = int(round(float(optim_cfg.warmup_epochs) * steps_per_epoch))
  return lr_schedule(lr, min_lr, warmup, total_steps)


def make_optimizer(optim_cfg, params, *, total_steps: int, steps_per_epoch: int,
                   global_batch_size: int | None = None,
                   num_encoder_layers: int | None = None,
                   num_fusion_layers: int | None = None) -> optax.GradientTransformation:
  """AdamW + schedule + layer decay (+ clipping, accumulation, freezing) for `params`.

  params: the parameter tree (nnx.State, pure state or flat dict; abstract shapes are fine),
    used only to count the encoder / fusion layers for layer decay (override with the keywords).
  total_steps, steps_per_epoch: in optimizer updates. With accum_steps = k the trainer calls
    `update` k times per optimizer update (MultiSteps averages the k gradients).
  global_batch_size: needed when the config gives base_lr / min_base_lr (per 256 clips).

  Chain (per trainable parameter): clip -> AdamW(lr(t), wd masked) -> x layer scale; frozen
  parameters get zero updates and no optimizer state. The current lr is readable with
  `current_lr(opt_state)`.
  """
  schedule = make_schedule(optim_cfg, total_steps=total_steps, steps_per_epoch=steps_per_epoch,
                           global_batch_size=global_batch_size)
  adamw = optax.inject_hyperparams(optax.adamw, static_args=("mask",))(
      learning_rate=schedule, b1=float(optim_cfg.b1), b2=float(optim_cfg.b2),
      eps=float(optim_cfg.eps), weight_decay=float(optim_cfg.weight_decay),
      mask=weight_decay_mask)
  parts = []
  clip = _get(optim_cfg, "clip_grad_norm")
  if clip:
    # Inside the trainable branch: frozen parameters have no gradient in the original
    # (requires_grad=False), so they do not count in the norm either.
    parts.append(optax.clip_by_global_norm(float(clip)))
  parts.append(adamw)
  decay = _get(optim_cfg, "layer_decay")
  if decay is not None and float(decay) != 1.0:
    enc, fus = count_layers(params)
    enc = enc if num_encoder_layers is None else num_encoder_layers
    fus = fus if num_fusion_layers is None else num_fusion_layers
    parts.append(scale_by_layer(
        lambda p, d=float(decay), e=enc, f=fus: layer_scale(p, d, e, f)))
  tx = optax.chain(*parts) if len(parts) > 1 else parts[0]

  frozen = freeze_predicate(_get(optim_cfg, "freeze", "none"))
  if frozen is not _freeze_none:
    labels = lambda tree: map_with_path(lambda p, _: "frozen" if frozen(p) else "train", tree)
    tx = optax.partition({"train": tx, "frozen": optax.set_to_zero()}, labels)

  accum = int(_get(optim_cfg, "accum_steps", 1) or 1)
  if accum > 1:
    tx = optax.MultiSteps(tx, every_k_schedule=accum).gradient_transformation()
  return tx


def _value(x):
  if hasattr(x, "get_value"):   # an nnx Variable (nnx.Optimizer wraps its state in OptArray)
    x = x.get_value()
  return x


def current_lr(opt_state):
  """The schedule's lr of the most recent update (the head's lr; a tensor in layer l gets it
  times its layer scale), read from the inject_hyperparams state.

  Works on a raw optax state and on `nnx.Optimizer.opt_state`. Before the first update it is
  lr(0). Returns a scalar array, or None when the state has no injected lr.
  """
  found = []
  # optax 0.2.8 makes InjectStatefulHyperparamsState when a hyperparameter is a schedule.
  kinds = (optax.InjectHyperparamsState, optax.InjectStatefulHyperparamsState)

  def visit(x):
    if isinstance(x, kinds):
      found.append(x.hyperparams["learning_rate"])
    return x

  jax.tree_util.tree_map(visit, opt_state, is_leaf=lambda x: isinstance(x, kinds))
  if not found:
    return None
  return _value(found[0])
