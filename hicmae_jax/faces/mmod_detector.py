"""`--face=dlib_cnn`: dlib's MMOD CNN face detector (the weights of the installed
`mmod_human_face_detector.dat`) run by JAX (mmod_jax.py), with dlib's shape predictors for the
landmarks. Same boxes and confidences as `--face=dlib_cnn_reference` (tests/test_mmod_jax.py)
at ~1/8 of its CPU time on this machine at 640x360 (README "Throughput per detector").

Frames are compiled for once per size (the first call at a size takes a few seconds, then is
cached). So that the key-frame schedule's region checks (crops of many sizes) share a few
compiled sizes, a frame whose side is not a multiple of SIZE_STEP is padded at the bottom and
right to one, with the network's mean colour (zero after its normalisation, as the tiled
pyramid's own padding). 640x360, 480x360, 1280x720 and 1920x1080 are multiples already, so they
are detected exactly as dlib does.

upsample n > 0 (faces under ~80 px) enlarges the (padded) frame n times with dlib's
pyramid_up, as dlib's Python API does (mmod_jax.pyramid_up; 2H+1 x 2W+2 each time).
"""
from __future__ import annotations

import numpy as np

from hicmae_jax.faces import detector as detector_lib, dlib_detector, mmod_jax

MODEL_FILE = "mmod_human_face_detector.dat"
SIZE_STEP = 40  # px; divides 360, 480, 640, 720, 1080, 1280, 1920


class MmodJaxDetector(dlib_detector.DlibDetector):
  """The MMOD network in JAX (scores: dlib's detection confidence) and a dlib shape
  predictor."""

  def __init__(self, landmarks: int = 5, upsample: int = 0):
    if not 0 <= upsample <= 2:
      raise ValueError(f"--face=dlib_cnn upsample must be 0, 1 or 2, got {upsample}")
    self.net = mmod_jax.load(dlib_detector.package_file(MODEL_FILE))
    super().__init__(landmarks, upsample, detector=self.net)

  def detect(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """RGB uint8 [H, W, 3] -> (boxes [K, 4] as x0, y0, x1, y1, confidences [K])."""
    (boxes, scores), = self.detect_many(np.asarray(frame)[None])
    return boxes, scores

  def detect_many(self, frames: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """RGB uint8 [B, H, W, 3] (one size) -> per frame (boxes [K, 4], confidences [K]), in one
    batched call."""
    found = self.net.detect(np.ascontiguousarray(frames), upsample=self.upsample,
                            step=SIZE_STEP)
    return [(b.astype(np.float64), s) for b, s in found]


detector_lib.register("dlib_cnn", MmodJaxDetector)
