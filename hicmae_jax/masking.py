"""Masks for pre-training on device (pure functions, static shapes, usable inside jit).

Masks are boolean with True = masked, in the original's form: video [B, T'*H'*W'] in
(t, h, w) token order, audio [B, N_audio] time-major. Every sample masks exactly
int(ratio * count) tokens (the original's count, `mask_counts.num_masked`), each sample with
its own draw. The host (numpy) masks of the input pipeline are `data/transforms/masks.py`.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from hicmae_jax.mask_counts import num_masked


def _exact_count_mask(key: jax.Array, batch: int, n: int, n_masked: int) -> jax.Array:
  """[B, n] bool with exactly n_masked True per row, uniformly at random."""
  noise = jax.random.uniform(key, (batch, n))
  ranks = jnp.argsort(jnp.argsort(noise, axis=1), axis=1)
  return ranks < n_masked


def tube_mask(key: jax.Array, batch: int, grid: tuple[int, int, int], ratio: float) -> jax.Array:
  """Video tube masking: one spatial mask per sample shared by all temporal slots.

  grid = (T', H', W') token grid. Returns [B, T'*H'*W'] bool, int(ratio*H'*W')*T' True per row.
  """
  t, h, w = grid
  spatial = _exact_count_mask(key, batch, h * w, num_masked(h * w, ratio))
  return jnp.broadcast_to(spatial[:, None, :], (batch, t, h * w)).reshape(batch, t * h * w)


def random_mask(key: jax.Array, batch: int, num_tokens: int, ratio: float) -> jax.Array:
  """Audio random masking: [B, N] bool with int(ratio*N) True per row."""
  return _exact_count_mask(key, batch, num_tokens, num_masked(num_tokens, ratio))


def mask_to_ids(mask: jax.Array, num_visible: int) -> tuple[jax.Array, jax.Array]:
  """Splits token indices by a mask [B, N] (True = masked), both parts in raster order.

  Returns (visible_ids [B, num_visible], masked_ids [B, N - num_visible]). The mask must mask
  exactly N - num_visible tokens in every row: the masks drawn here always do, and the input
  pipeline's masks are checked by `mask_counts.check_mask_counts` as they leave it.
  """
  ids = jnp.argsort(mask.astype(jnp.int32), axis=1, stable=True)  # visible first, order kept
  return ids[:, :num_visible], ids[:, num_visible:]
