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


def count_params(model: nnx.Module) -> int:
  return int(sum(np.prod(s) for s in param_shapes(model).values()))


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
