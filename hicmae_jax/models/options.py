"""A model config read into what the top models share: dtypes by name, the attention
implementation (checked), the token Geometry and the BlockOptions of every block."""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import ml_collections

from hicmae_jax.models.layers import BlockOptions, Initializer

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16,
          "float64": jnp.float64}


def dtype_from_name(name: str):
  if name not in DTYPES:
    raise ValueError(f"unknown dtype {name!r}; allowed: {sorted(DTYPES)}")
  return DTYPES[name]


ATTENTION_IMPLS = ("native", "xla", "cudnn")


def check_attention_impl(name: str) -> str:
  """model.attention_impl, checked before anything compiles: cuDNN's fused attention exists
  only on NVIDIA GPUs."""
  if name not in ATTENTION_IMPLS:
    raise ValueError(f"model.attention_impl={name!r}; allowed: {', '.join(ATTENTION_IMPLS)}")
  if name == "cudnn" and jax.default_backend() != "gpu":
    raise ValueError(f"model.attention_impl='cudnn' needs an NVIDIA GPU, and JAX's backend here "
                     f"is {jax.default_backend()!r}: use 'native' (or 'xla')")
  return name


@dataclasses.dataclass(frozen=True)
class Geometry:
  """Token grid sizes derived from the input sizes."""
  num_frames: int
  input_size: int
  tubelet: int
  patch: int
  audio_frames: int
  audio_bins: int
  audio_patch: int

  @property
  def video_grid(self) -> tuple[int, int, int]:
    """(T/tubelet, H/patch, W/patch)."""
    s = self.input_size // self.patch
    return self.num_frames // self.tubelet, s, s

  @property
  def num_video_tokens(self) -> int:
    t, h, w = self.video_grid
    return t * h * w

  @property
  def audio_grid(self) -> tuple[int, int]:
    return self.audio_frames // self.audio_patch, self.audio_bins // self.audio_patch

  @property
  def num_audio_tokens(self) -> int:
    t, f = self.audio_grid
    return t * f

  @property
  def video_patch_dim(self) -> int:
    return self.tubelet * self.patch * self.patch * 3

  @property
  def audio_patch_dim(self) -> int:
    return self.audio_patch * self.audio_patch


def geometry(cfg: ml_collections.ConfigDict) -> Geometry:
  return Geometry(num_frames=cfg.num_frames, input_size=cfg.input_size,
                  tubelet=cfg.tubelet_size, patch=cfg.patch_size,
                  audio_frames=cfg.audio_frames, audio_bins=cfg.audio_mel_bins,
                  audio_patch=cfg.audio_patch_size)


def block_options(cfg: ml_collections.ConfigDict, kernel_init: Initializer) -> BlockOptions:
  return BlockOptions(mlp_ratio=cfg.mlp_ratio, eps=cfg.layer_norm_eps,
                      dtype=dtype_from_name(cfg.dtype),
                      param_dtype=dtype_from_name(cfg.param_dtype),
                      attention_impl=check_attention_impl(cfg.attention_impl),
                      kernel_init=kernel_init)
