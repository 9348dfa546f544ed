"""Weights of one model into another by parameter name: a pre-training checkpoint into the
fine-tuning model (config.init_from, feature export), or any checkpoint into its own model.

Our parameter names mirror the original's, so the encoders and the fusion encoder line up by
name (SPEC 7); the pre-training-only tensors (decoders, projections, mask tokens) are dropped
and the fine-tuning-only ones (layer weights, feature norm, head) keep the target's values.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Iterable, Mapping

from hicmae_jax.checkpoints.mapping import MappingError

# What the fine-tuning model takes from a pre-training checkpoint: these must all be there.
SHARED_PREFIXES = ("encoder.", "encoder_audio.", "encoder_fusion.")
# Every tensor of the target must come from the checkpoint (a fine-tuned one into its model).
ALL = ("",)


@dataclasses.dataclass(frozen=True)
class Transfer:
  """params: the target's flat parameters with the source's values where names match (cast
  to the target's dtypes); loaded / dropped / missing: sorted names taken from the source,
  source names the target lacks, target names the source lacks (kept at target values)."""
  params: dict[str, Any]
  loaded: list[str]
  dropped: list[str]
  missing: list[str]


def transfer_by_name(source: Mapping[str, Any], target: Mapping[str, Any], *,
                     required: Iterable[str] = SHARED_PREFIXES) -> Transfer:
  """Merges `source` (a checkpoint's flat {dotted name: array}) into `target` (the model's).

  Works on numpy and jax arrays alike (values are not moved). Raises MappingError naming
  every tensor whose shape differs, and every target tensor under a `required` prefix that
  the source lacks."""
  required = tuple(required)
  mismatched = [f"{k}: checkpoint {tuple(v.shape)}, model {tuple(target[k].shape)}"
                for k, v in source.items()
                if k in target and tuple(v.shape) != tuple(target[k].shape)]
  if mismatched:
    raise MappingError(f"{len(mismatched)} tensor(s) do not fit the model: "
                       + "; ".join(mismatched[:10]) + (" ..." if len(mismatched) > 10 else ""))
  missing = sorted(k for k in target if k not in source)
  lacking = [k for k in missing if k.startswith(required)]
  if lacking:
    raise MappingError(f"the checkpoint lacks {len(lacking)} tensor(s) the model needs: "
                       + ", ".join(lacking[:10]) + (" ..." if len(lacking) > 10 else ""))
  params = {k: _cast(source[k], v.dtype) if k in source else v for k, v in target.items()}
  return Transfer(params, sorted(k for k in source if k in target),
                  sorted(k for k in source if k not in target), missing)


def _cast(value: Any, dtype) -> Any:
  return value if value.dtype == dtype else value.astype(dtype)
