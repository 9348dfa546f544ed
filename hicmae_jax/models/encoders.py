"""Modality encoders (a ViT over video tubelets or spectrogram patches) and the fusion encoder."""
from __future__ import annotations

import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from hicmae_jax.models.embed import sinusoid_table
from hicmae_jax.models.layers import Block, BlockOptions, CSBlock, LayerNorm, run_block


@functools.lru_cache(maxsize=None)
def _table(num_positions: int, dim: int) -> np.ndarray:
  return sinusoid_table(num_positions, dim)


def positions(num_positions: int, dim: int, dtype) -> jax.Array:
  """The fixed sinusoid table [1, N, D] in `dtype` (a compile-time constant, never a parameter)."""
  return jnp.asarray(_table(num_positions, dim), dtype=dtype)[None]


def gather_tokens(x: jax.Array, ids: jax.Array) -> jax.Array:
  """x [B, N, D], ids [B, K] int -> [B, K, D] (static shapes; no boolean indexing)."""
  return jnp.take_along_axis(x, ids[..., None], axis=1)


def drop_path_rates(rate: float, depth: int) -> list[float]:
  """Stochastic depth increasing linearly from 0 to `rate` over a stack (as timm/the original)."""
  return [float(r) for r in np.linspace(0.0, rate, depth)] if depth else []


class Encoder(nnx.Module):
  """patch_embed -> + sinusoid positions -> Blocks -> norm.

  Works on all tokens (fine-tuning) or on the visible tokens of a mask (pre-training), and can
  return the LayerNormed outputs of chosen blocks (the hierarchy).
  """

  def __init__(self, patch_embed: nnx.Module, *, num_patches: int, dim: int, depth: int,
               num_heads: int, opts: BlockOptions, drop_path: float, remat: bool,
               rngs: nnx.Rngs):
    self.patch_embed = patch_embed
    self.blocks = nnx.List([
        Block(dim, num_heads, opts, drop_path=r, rngs=rngs)
        for r in drop_path_rates(drop_path, depth)])
    self.norm = LayerNorm(dim, eps=opts.eps, param_dtype=opts.param_dtype, rngs=rngs)
    self.num_patches = num_patches
    self.dim = dim
    self.dtype = opts.dtype
    self.remat = remat

  @property
  def depth(self) -> int:
    return len(self.blocks)

  def embed(self, x: jax.Array, visible_ids: jax.Array | None = None) -> jax.Array:
    """Raw input -> tokens with positions [B, N, D], or only the visible ones [B, K, D].

    The visible patches are selected before the projection (the same numbers as projecting
    all and selecting, without projecting the ~90 % that pre-training masks)."""
    patches = self.patch_embed.patchify(x)
    if patches.shape[1] != self.num_patches:
      raise ValueError(f"input gives {patches.shape[1]} tokens, the model was built for "
                       f"{self.num_patches}: check the input size against the config")
    pos = positions(self.num_patches, self.dim, self.dtype)
    if visible_ids is None:
      return self.patch_embed.proj(patches) + pos
    tokens = self.patch_embed.proj(gather_tokens(patches, visible_ids))
    return tokens + jnp.take(pos[0], visible_ids, axis=0)

  def __call__(self, x: jax.Array, *, visible_ids: jax.Array | None = None,
               keep_layers: Sequence[int] = (), rngs: nnx.Rngs | None = None,
               deterministic: bool = True) -> tuple[jax.Array, list[jax.Array]]:
    """Encodes x; returns (norm(final tokens) [B, K, D],
    [norm(tokens after block i) for i in keep_layers]).

    visible_ids [B, K] selects the tokens to encode (in the given order); None keeps all N.
    """
    tokens = self.embed(x, visible_ids)
    kept = []
    keep = set(keep_layers)
    for i, block in enumerate(self.blocks):
      tokens = run_block(block, tokens, remat=self.remat, rngs=rngs, deterministic=deterministic)
      if i in keep:
        kept.append(self.norm(tokens))
    return self.norm(tokens), [kept[sorted(keep).index(i)] for i in keep_layers]


class FusionEncoder(nnx.Module):
  """Two-stream cross-modal encoder: each layer updates video (attending to audio) and audio
  (attending to video) simultaneously, both reading the previous layer's values."""

  def __init__(self, *, dim: int, depth: int, num_heads: int, opts: BlockOptions,
               drop_path: float, remat: bool, rngs: nnx.Rngs):
    rates = drop_path_rates(drop_path, depth)
    self.blocks = nnx.List([
        CSBlock(dim, num_heads, opts, context_dim=dim, drop_path=r, rngs=rngs) for r in rates])
    self.blocks_audio = nnx.List([
        CSBlock(dim, num_heads, opts, context_dim=dim, drop_path=r, rngs=rngs) for r in rates])
    self.norm = LayerNorm(dim, eps=opts.eps, param_dtype=opts.param_dtype, rngs=rngs)
    self.norm_audio = LayerNorm(dim, eps=opts.eps, param_dtype=opts.param_dtype, rngs=rngs)
    self.remat = remat

  def __call__(self, video: jax.Array, audio: jax.Array, *, rngs: nnx.Rngs | None = None,
               deterministic: bool = True) -> tuple[jax.Array, jax.Array]:
    """video [B, Nv, D], audio [B, Na, D] -> (norm(video'), norm_audio(audio'))."""
    for block_v, block_a in zip(self.blocks, self.blocks_audio):
      new_video = run_block(block_v, video, audio, remat=self.remat, rngs=rngs,
                            deterministic=deterministic)
      new_audio = run_block(block_a, audio, video, remat=self.remat, rngs=rngs,
                            deterministic=deterministic)
      video, audio = new_video, new_audio
    return self.norm(video), self.norm_audio(audio)
