"""A slow detector made affordable: detect on key frames, follow the faces between them with
dlib's correlation tracker, and check the tracker with the detector where it may have gone
wrong.

Key frames: the first frame of every shot and every `interval` frames after it, where the
detector searches the whole frame; and the shot's last frame. After a face is lost between
key frames, whole-frame searches come every interval / PROBE_PARTS frames for the next
interval frames, not at the next key frame only, so that a face back from behind a hand is
found again soon (at most PROBE_PARTS more searches per loss). For
two consecutive key frames a < b of a shot:
- each face detected at a (the max_faces largest) is followed forwards to b. The tracker's
  peak-to-sidelobe ratio (PSR) falling under min_psr stops it (covered, gone). If its box at
  b overlaps a detection there (IoU >= match_iou), every frame between is confirmed;
  otherwise the detector bisects the span (about log2(interval) more runs) for the last
  frame where the tracked box still overlaps a detection, and the frames after it get no
  box from this face.
- each face detected at b that no forward track reached is followed backwards to a and
  checked the same way (a face that came into view between the key frames).
Checks search only a region around the tracked box (REGION_SIDES times its side), not the
whole frame, unless the whole frame was searched there anyway: on a 640x360 frame with a
~70-110 px face that is 2-5x cheaper. The shot's last frame is searched as a whole only when
a face of the last whole-frame key frame was lost on the way (or it had none), so a new face
that comes into view after that key frame, while the old ones stay, is not found.
A tracked box scores its key frame's detection score. Landmarks are refitted on every frame
afterwards, by the face step.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from hicmae_jax.faces.track import iou

Detect = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
REGION_SIDES = 3.0  # side of a checked region, in box sides
PROBE_PARTS = 4  # after a face is lost, whole-frame searches every interval / 4 frames
_MIN_REGION = 120  # pixels: the CNN needs some context around a face


def region(box: np.ndarray, height: int, width: int) -> tuple[int, int, int, int]:
  """The square (x0, y0, x1, y1) of REGION_SIDES box sides (at least _MIN_REGION) around
  the box's centre, clipped to the frame."""
  side = max(REGION_SIDES * np.sqrt(max((box[2] - box[0]) * (box[3] - box[1]), 1.0)),
             _MIN_REGION)
  cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
  x0, y0 = int(max(0, cx - side / 2)), int(max(0, cy - side / 2))
  return x0, y0, int(min(width, cx + side / 2)), int(min(height, cy + side / 2))


def _largest(boxes: np.ndarray, count: int) -> np.ndarray:
  area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
  return np.argsort(-area, kind="stable")[:count]


class _Schedule:
  """The detector's results per frame (memoised) and the tracker's boxes per frame."""

  def __init__(self, frames: np.ndarray, detect: Detect, min_psr: float, match_iou: float):
    import dlib
    self._dlib = dlib
    self.frames, self.detect_fn = frames, detect
    self.min_psr, self.match_iou = min_psr, match_iou
    self.detected: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    self.regional: dict[int, list[tuple[np.ndarray, float]]] = {}
    self.tracked: dict[int, list[tuple[np.ndarray, float]]] = {}
    self.runs = 0

  def detect(self, t: int) -> tuple[np.ndarray, np.ndarray]:
    """Detections in the whole frame t (run once)."""
    if t not in self.detected:
      boxes, scores = self.detect_fn(self.frames[t])
      self.runs += 1
      self.detected[t] = (np.asarray(boxes, np.float64).reshape(-1, 4),
                          np.asarray(scores, np.float64).reshape(-1))
    return self.detected[t]

  def detect_near(self, t: int, box: np.ndarray) -> np.ndarray:
    """Detections [K, 4] in the region around box at frame t (the whole frame's when it was
    searched)."""
    if t in self.detected:
      return self.detected[t][0]
    h, w = self.frames.shape[1:3]
    x0, y0, x1, y1 = region(box, h, w)
    boxes, scores = self.detect_fn(np.ascontiguousarray(self.frames[t, y0:y1, x0:x1]))
    self.runs += 1
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4) + [x0, y0, x0, y0]
    self.regional.setdefault(t, []).extend(zip(boxes, np.asarray(scores).reshape(-1)))
    return boxes

  def match(self, t: int, box: np.ndarray) -> int:
    """Index of the detection near box at t that it overlaps most (>= match_iou), else -1."""
    boxes = self.detect_near(t, box)
    if not len(boxes):
      return -1
    overlap = iou(box, boxes)
    return int(np.argmax(overlap)) if overlap.max() >= self.match_iou else -1

  def follow(self, start: int, box: np.ndarray, stop: int) -> dict[int, np.ndarray]:
    """Boxes from start towards stop (either direction, stop included) until the PSR falls."""
    tracker = self._dlib.correlation_tracker()
    x0, y0, x1, y1 = box
    tracker.start_track(self.frames[start], self._dlib.drectangle(x0, y0, x1, y1))
    step = 1 if stop > start else -1
    path = {}
    for t in range(start + step, stop + step, step):
      if tracker.update(self.frames[t]) < self.min_psr:
        break
      p = tracker.get_position()
      path[t] = np.array([p.left(), p.top(), p.right(), p.bottom()])
    return path

  def confirm(self, start: int, box: np.ndarray, score: float, stop: int) -> int:
    """Follows box from start to stop and keeps the confirmed part (module docstring); ->
    the last frame confirmed (stop when it got all the way)."""
    path = self.follow(start, box, stop)
    step = 1 if stop > start else -1
    reached = self.match(stop, path[stop]) if stop in path else -1
    if reached >= 0:
      good = stop
    else:  # bisect between start (good) and the first frame not known good
      bad = stop if stop in path else (max(path, key=lambda t: t * step) if path else start) + step
      good = start
      while abs(bad - good) > 1:
        mid = (good + bad) // 2
        if self.match(mid, path[mid]) >= 0:
          good = mid
        else:
          bad = mid
    for t in range(start + step, good + step, step):
      self.tracked.setdefault(t, []).append((path[t], score))
    return good


