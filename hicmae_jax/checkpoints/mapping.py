"""Name and layout mapping between the original PyTorch state dicts and our NNX parameters.

Our parameter paths mirror the original module tree, so the mapping is mechanical:
  `encoder.blocks.3.attn.qkv.weight` [out, in]
      <->  ('encoder', 'blocks', 3, 'attn', 'qkv', 'kernel') [in, out]
  `*.norm*.weight` (1-D LayerNorm)              <->  (..., 'scale')
  `*.patch_embed.proj.weight` Conv3d [O, I, kt, kh, kw] <-> kernel [kt, kh, kw, I, O]
  `*.patch_embed.proj.weight` Conv2d [O, I, kh, kw]     <-> kernel [kh, kw, I, O]
  everything else (biases, q_bias, v_bias, mask tokens, layer weights) is copied as is.
"""
from __future__ import annotations

import collections
from typing import Iterable, Mapping

import numpy as np

Path = tuple  # a flat NNX parameter path, e.g. ('encoder', 'blocks', 0, 'norm1', 'scale')


class MappingError(ValueError):
  """The checkpoint's tensors do not fit the model: lists every offending name."""


def torch_key_to_path(key: str, ndim: int) -> Path:
  parts: list = [int(p) if p.isdigit() else p for p in key.split(".")]
  if parts[-1] == "weight":
    parts[-1] = "kernel" if ndim >= 2 else "scale"
  return tuple(parts)


def path_to_torch_key(path: Path) -> str:
  parts = [str(p) for p in path]
  if parts[-1] in ("kernel", "scale"):
    parts[-1] = "weight"
  return ".".join(parts)


def torch_to_flax_array(key: str, value: np.ndarray) -> np.ndarray:
  """Converts one original tensor to our layout."""
  if key.endswith("patch_embed.proj.weight"):
    if value.ndim == 5:   # Conv3d [O, I, kt, kh, kw] -> [kt, kh, kw, I, O]
      return np.ascontiguousarray(value.transpose(2, 3, 4, 1, 0))
    if value.ndim == 4:   # Conv2d [O, I, kh, kw] -> [kh, kw, I, O]
      return np.ascontiguousarray(value.transpose(2, 3, 1, 0))
  if key.endswith(".weight") and value.ndim == 2:  # Linear [out, in] -> [in, out]
    return np.ascontiguousarray(value.T)
  return value


def flax_to_torch_array(path: Path, value: np.ndarray) -> np.ndarray:
  """Inverse of torch_to_flax_array."""
  key = path_to_torch_key(path)
  if key.endswith("patch_embed.proj.weight"):
    if value.ndim == 5:
      return np.ascontiguousarray(value.transpose(4, 3, 0, 1, 2))
    if value.ndim == 4:
      return np.ascontiguousarray(value.transpose(3, 2, 0, 1))
  if path[-1] == "kernel" and value.ndim == 2:
    return np.ascontiguousarray(value.T)
  return value


# Tensors of a pre-training checkpoint that the fine-tuning model does not have (SPEC 7).
PRETRAIN_ONLY_PREFIXES = ("decoder.", "decoder_audio.", "encoder_to_decoder",
                          "encoder_to_decoder_audio", "mask_token", "mask_token_audio")


def state_dict_to_params(state_dict: Mapping[str, np.ndarray],
                         expected: Mapping[Path, tuple[int, ...]], *,
                         drop_prefixes: Iterable[str] = ()
                         ) -> tuple[dict[Path, np.ndarray], list[str]]:
  """Maps an original state dict onto our parameter paths.

  expected: our flat parameter shapes. Tensors whose name starts with one of drop_prefixes are
  dropped (and returned in the second element, for the log). Raises MappingError listing all
  missing / unexpected names and shape mismatches (with both shapes).
  """
  drop_prefixes = tuple(drop_prefixes)
  params: dict[Path, np.ndarray] = {}
  dropped, unexpected, mismatched = [], [], []
  for key, value in state_dict.items():
    value = np.asarray(value)
    if drop_prefixes and key.startswith(drop_prefixes):
      dropped.append(key)
      continue
    path = torch_key_to_path(key, value.ndim)
    if path not in expected:
      unexpected.append(f"{key} {tuple(value.shape)}")
      continue
    converted = torch_to_flax_array(key, value)
    if tuple(converted.shape) != tuple(expected[path]):
      want = flax_to_torch_array(path, np.empty(expected[path], np.uint8)).shape
      mismatched.append(f"{key}: checkpoint {tuple(value.shape)}, model expects {tuple(want)}")
      continue
    params[path] = converted
  missing = [path_to_torch_key(p) for p in expected if p not in params]
  if missing or unexpected or mismatched:
    lines = []
    if missing:
      lines.append(f"{len(missing)} missing tensor(s): {', '.join(missing[:20])}"
                   + (" ..." if len(missing) > 20 else ""))
    if unexpected:
      lines.append(f"{len(unexpected)} unexpected tensor(s): {', '.join(unexpected[:20])}"
                   + (" ..." if len(unexpected) > 20 else ""))
    if mismatched:
      lines.append(f"{len(mismatched)} shape mismatch(es): {'; '.join(mismatched[:20])}")
    raise MappingError("checkpoint does not fit the model:\n  " + "\n  ".join(lines))
  return params, dropped


def params_to_state_dict(params: Mapping[Path, np.ndarray]
                         ) -> "collections.OrderedDict[str, np.ndarray]":
  """Our flat parameters -> an original-layout state dict (names and tensor layouts)."""
  out = collections.OrderedDict()
  for path, value in params.items():
    out[path_to_torch_key(path)] = flax_to_torch_array(path, np.asarray(value))
  return out
