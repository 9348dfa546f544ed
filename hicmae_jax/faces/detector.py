"""The detector interface the face step uses, and the registry that builds one by name.

A detector finds face boxes in a frame and fits landmarks inside a box. Another back end plugs
in by implementing `FaceDetector`, registering a factory here, and adding its name to
`faces/options.DETECTORS` (the option check and the `--face` choices are that tuple); its
landmark layout must be in ALIGNMENT_POINTS (or it returns the 5 alignment points itself,
layout "dlib5").

Coordinates: pixels, x to the right and y down, (0, 0) the centre of the top-left pixel.
Boxes are [x0, y0, x1, y1].
"""
from __future__ import annotations

import importlib
from typing import Callable, Protocol, runtime_checkable

import numpy as np

# Indices of the 5 alignment points in each landmark layout, in the order of align.TEMPLATE:
# outer and inner corner of the eye on the image's right, outer and inner corner of the eye on
# the image's left, base of the nose.
ALIGNMENT_POINTS = {
    "dlib5": (0, 1, 2, 3, 4),      # dlib's 5-point model
    "ibug68": (45, 42, 36, 39, 33),  # the iBUG 300-W 68-point layout
}


@runtime_checkable
class FaceDetector(Protocol):
  """Face boxes and landmarks of one RGB frame."""

  layout: str  # a key of ALIGNMENT_POINTS

  def detect(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """RGB uint8 [H, W, 3] -> (boxes float [K, 4], scores float [K]); K may be 0."""

  def landmarks(self, frame: np.ndarray, box: np.ndarray) -> np.ndarray:
    """RGB uint8 [H, W, 3] and one box [4] -> landmark points float [P, 2] (x, y)."""


_FACTORIES: dict[str, Callable[..., FaceDetector]] = {}
# The back ends shipped here, imported when first asked for (dlib loads in ~1 s).
_BUILT_IN = {"dlib": "hicmae_jax.faces.dlib_detector",
             "dlib_cnn": "hicmae_jax.faces.mmod_detector",
             "dlib_cnn_reference": "hicmae_jax.faces.dlib_cnn"}


def register(name: str, factory: Callable[..., FaceDetector]) -> None:
  """Makes `make_detector(name, ...)` call factory(landmarks=..., upsample=...)."""
  _FACTORIES[name] = factory


def make_detector(name: str, *, landmarks: int = 5, upsample: int = 0) -> FaceDetector:
  """Builds a registered detector; ValueError names the known ones."""
  if name in _BUILT_IN and name not in _FACTORIES:
    importlib.import_module(_BUILT_IN[name])  # registers itself on import
  if name not in _FACTORIES:
    raise ValueError(f"unknown face detector {name!r}; known: "
                     f"{sorted(set(_FACTORIES) | set(_BUILT_IN))}")
  detector = _FACTORIES[name](landmarks=landmarks, upsample=upsample)
  if detector.layout not in ALIGNMENT_POINTS:
    raise ValueError(f"detector {name!r} gives landmark layout {detector.layout!r}; "
                     f"alignment knows {sorted(ALIGNMENT_POINTS)}")
  return detector


def alignment_points(points: np.ndarray, layout: str) -> np.ndarray:
  """A detector's landmarks [P, 2] -> the 5 alignment points [5, 2] (align.TEMPLATE order)."""
  points = np.asarray(points, np.float64)
  index = ALIGNMENT_POINTS[layout]
  if points.shape[0] <= max(index):
    raise ValueError(f"layout {layout!r} needs {max(index) + 1} landmarks, got "
                     f"{points.shape[0]}")
  return points[list(index)]