def detect_clip(frames: np.ndarray, detect: Detect, shots: np.ndarray, interval: int, *,
                min_psr: float = 7.0, match_iou: float = 0.3, max_faces: int = 4
                ) -> tuple[list[tuple[np.ndarray, np.ndarray, np.ndarray]], int]:
  """frames [T, H, W, 3] uint8, detect (frame -> boxes [K, 4], scores [K]), shot numbers
  [T] -> per frame (boxes [K, 4], scores [K], tracked [K] bool), and how many times the
  detector ran (module docstring)."""
  sched = _Schedule(np.asarray(frames), detect, min_psr, match_iou)
  shots = np.asarray(shots)
  starts = np.flatnonzero(np.diff(shots, prepend=-1) != 0)
  for start, end in zip(starts, np.append(starts[1:], len(shots))):
    _shot(sched, int(start), int(end) - 1, max(1, interval), max_faces)
  return [_frame_boxes(sched, t) for t in range(len(shots))], sched.runs


def _shot(sched: _Schedule, start: int, last: int, interval: int, max_faces: int) -> None:
  """One shot [start, last]: whole-frame key frames every interval (sooner after a loss),
  faces followed forwards and backwards between them."""
  probe = max(2, interval // PROBE_PARTS)
  probing_until = -1  # after a loss: whole-frame searches every `probe` frames up to here
  a = start
  sched.detect(a)
  while a < last:
    b = min(a + (probe if a < probing_until else interval), last)
    whole = b != last  # the shot's last frame is searched whole only when needed
    boxes_a, scores_a = sched.detect(a)
    good = [sched.confirm(a, boxes_a[k], scores_a[k], b) for k in _largest(boxes_a, max_faces)]
    lost = [g for g in good if g < b]
    if lost:  # look again soon, and for an interval: the face may be back
      probing_until = max(probing_until, min(lost) + interval)
      if min(lost) + probe < b:
        b, whole = min(lost) + probe, True
    if not whole:
      if good and not lost:
        break  # every face followed to the shot's end
      whole = True
    boxes_b, scores_b = sched.detect(b)
    for k in _largest(boxes_b, max_faces):
      if not _reached(sched, b, boxes_b[k]):
        sched.confirm(b, boxes_b[k], scores_b[k], a)
    a = b


def _reached(sched: _Schedule, t: int, box: np.ndarray) -> bool:
  """A forward track arrived on this detection at frame t."""
  mine = [b for b, _ in sched.tracked.get(t, [])]
  return bool(mine) and iou(box, np.stack(mine)).max() >= sched.match_iou


def _frame_boxes(sched: _Schedule, t: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Detections at t (where the detector ran, on the whole frame or in regions) and tracked
  boxes that add a face."""
  boxes, scores = sched.detected.get(t, (np.zeros((0, 4)), np.zeros(0)))
  rows = [(b, s, False) for b, s in zip(boxes, scores)]
  for box, score in sched.regional.get(t, []):
    if not rows or iou(box, np.stack([r[0] for r in rows])).max() < 0.5:
      rows.append((box, score, False))
  for box, score in sched.tracked.get(t, []):
    if not rows or iou(box, np.stack([r[0] for r in rows])).max() < 0.5:
      rows.append((box, score, True))
  if not rows:
    return np.zeros((0, 4)), np.zeros(0), np.zeros(0, bool)
  return (np.stack([r[0] for r in rows]), np.array([r[1] for r in rows]),
          np.array([r[2] for r in rows], bool))
