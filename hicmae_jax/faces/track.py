"""Following the main face through a clip: one box per frame from per-frame detections.

Per frame: while a track runs, the best-scoring detection that overlaps the previous box (IoU
>= track_iou) continues it. When none does (missed, covered, or only other faces), the last
box is held for up to max_hold_frames frames; after that the track ends and the
best-scoring detection, if any, starts a new one. Without a running track the best-scoring
detection starts one.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

MISSING, DETECTED, HELD = 0, 1, 2


@dataclasses.dataclass
class Track:
  """The main face per frame. boxes [T, 4] (NaN where MISSING), scores [T] (NaN unless
  DETECTED), status [T] (MISSING / DETECTED / HELD), segment [T] (track number, -1 where
  MISSING: a new number each time a track starts)."""
  boxes: np.ndarray
  scores: np.ndarray
  status: np.ndarray
  segment: np.ndarray


def iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
  """Intersection over union of one box [4] with boxes [K, 4] -> [K]."""
  boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
  x0 = np.maximum(box[0], boxes[:, 0])
  y0 = np.maximum(box[1], boxes[:, 1])
  x1 = np.minimum(box[2], boxes[:, 2])
  y1 = np.minimum(box[3], boxes[:, 3])
  inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
  area = lambda b: np.clip(b[..., 2] - b[..., 0], 0, None) * np.clip(b[..., 3] - b[..., 1], 0,
                                                                      None)
  union = area(box) + area(boxes) - inter
  return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def follow_main_face(detections: Sequence[tuple[np.ndarray, np.ndarray]], *,
                     max_hold_frames: int, track_iou: float) -> Track:
  """detections: per frame (boxes [K, 4], scores [K]) -> Track (module docstring)."""
  t_count = len(detections)
  boxes = np.full((t_count, 4), np.nan)
  scores = np.full(t_count, np.nan)
  status = np.full(t_count, MISSING, np.int8)
  segment = np.full(t_count, -1, np.int32)
  prev = None  # the running track's last box
  held = 0
  num_tracks = 0
  for t, (cand, cand_scores) in enumerate(detections):
    cand = np.asarray(cand, np.float64).reshape(-1, 4)
    cand_scores = np.asarray(cand_scores, np.float64).reshape(-1)
    pick = -1
    if prev is not None and len(cand):
      overlapping = np.flatnonzero(iou(prev, cand) >= track_iou)
      if len(overlapping):
        pick = int(overlapping[np.argmax(cand_scores[overlapping])])
    if pick < 0 and prev is not None and held < max_hold_frames:
      held += 1
      boxes[t], status[t], segment[t] = prev, HELD, num_tracks - 1
      continue
    if pick < 0 and len(cand):  # no running track (or its hold ran out): start a new one
      pick = int(np.argmax(cand_scores))
      num_tracks += 1
    if pick < 0:
      prev = None
      continue
    prev, held = cand[pick], 0
    boxes[t], scores[t], status[t], segment[t] = prev, cand_scores[pick], DETECTED, num_tracks - 1
  return Track(boxes, scores, status, segment)
