"""Per-clip face reports and their summary over a split (dataset_info.json, prepare's log)."""
from __future__ import annotations

import dataclasses
from typing import Mapping

import numpy as np


@dataclasses.dataclass
class FaceReport:
  """What the face step found in one clip.

  detection_rate: frames with a detected face / frames (with key frames: the detector's
  own detections and the tracker's boxes it confirmed, tracked_frames of them). held_frames:
  frames between two detections of the face where its last box was held. missing_frames:
  frames without a face: no crop is made from them (padded; see step.py). mean_score: mean
  detector score over detected frames (NaN when none). tracks: how many face tracks were
  kept. shots: [{shot, start_frame, end_frame}] from the cut detection. detector_frames:
  frames the detector ran on. selection: per shot, its faces' scores and the one kept
  (select.py), with a note when faces of similar size were decided by track length.
  skip_reason: "" when kept.
  """
  num_frames: int
  detected_frames: int
  held_frames: int
  missing_frames: int
  mean_score: float
  tracks: int
  skip_reason: str = ""
  tracked_frames: int = 0
  detector_frames: int = 0
  shots: list = dataclasses.field(default_factory=list)
  selection: list = dataclasses.field(default_factory=list)

  @property
  def detection_rate(self) -> float:
    return self.detected_frames / max(self.num_frames, 1)

  def to_dict(self) -> dict:
    """JSON-ready: detection_rate added, mean_score None when no face was detected."""
    d = dataclasses.asdict(self)
    d["detection_rate"] = round(self.detection_rate, 4)
    d["mean_score"] = None if np.isnan(self.mean_score) else round(float(self.mean_score), 4)
    return d


def summarise(reports: Mapping[str, dict], options: dict) -> dict:
  """Per-clip report dicts (clip id -> FaceReport.to_dict()) -> the split's face summary:
  the options, clip counts, frame-weighted detection rate and score, held/missing frame
  totals, the worst kept clip's rate, and every clip's report under "per_clip"."""
  rows = list(reports.values())
  kept = [r for r in rows if not r["skip_reason"]]
  frames = sum(r["num_frames"] for r in rows)
  detected = sum(r["detected_frames"] for r in rows)
  score_sum = sum(r["mean_score"] * r["detected_frames"] for r in rows if r["detected_frames"])
  return {
      "options": dict(options),
      "clips": len(rows),
      "kept": len(kept),
      "skipped_no_face": len(rows) - len(kept),
      "frames": frames,
      "detection_rate": round(detected / frames, 4) if frames else 0.0,
      "min_kept_detection_rate": min((r["detection_rate"] for r in kept), default=None),
      "held_frames": sum(r["held_frames"] for r in rows),
      "missing_frames": sum(r["missing_frames"] for r in rows),
      "mean_score": round(score_sum / detected, 4) if detected else None,
      # Per clip without the per-shot selection tables (dataset_info.json stays small).
      "per_clip": {k: {f: v for f, v in reports[k].items() if f != "selection"}
                   for k in sorted(reports)},
  }


def summary_text(summary: dict) -> str:
  """One line for prepare's log."""
  o = summary["options"]
  score = summary["mean_score"]
  return (f"faces ({o['detector']}, {o['landmarks']} landmarks, {o['face_size']} px at scale "
          f"{o['face_scale']:g}): found in {100 * summary['detection_rate']:.1f}% of "
          f"{summary['frames']} frames, {summary['held_frames']} frames held over misses, mean "
          f"score {'-' if score is None else f'{score:.2f}'}; {summary['skipped_no_face']} of "
          f"{summary['clips']} clips skipped (face in < {100 * o['min_face_fraction']:.0f}% of "
          f"frames)")
