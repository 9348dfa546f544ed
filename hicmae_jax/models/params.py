"""Flat views of a model's parameters: read them as {path: array}, write them back, count them."""
from __future__ import annotations

from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

Path = tuple


def flat_params(model: nnx.Module) -> dict[Path, jax.Array]:
  """{('encoder', 'blocks', 0, 'attn', 'qkv', 'kernel'): array, ...} in definition order."""
  return {tuple(p): v.get_value() for p, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}


def param_shapes(model: nnx.Module) -> dict[Path, tuple[int, ...]]:
  return {p: tuple(v.shape) for p, v in flat_params(model).items()}


def assign_params(model: nnx.Module, params: Mapping[Path, np.ndarray]) -> None:
  """Writes every parameter of `params` into `model` (cast to each parameter's dtype).

  Every model parameter must be present: partial loads are done by the caller on purpose.
  """
  state = nnx.state(model, nnx.Param)
  flat = nnx.to_flat_state(state)
  missing = [p for p, _ in flat if tuple(p) not in params]
  if missing:
    raise KeyError(f"{len(missing)} parameter(s) not given, e.g. {missing[:5]}")
  new = []
  for path, var in flat:
    value = jnp.asarray(params[tuple(path)], dtype=var.get_value().dtype)
    if value.shape != var.get_value().shape:
      raise ValueError(f"parameter {path}: got shape {value.shape}, model has "
                       f"{var.get_value().shape}")
    new.append((path, var.replace(value)))
  nnx.update(model, nnx.from_flat_state(new))


def key_of(path: Path) -> str:
  """('encoder', 'blocks', 0, 'norm1', 'scale') -> 'encoder.blocks.0.norm1.scale'."""
  return ".".join(str(p) for p in path)


def path_of(key: str) -> Path:
  return tuple(int(p) if p.isdigit() else p for p in key.split("."))


class ParamsView:
  """Moves between a model and a flat {dotted name: array} dict of its parameters.

  The flat dict is what the trainer, the optimizer and Orbax see (plain dict, readable names
  that mirror the original's). `merge(params)` rebuilds a model inside jit from a template
  made of abstract shapes, so no parameter is captured as a constant.
  """

  def __init__(self, model: nnx.Module):
    graphdef, state = nnx.split(model)
    flat = nnx.to_flat_state(state)
    non_params = [p for p, v in flat if not isinstance(v, nnx.Param)]
    if non_params:
      raise ValueError(f"model holds non-parameter state {non_params[:3]}: not supported")
    self.graphdef = graphdef
    self._template = [(p, v.replace(jax.ShapeDtypeStruct(v.get_value().shape,
                                                         v.get_value().dtype)))
                      for p, v in flat]

  def flat(self, model: nnx.Module) -> dict[str, jax.Array]:
    return {key_of(p): v for p, v in flat_params(model).items()}

  def merge(self, params: Mapping[str, jax.Array]) -> nnx.Module:
    state = nnx.from_flat_state([(p, v.replace(params[key_of(p)])) for p, v in self._template])
    return nnx.merge(self.graphdef, state)
