"""dlib back end: the HOG frontal face detector built into dlib and the shape predictors shipped
by the `face-recognition-models` package. Everything is on disk after pip install; nothing is
downloaded.

Models (face_recognition_models/models/): `shape_predictor_5_face_landmarks.dat` (default;
dlib's own 5-point model, eye corners and base of the nose) and
`shape_predictor_68_face_landmarks.dat` (iBUG 300-W layout; trained on data whose licence
forbids commercial use).
"""
from __future__ import annotations

import functools
import importlib.util
import os

import numpy as np

from hicmae_jax.faces import detector as detector_lib

_MODEL_FILES = {5: ("shape_predictor_5_face_landmarks.dat", "dlib5"),
                68: ("shape_predictor_68_face_landmarks.dat", "ibug68")}


def package_file(name: str) -> str:
  """Path of a model file of the face-recognition-models package; the package is located, not
  imported (its __init__ imports pkg_resources, which new setuptools no longer ship)."""
  spec = importlib.util.find_spec("face_recognition_models")
  if spec is None or not spec.submodule_search_locations:
    raise ImportError("the dlib face step needs the face-recognition-models package: "
                      "pip install face-recognition-models==0.3.0")
  path = os.path.join(list(spec.submodule_search_locations)[0], "models", name)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{path} is missing: reinstall face-recognition-models==0.3.0")
  return path


def model_path(landmarks: int) -> str:
  """Path of the shape predictor file."""
  if landmarks not in _MODEL_FILES:
    raise ValueError(f"dlib landmarks must be one of {sorted(_MODEL_FILES)}, got {landmarks}")
  return package_file(_MODEL_FILES[landmarks][0])


def import_dlib():
  try:
    import dlib
  except ImportError:
    raise ImportError("the dlib face step needs dlib: pip install dlib-bin==20.0.1.post1") from None
  return dlib


# Loaded once per process and shared: building the HOG detector takes ~1 s, a shape predictor
# 0.1-1 s, and neither changes when used.
@functools.lru_cache(maxsize=None)
def _hog_detector():
  return import_dlib().get_frontal_face_detector()


@functools.lru_cache(maxsize=None)
def _shape_predictor(landmarks: int):
  return import_dlib().shape_predictor(model_path(landmarks))


class DlibDetector:
  """dlib's HOG + linear SVM frontal face detector and a shape predictor."""

  def __init__(self, landmarks: int = 5, upsample: int = 0, detector=None):
    self._dlib = import_dlib()
    self._predictor = _shape_predictor(landmarks)
    self.layout = _MODEL_FILES[landmarks][1]
    self._detector = detector if detector is not None else _hog_detector()
    self.upsample = upsample

  def detect(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """RGB uint8 [H, W, 3] -> (boxes [K, 4] as x0, y0, x1, y1, SVM scores [K])."""
    # adjust_threshold 0: dlib's own operating point; callers may raise it with min_score.
    rects, scores, _ = self._detector.run(np.ascontiguousarray(frame), self.upsample, 0.0)
    boxes = np.array([[r.left(), r.top(), r.right(), r.bottom()] for r in rects],
                     np.float64).reshape(-1, 4)
    return boxes, np.asarray(scores, np.float64).reshape(-1)

  def landmarks(self, frame: np.ndarray, box: np.ndarray) -> np.ndarray:
    """RGB uint8 [H, W, 3], box [4] -> points [P, 2] (x, y), P = 5 or 68."""
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    shape = self._predictor(np.ascontiguousarray(frame), self._dlib.rectangle(x0, y0, x1, y1))
    return np.array([[p.x, p.y] for p in shape.parts()], np.float64)


detector_lib.register("dlib", DlibDetector)
