"""Hierarchical decoder: layer 0 a Block, layers 1.. CSBlocks reading the encoder hierarchy."""
from __future__ import annotations

from typing import Sequence

import jax
from flax import nnx

from hicmae_jax.models.layers import (
  Block,
  BlockOptions,
  CSBlock,
  LayerNorm,
  linear,
  run_block,
  xavier_uniform,
  zeros,
)


class HierarchicalDecoder(nnx.Module):
  """Decodes [visible tokens ; mask tokens] and predicts the masked patches only.

  Layer i >= 1 cross-attends to hierarchy level i-1 given deepest first, so the first decoder
  layers read the deepest encoder features (skip connections to intermediate encoder layers).
  """

  def __init__(self, *, dim: int, depth: int, num_heads: int, out_dim: int,
               opts: BlockOptions, remat: bool, rngs: nnx.Rngs):
    if depth < 1:
      raise ValueError(f"decoder depth must be >= 1, got {depth}")
    self.blocks = nnx.List(
        [Block(dim, num_heads, opts, drop_path=0.0, rngs=rngs)]
        + [CSBlock(dim, num_heads, opts, context_dim=dim, drop_path=0.0, rngs=rngs)
           for _ in range(depth - 1)])
    self.norm = LayerNorm(dim, eps=opts.eps, param_dtype=opts.param_dtype, rngs=rngs)
    self.head = linear(dim, out_dim, kernel_init=xavier_uniform, bias_init=zeros,
                       dtype=opts.dtype, param_dtype=opts.param_dtype, rngs=rngs)
    self.remat = remat

  def __call__(self, x: jax.Array, hierarchy: Sequence[jax.Array], num_masked: int, *,
               rngs: nnx.Rngs | None = None, deterministic: bool = True) -> jax.Array:
    """x [B, N, Dd] (masked tokens last), hierarchy deepest first, each [B, K, Dd]
    -> predictions [B, num_masked, out_dim]."""
    if len(hierarchy) != len(self.blocks) - 1:
      raise ValueError(f"decoder of depth {len(self.blocks)} needs {len(self.blocks) - 1} "
                       f"hierarchy levels, got {len(hierarchy)}")
    x = run_block(self.blocks[0], x, remat=self.remat, rngs=rngs, deterministic=deterministic)
    for block, context in zip(list(self.blocks)[1:], hierarchy):
      x = run_block(block, x, context, remat=self.remat, rngs=rngs, deterministic=deterministic)
    return self.head(self.norm(x[:, -num_masked:]))
