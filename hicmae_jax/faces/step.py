"""The face step: decoded frames [T, H, W, 3] uint8 -> aligned crops [T, S, S, 3] uint8, which
frames have a face, and a per-clip report. One function for every caller (prepare, feature
export, predictions).

1. Shots: hard cuts from colour histograms (shots.py).
2. Detections: per frame, on a copy shrunk to detect_max_side; or, with key frames (the CNN
   back ends' default), on key frames with the faces followed between them (keyframes.py).
3. Tracks: every face followed through its shot, short misses held (tracks.py); never across
   a cut.
4. The face the shot is about (select.py: face_select).
5. Per frame with that face: landmarks fitted in its box on the full frame, the similarity
   onto the template (align.py); held frames reuse the last detected frame's. Smoothed over
   time within each track, then warped.

No face, no crop: a frame where the chosen face is neither detected nor held gets no
transform from another frame. Its crop is padding (PAD_COLOUR: the ImageNet mean colour,
which the model's normalisation maps to zero) and `has_face` is False there, so that a clip
keeps its length and its audio stays in step. A clip whose face is found in fewer than
min_face_fraction of its frames gets a skip reason and no crops.
"""
from __future__ import annotations

import dataclasses
import functools

import numpy as np

from hicmae_jax.faces import (
  align,
  detector as detector_lib,
  keyframes,
  select,
  shots,
  track as track_lib,
  tracks,
)
from hicmae_jax.faces.options import FaceOptions
from hicmae_jax.faces.report import FaceReport

# Frames between detector runs when keyframe_interval is 0 (chosen by tools/benchmark_faces:
# README "Faces in the wild").
KEYFRAME_DEFAULTS = {"dlib": 1, "dlib_cnn_reference": 60, "dlib_cnn": 30}
PAD_COLOUR = (124, 116, 104)  # ImageNet mean (0.485, 0.456, 0.406) x 255, rounded


@dataclasses.dataclass
class AlignedClip:
  """crops [T, S, S, 3] uint8 (None when skipped; PAD_COLOUR where has_face is False),
  has_face [T] bool, report, and what produced them: track (boxes per frame), landmarks
  [T, P, 2] (NaN where not detected), params [T, 4] (the smoothed frame->crop similarity;
  NaN where there is no face) and shots [T] (shot number per frame)."""
  crops: np.ndarray | None
  report: FaceReport
  track: track_lib.Track
  landmarks: np.ndarray
  params: np.ndarray
  has_face: np.ndarray
  shots: np.ndarray


class FaceAligner:
  """Callable face step: aligner(frames [T, H, W, 3] uint8) -> AlignedClip."""

  def __init__(self, options: FaceOptions, detector: detector_lib.FaceDetector | None = None):
    self.options = options
    self.detector = detector or detector_lib.make_detector(
        options.detector, landmarks=options.landmarks, upsample=options.upsample)
    self.template = align.template_points(options.face_size, options.face_scale)
    self.keyframe_interval = (options.keyframe_interval or
                              KEYFRAME_DEFAULTS.get(options.detector, 1))

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

  def _detections(self, frames: np.ndarray, shot: np.ndarray) -> tuple[list, int]:
    """Per frame (boxes, scores, tracked) and the number of frames the detector ran on."""
    if self.keyframe_interval > 1:
      return keyframes.detect_clip(frames, self._detect, shot, self.keyframe_interval)
    return [self._detect(f) for f in frames], len(frames)

  def __call__(self, frames: np.ndarray) -> AlignedClip:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
      raise ValueError(f"face step needs RGB uint8 frames [T, H, W, 3], got {frames.dtype} "
                       f"{frames.shape}")
    opts = self.options
    t_count, height, width = frames.shape[:3]
    shot = shots.shot_ids(frames, opts.cut_threshold)
    detections, runs = self._detections(frames, shot)
    found = tracks.build(detections, shot, max_hold_frames=opts.max_hold_frames,
                         track_iou=opts.track_iou)
    chosen = select.choose(found, shot, height, width, opts.face_select)
    trk = chosen.track
    landmarks, params = self._fit(frames, trk)
    has_face = trk.status != track_lib.MISSING
    detected = np.flatnonzero(trk.status == track_lib.DETECTED)
    report = FaceReport(
        num_frames=t_count, detected_frames=len(detected),
        held_frames=int((trk.status == track_lib.HELD).sum()),
        missing_frames=int((~has_face).sum()),
        mean_score=float(trk.scores[detected].mean()) if len(detected) else float("nan"),
        tracks=int(trk.segment.max()) + 1 if len(detected) else 0,
        tracked_frames=int(chosen.tracked.sum()), detector_frames=runs,
        shots=shots.shot_spans(shot), selection=chosen.shots)
    if report.detection_rate < opts.min_face_fraction:
      report.skip_reason = (f"face found in {report.detected_frames} of {t_count} frames "
                            f"({100 * report.detection_rate:.0f}% < min_face_fraction "
                            f"{100 * opts.min_face_fraction:.0f}%)")
      return AlignedClip(None, report, trk, landmarks, params, has_face, shot)
    params = align.smooth(params, trk.segment, opts.smoothing, opts.smoothing_window,
                          opts.ema_alpha)
    crops = np.empty((t_count, opts.face_size, opts.face_size, 3), np.uint8)
    crops[:] = PAD_COLOUR
    for t in np.flatnonzero(has_face):
      crops[t] = align.warp(frames[t], params[t], opts.face_size)
    return AlignedClip(crops, report, trk, landmarks, params, has_face, shot)

  def _fit(self, frames: np.ndarray, trk: track_lib.Track) -> tuple[np.ndarray, np.ndarray]:
    """Landmarks [T, P, 2] on detected frames and the per-frame similarity [T, 4]: fitted
    where detected, the previous frame's where held, NaN where there is no face."""
    t_count = len(frames)
    landmarks = None
    params = np.full((t_count, 4), np.nan)
    for t in range(t_count):
      if trk.status[t] == track_lib.HELD and t > 0:
        params[t] = params[t - 1]
      if trk.status[t] != track_lib.DETECTED:
        continue
      points = self.detector.landmarks(frames[t], trk.boxes[t])
      if landmarks is None:
        landmarks = np.full((t_count,) + points.shape, np.nan)
      landmarks[t] = points
      five = detector_lib.alignment_points(points, self.detector.layout) + 0.5
      params[t] = align.umeyama(five, self.template)
    if landmarks is None:
      landmarks = np.full((t_count, 0, 2), np.nan)
    return landmarks, params


@functools.lru_cache(maxsize=4)
def get_aligner(options: FaceOptions) -> FaceAligner:
  """One FaceAligner per options per process (loading a shape predictor takes 0.1-1 s)."""
  return FaceAligner(options)
