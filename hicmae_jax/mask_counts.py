"""The masking rule shared by the device masks (`masking.py`, JAX) and the host masks
(`data/transforms/masks.py`, numpy): how many tokens a ratio masks, the ratio's check, and the
check of masks made outside the model.

Plain Python and numpy only, so the input pipeline's workers import it without JAX.
"""
from __future__ import annotations

import numpy as np


def check_ratio(ratio: float, name: str = "mask ratio") -> float:
  """The one check of a mask ratio: in (0, 1), else ValueError naming `name`."""
  if not 0.0 < ratio < 1.0:
    raise ValueError(f"{name} must be in (0, 1), got {ratio}")
  return ratio


def num_masked(num_tokens: int, ratio: float) -> int:
  """The original's count: int(ratio * num_tokens) (Python truncation)."""
  return int(check_ratio(ratio) * num_tokens)


def masked_counts(video_grid: tuple[int, int, int], num_audio_tokens: int, video_ratio: float,
                  audio_ratio: float) -> tuple[int, int]:
  """Masked tokens per sample: (video: num_masked(H'*W') in each of the T' temporal slots of a
  tube mask, audio: num_masked(N_audio)); video_grid = (T', H', W')."""
  t, h, w = video_grid
  return num_masked(h * w, video_ratio) * t, num_masked(num_audio_tokens, audio_ratio)


def check_mask_counts(mask, expected_masked: int, name: str) -> None:
  """Host-side check of masks [B, N] that come from outside the model (the data pipeline with
  config.data.masks_in_pipeline): every row masks exactly `expected_masked` tokens, which
  `masking.mask_to_ids` relies on."""
  counts = np.asarray(mask).sum(axis=1)
  if not np.all(counts == expected_masked):
    raise ValueError(f"{name}: every sample must mask exactly {expected_masked} tokens (the "
                     f"configured ratio), got counts {sorted(set(counts.tolist()))}")
