"""Hard cuts: where one shot ends and the next begins, from colour histograms.

Each frame gets a joint RGB histogram (4 levels per channel: 64 bins) of a subsampled copy,
normalised to sum 1. The distance between consecutive frames is half the L1 distance of
their histograms (total variation, 0: the same colours, 1: no colour in common). A cut is
placed before frame t when that distance is >= cut_threshold. Motion, a hand over the face
or a turning head change a small part of the histogram (a grey square over a sixth of the
frame: ~0.15); a cut to another scene changes most of it (0.5-0.9 on real footage).
"""
from __future__ import annotations

import numpy as np

_LEVELS = 4  # per channel
_MAX_SAMPLES = 96  # pixels per side taken for the histogram


def histograms(frames: np.ndarray) -> np.ndarray:
  """RGB uint8 frames [T, H, W, 3] -> normalised joint colour histograms [T, 64]."""
  frames = np.asarray(frames)
  h, w = frames.shape[1:3]
  step_y, step_x = max(1, h // _MAX_SAMPLES), max(1, w // _MAX_SAMPLES)
  small = frames[:, ::step_y, ::step_x].astype(np.int32) * _LEVELS // 256  # [T, h, w, 3]
  codes = (small[..., 0] * _LEVELS + small[..., 1]) * _LEVELS + small[..., 2]
  codes = codes.reshape(len(frames), -1)
  out = np.zeros((len(frames), _LEVELS ** 3))
  np.add.at(out, (np.repeat(np.arange(len(frames)), codes.shape[1]), codes.ravel()), 1.0)
  return out / codes.shape[1]


def cut_distances(frames: np.ndarray) -> np.ndarray:
  """[T, H, W, 3] -> [T] histogram distance of each frame to the previous one (0 for the
  first)."""
  hist = histograms(frames)
  dist = np.zeros(len(hist))
  dist[1:] = 0.5 * np.abs(np.diff(hist, axis=0)).sum(axis=1)
  return dist


def shot_ids(frames: np.ndarray, cut_threshold: float) -> np.ndarray:
  """[T, H, W, 3] -> shot number per frame [T] int32 (0, 0, ..., 1, 1, ...); a threshold
  above 1 never cuts."""
  return np.cumsum(cut_distances(frames) >= cut_threshold).astype(np.int32)


def shot_spans(shots: np.ndarray, fps: float = 0.0) -> list[dict]:
  """Shot numbers per frame [T] -> [{shot, start_frame, end_frame (exclusive)}], with
  start/end seconds when fps > 0."""
  shots = np.asarray(shots)
  starts = np.flatnonzero(np.diff(shots, prepend=-1) != 0)
  ends = np.append(starts[1:], len(shots))
  rows = []
  for k, (a, b) in enumerate(zip(starts, ends)):
    row = {"shot": k, "start_frame": int(a), "end_frame": int(b)}
    if fps > 0:
      row.update(start_seconds=round(a / fps, 4), end_seconds=round(b / fps, 4))
    rows.append(row)
  return rows
