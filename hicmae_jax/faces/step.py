"""The face step: decoded frames [T, H, W, 3] uint8 -> aligned crops [T, S, S, 3] uint8 and a
per-clip report. One function for every caller (prepare, feature export, predictions).

Per frame: detect (on a copy shrunk to detect_max_side), follow the main face (track.py), fit
landmarks in its box on the full frame, fit the similarity onto the template (align.py).
Frames where the box is held reuse the transform of the last detected frame; frames outside
any track take the nearest frame's. The transform is smoothed over time within each track,
then every frame is warped. A clip whose face is found in fewer than min_face_fraction of its
frames gets a skip reason and no crops.
"""
from __future__ import annotations

import dataclasses
import functools

import numpy as np

from hicmae_jax.faces import align, detector as detector_lib, track as track_lib
from hicmae_jax.faces.options import FaceOptions
from hicmae_jax.faces.report import FaceReport


@dataclasses.dataclass
class AlignedClip:
  """crops [T, S, S, 3] uint8 (None when skipped), report, and what produced them: track
  (boxes per frame), landmarks [T, P, 2] (NaN where not detected) and params [T, 4] (the
  smoothed frame->crop similarity per frame)."""
  crops: np.ndarray | None
  report: FaceReport
  track: track_lib.Track
  landmarks: np.ndarray
  params: np.ndarray


class FaceAligner:
  """Callable face step: aligner(frames [T, H, W, 3] uint8) -> AlignedClip."""

  def __init__(self, options: FaceOptions, detector: detector_lib.FaceDetector | None = None):
    self.options = options
    self.detector = detector or detector_lib.make_detector(
        options.detector, landmarks=options.landmarks, upsample=options.upsample)
    self.template = align.template_points(options.face_size, options.face_scale)

  def _detect(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Boxes and scores in full-frame pixels, below-threshold detections dropped."""
    from PIL import Image
    h, w = frame.shape[:2]
    limit = self.options.detect_max_side
    factor = 1.0
    if limit and max(h, w) > limit:
      factor = limit / max(h, w)
      size = (max(1, round(w * factor)), max(1, round(h * factor)))
      frame = np.asarray(Image.fromarray(frame).resize(size, Image.Resampling.BILINEAR))
    boxes, scores = self.detector.detect(frame)
    keep = scores >= self.options.min_score
    # Box corners scale about pixel centres: (x + 0.5) / factor - 0.5.
    return (boxes[keep] + 0.5) / factor - 0.5, scores[keep]

  def detect(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """RGB uint8 [H, W, 3] -> (boxes [K, 4], scores [K]) as the step sees them (faces/auto)."""
    return self._detect(frame)

  def __call__(self, frames: np.ndarray) -> AlignedClip:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
      raise ValueError(f"face step needs RGB uint8 frames [T, H, W, 3], got {frames.dtype} "
                       f"{frames.shape}")
    opts = self.options
    t_count, height, width = frames.shape[:3]
    trk = track_lib.follow_main_face([self._detect(f) for f in frames],
                                     max_hold_frames=opts.max_hold_frames,
                                     track_iou=opts.track_iou)
    detected = np.flatnonzero(trk.status == track_lib.DETECTED)
    landmarks = None
    params = np.full((t_count, 4), np.nan)
    for t in detected:
      points = self.detector.landmarks(frames[t], trk.boxes[t])
      if landmarks is None:
        landmarks = np.full((t_count,) + points.shape, np.nan)
      landmarks[t] = points
      five = detector_lib.alignment_points(points, self.detector.layout) + 0.5
      params[t] = align.umeyama(five, self.template)
    if landmarks is None:
      landmarks = np.full((t_count, 0, 2), np.nan)

    segments = _fill_gaps(params, trk)
    report = FaceReport(
        num_frames=t_count, detected_frames=len(detected),
        held_frames=int((trk.status == track_lib.HELD).sum()),
        missing_frames=int((trk.status == track_lib.MISSING).sum()),
        mean_score=float(trk.scores[detected].mean()) if len(detected) else float("nan"),
        tracks=int(trk.segment.max()) + 1 if len(detected) else 0)
    if report.detection_rate < opts.min_face_fraction:
      report.skip_reason = (f"face found in {report.detected_frames} of {t_count} frames "
                            f"({100 * report.detection_rate:.0f}% < min_face_fraction "
                            f"{100 * opts.min_face_fraction:.0f}%)")
      return AlignedClip(None, report, trk, landmarks, params)
    if not len(detected):  # kept without any face (min_face_fraction 0): central square
      params[:] = align.centre_crop_params(height, width, opts.face_size)
    params = align.smooth(params, segments, opts.smoothing, opts.smoothing_window,
                          opts.ema_alpha)
    crops = np.stack([align.warp(f, p, opts.face_size) for f, p in zip(frames, params)])
    return AlignedClip(crops, report, trk, landmarks, params)


def _fill_gaps(params: np.ndarray, trk: track_lib.Track) -> np.ndarray:
  """Fills, in place, the parameters of frames without a detection: held frames repeat the
  previous frame's, frames outside any track take the nearest detected frame's (earlier on
  ties). Returns the segment each frame's transform belongs to, for smoothing."""
  segments = trk.segment.copy()
  have = np.flatnonzero(~np.isnan(params[:, 0]))
  if not len(have):
    return np.zeros(len(params), np.int32)
  for t in range(len(params)):
    if not np.isnan(params[t, 0]):
      continue
    if trk.status[t] == track_lib.HELD and t > 0:
      params[t], segments[t] = params[t - 1], segments[t - 1]
      continue
    nearest = have[np.argmin(np.abs(have - t))]
    params[t], segments[t] = params[nearest], trk.segment[nearest]
  return segments


@functools.lru_cache(maxsize=4)
def get_aligner(options: FaceOptions) -> FaceAligner:
  """One FaceAligner per options per process (loading a shape predictor takes 0.1-1 s)."""
  return FaceAligner(options)
