"""The face a clip is about, shot by shot: one chain of face tracks per shot -> the clip's
Track (track.py: a box per frame, DETECTED / HELD / MISSING).

The main-face score of a track j in shot s (each part in [0, 1]):

  size_j     = median box side of j / the largest median side among the shot's tracks
  centre_j   = mean over its frames of 1 - (distance of the box centre from the frame's
               centre) / (half the frame's diagonal)
  detector_j = mean detector score of j / the highest mean among the shot's tracks
               (clipped to [0, 1]; 1 for every track when no mean is positive)
  length_j   = frames j was detected in / frames of the shot
  main_j     = 0.35 size_j + 0.25 centre_j + 0.15 detector_j + 0.25 length_j

face_select "main" takes the highest main_j; but when other tracks have a similar size (median
side within 20 % of the best's), the one of those tracked longest is kept, and the report
says so. "largest" takes the largest size_j, "center" the most central (centre_j); both break
ties by length. The chosen track is then continued by the shot's later (or earlier) tracks
that do not overlap it in time and start where it left off (box centres less than one box
side apart, sides within a factor 1.5): the same face, lost for longer than the hold. Frames
of the shot outside the chain have no face.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from hicmae_jax.faces import track as track_lib
from hicmae_jax.faces.tracks import ShotTrack

SELECT_RULES = ("main", "largest", "center")
WEIGHTS = {"size": 0.35, "centre": 0.25, "detector": 0.15, "length": 0.25}
SIMILAR_SIZE = 0.8  # sides within 20 % (HOG's box sides step by ~10-20 %): "similar size"
_JOIN_SIDE_RATIO = 1.5


def _centre_term(tr: ShotTrack, height: int, width: int) -> float:
  cx = (tr.boxes[:, 0] + tr.boxes[:, 2]) / 2
  cy = (tr.boxes[:, 1] + tr.boxes[:, 3]) / 2
  off = np.hypot(cx - (width - 1) / 2, cy - (height - 1) / 2) / (np.hypot(height, width) / 2)
  return float(np.clip(1 - off, 0, 1).mean())


def score_tracks(tracks: Sequence[ShotTrack], shot_frames: int, height: int, width: int
                 ) -> list[dict]:
  """The parts and the main score of each track of one shot (module docstring)."""
  sides = np.array([tr.side for tr in tracks])
  means = np.array([float(np.mean(tr.scores)) for tr in tracks])
  best_mean = means.max() if len(means) else 0.0
  rows = []
  for tr, side, mean in zip(tracks, sides, means):
    parts = {"size": side / max(sides.max(), 1e-9),
             "centre": _centre_term(tr, height, width),
             "detector": float(np.clip(mean / best_mean, 0, 1)) if best_mean > 0 else 1.0,
             "length": len(tr.frames) / max(shot_frames, 1)}
    main = sum(WEIGHTS[k] * v for k, v in parts.items())
    rows.append({"first_frame": tr.first, "last_frame": tr.last, "frames": len(tr.frames),
                 "side": round(float(side), 1), **{k: round(float(v), 4) for k, v in parts.items()},
                 "main": round(float(main), 4)})
  return rows


def _pick(rows: list[dict], rule: str) -> tuple[int, str]:
  """Index of the chosen track among a shot's scored tracks, and a note ("" when plain)."""
  key = {"main": "main", "largest": "size", "center": "centre"}[rule]
  best = max(range(len(rows)), key=lambda i: (rows[i][key], rows[i]["frames"]))
  if rule != "main":
    return best, ""
  similar = [i for i in range(len(rows))
             if min(rows[i]["side"], rows[best]["side"]) >=
             SIMILAR_SIZE * max(rows[i]["side"], rows[best]["side"])]
  if len(similar) < 2:
    return best, ""
  longest = max(similar, key=lambda i: (rows[i]["frames"], rows[i]["main"]))
  sides = ", ".join(f"{rows[i]['side']:.0f}" for i in similar)
  frames = ", ".join(str(rows[i]["frames"]) for i in similar)
  if sum(rows[i]["frames"] == rows[longest]["frames"] for i in similar) > 1:
    return longest, (f"{len(similar)} faces of similar size ({sides} px), tracked equally long "
                     f"({frames} frames): kept the highest main score")
  return longest, (f"{len(similar)} faces of similar size ({sides} px): kept the one tracked "
                   f"longest ({frames} frames)")


def _joins(a: ShotTrack, b: ShotTrack) -> bool:
  """b continues a (b after a in time): b starts near where a ended, at a similar size."""
  end, start = a.boxes[-1], b.boxes[0]
  side = lambda box: np.sqrt(max(box[2] - box[0], 1e-9) * max(box[3] - box[1], 1e-9))
  sa, sb = side(end), side(start)
  centre = lambda box: np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])
  return (np.linalg.norm(centre(end) - centre(start)) < max(sa, sb)
          and max(sa, sb) <= _JOIN_SIDE_RATIO * min(sa, sb))


def _chain(chosen: ShotTrack, others: Sequence[ShotTrack]) -> list[ShotTrack]:
  """The chosen track and the tracks that continue it before and after (module docstring)."""
  chain = [chosen]
  for tr in sorted(others, key=lambda x: x.first):
    if tr.first > chain[-1].last and _joins(chain[-1], tr):
      chain.append(tr)
  for tr in sorted(others, key=lambda x: -x.last):
    if tr.last < chain[0].first and _joins(tr, chain[0]):
      chain.insert(0, tr)
  return chain


@dataclasses.dataclass
class Selection:
  """track: the clip's Track; shots: per shot {shot, faces, chosen (index among the shot's
  tracks, or None), tracks (their scores), note}; tracked [T] bool: the box came from the
  correlation tracker."""
  track: track_lib.Track
  shots: list[dict]
  tracked: np.ndarray


def choose(tracks: Sequence[ShotTrack], shots: np.ndarray, height: int, width: int,
           rule: str = "main") -> Selection:
  """One chain of tracks per shot -> the clip's Track (module docstring)."""
  if rule not in SELECT_RULES:
    raise ValueError(f"face_select must be one of {SELECT_RULES}, got {rule!r}")
  shots = np.asarray(shots)
  t_count = len(shots)
  boxes = np.full((t_count, 4), np.nan)
  scores = np.full(t_count, np.nan)
  status = np.full(t_count, track_lib.MISSING, np.int8)
  segment = np.full(t_count, -1, np.int32)
  tracked = np.zeros(t_count, bool)
  rows, number = [], 0
  for s in range(int(shots.max()) + 1 if t_count else 0):
    mine = [tr for tr in tracks if tr.shot == s]
    row = {"shot": s, "faces": len(mine), "chosen": None, "tracks": [], "note": ""}
    rows.append(row)
    if not mine:
      continue
    row["tracks"] = score_tracks(mine, int((shots == s).sum()), height, width)
    pick, row["note"] = _pick(row["tracks"], rule)
    row["chosen"] = pick
    for tr in _chain(mine[pick], [m for k, m in enumerate(mine) if k != pick]):
      span = np.arange(tr.first, tr.last + 1)
      boxes[span] = [tr.box_at(t) for t in span]
      status[span] = track_lib.HELD
      status[tr.frames] = track_lib.DETECTED
      scores[tr.frames] = tr.scores
      tracked[tr.frames] = tr.tracked
      segment[span] = number
      number += 1
  return Selection(track_lib.Track(boxes, scores, status, segment), rows, tracked)
