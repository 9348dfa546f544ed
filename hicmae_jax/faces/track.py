"""The main face of a clip as one box per frame (Track; select.py builds it from the tracks of
tracks.py), and the box overlap (IoU) tracking matches with."""
from __future__ import annotations

import dataclasses

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
