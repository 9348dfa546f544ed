"""The train state, described once and created sharded: what the trainer runs and what
`tools/aot_compile` compiles for a TPU topology are built by the same function.

`describe(config, mesh, ...)` builds nothing on a device: the model is traced with
`nnx.eval_shape`, the optimizer state with `jax.eval_shape`, and each leaf gets its sharding
from `sharding.tree_shardings` (the fsdp rule). `StateSpec.create()` then makes the real state
with one `jax.jit(..., out_shardings=...)`, so every device computes only its own shards and no
host ever holds the whole model (the pattern of the Flax NNX and MaxText sharding guides).

state = {params: {dotted name: array}, opt_state, step, nonfinite, first_nonfinite_step}.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import nnx

from hicmae_jax import optim, sharding
from hicmae_jax.models import params as params_lib
from hicmae_jax.models.classifier import FinetuneModel
from hicmae_jax.models.hicmae import PretrainModel

MODELS = {"pretrain": PretrainModel, "finetune": FinetuneModel, "linear_probe": FinetuneModel}
# The optimizer's frozen-parameter rule per kind (None: config.optim.freeze).
FREEZE = {"pretrain": None, "finetune": None, "linear_probe": "encoders"}
SCALARS = ("step", "nonfinite", "first_nonfinite_step")


def build_model(config, seed: int) -> nnx.Module:
  """The model of config.kind with its parameters initialised from `seed` (eagerly, where it
  is called: under `jax.jit` or `nnx.eval_shape` it is traced)."""
  return MODELS[config.kind](config.model, rngs=nnx.Rngs(params=seed))


def frozen_predicate(config):
  return FREEZE[config.kind] or config.optim.freeze


def make_tx(config, params, total_steps: int, steps_per_epoch: int):
  """(optax transformation, peak lr) for the flat params (abstract shapes are fine)."""
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


def _scalars() -> dict[str, jax.Array]:
  return {"step": jnp.zeros((), jnp.int32), "nonfinite": jnp.zeros((), jnp.int32),
          "first_nonfinite_step": jnp.full((), -1, jnp.int32)}


@dataclasses.dataclass(frozen=True)
class StateSpec:
  """Everything about the train state but its values.

  view: moves between the model and its flat params (`ParamsView`).
  tx: the optimizer; lr: its peak learning rate.
  abstract: the state as jax.ShapeDtypeStruct leaves, each carrying its sharding (what
    `jit(...).lower` takes for an ahead-of-time compile, and Orbax restores into).
  shardings: the same tree of NamedShardings (the train step's in/out shardings).
  """
  config: Any
  view: params_lib.ParamsView
  tx: optax.GradientTransformation
  lr: float
  abstract: dict
  shardings: dict

  def create(self) -> dict:
    """The initial state, each leaf computed on the devices that hold it (seed config.seed)."""
    config, view, tx = self.config, self.view, self.tx

    def init():
      params = view.flat(build_model(config, config.seed))
      return {"params": params, "opt_state": tx.init(params), **_scalars()}

    mesh = next(iter(self.shardings["params"].values())).mesh
    with jax.set_mesh(mesh):
      return jax.jit(init, out_shardings=self.shardings)()

  def param_count(self) -> int:
    return sum(int(v.size) for v in self.abstract["params"].values())


def describe(config, mesh: jax.sharding.Mesh, total_updates: int,
             steps_per_epoch: int) -> StateSpec:
  """The train state of `config` on `mesh`, with nothing allocated (works on compile-only
  devices of a TPU topology). total_updates / steps_per_epoch: in optimizer updates."""
  with jax.set_mesh(mesh):
    model = nnx.eval_shape(lambda: build_model(config, config.seed))
  view = params_lib.ParamsView(model)
  params = view.flat(model)
  tx, lr = make_tx(config, params, total_updates, steps_per_epoch)
  opt_state = jax.eval_shape(tx.init, params)
  scalars = jax.eval_shape(_scalars)
  shardings = {"params": sharding.tree_shardings(params, mesh),
               "opt_state": sharding.tree_shardings(opt_state, mesh),
               **{k: sharding.replicated(mesh) for k in SCALARS}}
  shapes = {"params": params, "opt_state": opt_state, **scalars}
  abstract = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                          shapes, shardings)
  return StateSpec(config, view, tx, lr, abstract, shardings)
