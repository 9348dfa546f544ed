"""Every face of a clip followed through its shot: per-frame detections -> face tracks.

Within a shot, each running track takes the detection that overlaps its last box most (IoU
>= track_iou; greedy, best pairs first). A track missing its face is kept for up to
max_hold_frames frames; a detection overlapping it again continues it, and the frames in
between are held (the last box stands in). A track that finds no face again ends at its last
detection: nothing is held after it. Detections that continue no track start new ones. At a
cut (a new shot) every track ends, so no track crosses a cut.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from hicmae_jax.faces.track import iou


@dataclasses.dataclass
class ShotTrack:
  """One face in one shot. frames [N] (ascending) where it was detected, boxes [N, 4],
  scores [N], tracked [N] (True where the box came from the correlation tracker between
  key frames, not from the detector itself)."""
  shot: int
  frames: np.ndarray
  boxes: np.ndarray
  scores: np.ndarray
  tracked: np.ndarray

  @property
  def first(self) -> int:
    return int(self.frames[0])

  @property
  def last(self) -> int:
    return int(self.frames[-1])

  @property
  def side(self) -> float:
    """Median box side in pixels (the square root of the box area)."""
    w = self.boxes[:, 2] - self.boxes[:, 0]
    h = self.boxes[:, 3] - self.boxes[:, 1]
    return float(np.median(np.sqrt(np.clip(w, 0, None) * np.clip(h, 0, None))))

  def box_at(self, t: int) -> np.ndarray:
    """The box at frame t: detected there, or the last detected one before (held)."""
    k = int(np.searchsorted(self.frames, t, side="right")) - 1
    return self.boxes[max(k, 0)]


Detections = Sequence[tuple]  # per frame: (boxes [K, 4], scores [K]) or (+ tracked [K])


def _unpack(det) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  boxes = np.asarray(det[0], np.float64).reshape(-1, 4)
  scores = np.asarray(det[1], np.float64).reshape(-1)
  tracked = (np.asarray(det[2], bool).reshape(-1) if len(det) > 2
             else np.zeros(len(boxes), bool))
  return boxes, scores, tracked


def build(detections: Detections, shots: np.ndarray, *, max_hold_frames: int,
          track_iou: float) -> list[ShotTrack]:
  """Per-frame detections and shot numbers [T] -> the tracks, by first frame (module
  docstring)."""
  shots = np.asarray(shots)
  done: list[dict] = []
  active: list[dict] = []
  for t, det in enumerate(detections):
    if t and shots[t] != shots[t - 1]:
      done += active
      active = []
    boxes, scores, tracked = _unpack(det)
    taken = np.zeros(len(boxes), bool)
    if active and len(boxes):
      overlap = np.stack([iou(a["boxes"][-1], boxes) for a in active])  # [A, K]
      for flat in np.argsort(-overlap, axis=None):
        i, k = np.unravel_index(flat, overlap.shape)
        if overlap[i, k] < track_iou:
          break
        if taken[k] or active[i]["frames"][-1] == t:
          continue
        taken[k] = True
        _extend(active[i], t, boxes[k], scores[k], tracked[k])
    still = []
    for a in active:
      (still if t - a["frames"][-1] <= max_hold_frames else done).append(a)
    active = still
    for k in np.flatnonzero(~taken):
      active.append({"shot": int(shots[t]), "frames": [], "boxes": [], "scores": [],
                     "tracked": []})
      _extend(active[-1], t, boxes[k], scores[k], tracked[k])
  done += active
  tracks = [ShotTrack(d["shot"], np.asarray(d["frames"]), np.asarray(d["boxes"]),
                      np.asarray(d["scores"]), np.asarray(d["tracked"], bool)) for d in done]
  return sorted(tracks, key=lambda tr: (tr.first, tr.shot))


def _extend(track: dict, t: int, box, score, tracked) -> None:
  track["frames"].append(t)
  track["boxes"].append(box)
  track["scores"].append(score)
  track["tracked"].append(bool(tracked))
