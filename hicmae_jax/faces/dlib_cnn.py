"""dlib's CNN face detector (MMOD, `mmod_human_face_detector.dat`, shipped in the installed
face-recognition-models package; nothing is downloaded) with the same shape predictors as the
HOG back end.

It finds faces the HOG detector misses (turned, dim, blurred, partly covered), from ~80 px
at upsample 0, at ~2 s per 640x360 frame on one core: the face step runs it on key frames
and follows faces between them (keyframes.py), not on every frame.
"""
from __future__ import annotations

import functools

import numpy as np

from hicmae_jax.faces import detector as detector_lib, dlib_detector

MODEL_FILE = "mmod_human_face_detector.dat"


@functools.lru_cache(maxsize=None)
def _cnn_detector():
  return dlib_detector.import_dlib().cnn_face_detection_model_v1(
      dlib_detector.package_file(MODEL_FILE))


class DlibCnnDetector(dlib_detector.DlibDetector):
  """dlib's MMOD CNN face detector (scores: the detection confidence, ~0-1.5) and a shape
  predictor."""

  def __init__(self, landmarks: int = 5, upsample: int = 0):
    super().__init__(landmarks, upsample, detector=_cnn_detector())

  def detect(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """RGB uint8 [H, W, 3] -> (boxes [K, 4] as x0, y0, x1, y1, confidences [K])."""
    found = self._detector(np.ascontiguousarray(frame), self.upsample)
    boxes = np.array([[d.rect.left(), d.rect.top(), d.rect.right(), d.rect.bottom()]
                      for d in found], np.float64).reshape(-1, 4)
    return boxes, np.array([d.confidence for d in found], np.float64).reshape(-1)


detector_lib.register("dlib_cnn_reference", DlibCnnDetector)
