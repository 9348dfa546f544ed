"""Similarity alignment: our canonical face template, the least-squares (Umeyama) fit of a
rotation + uniform scale + translation onto it, temporal smoothing, and the bilinear warp.

A similarity transform is kept as its parameters p = (a, b, tx, ty), the matrix
[[a, -b, tx], [b, a, ty]] (scale sqrt(a^2 + b^2), angle atan2(b, a)); it maps frame pixels to
crop pixels. The set of such matrices is closed under averaging, so smoothing p over time
gives a similarity again. Coordinates here are continuous: the centre of pixel (i, j) is
(j + 0.5, i + 0.5), PIL's convention; detector points (pixel centres at integers) get + 0.5.
"""
from __future__ import annotations

import numpy as np

# The template: the 5 alignment points (order of detector.ALIGNMENT_POINTS) of an average
# frontal face, in units of the inter-ocular distance (eye centre to eye centre), origin at
# the crop centre, y down. Eyes level, inner corners 0.3 and outer corners 0.7 from the
# midline, base of the nose 0.72 below the eye line. The eye line sits 0.575 above the centre:
# the centroid of a whole face's landmarks (brows to chin) is that far below the eyes, so the
# crop centres the face, not the eyes (as OpenFace centres its mean shape).
_EYE_LINE = -0.575
TEMPLATE = np.array([
    [0.70, _EYE_LINE],           # outer corner, eye on the image's right
    [0.30, _EYE_LINE],           # inner corner, eye on the image's right
    [-0.70, _EYE_LINE],          # outer corner, eye on the image's left
    [-0.30, _EYE_LINE],          # inner corner, eye on the image's left
    [0.0, _EYE_LINE + 0.72],     # base of the nose
])
# Crop widths per inter-ocular distance at face_scale 1: at OpenFace's default scale of 0.7
# the eyes are 0.4 of the crop apart (eye line at 0.27 of the height, chin near the bottom).
IOD_AT_SCALE_1 = 0.4 / 0.7


def template_points(face_size: int, face_scale: float) -> np.ndarray:
  """The template in continuous crop pixels [5, 2] for a face_size crop."""
  return face_size * (0.5 + face_scale * IOD_AT_SCALE_1 * TEMPLATE)


def umeyama(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
  """Least-squares similarity (Umeyama 1991) mapping src [N, 2] onto dst [N, 2], N >= 2.

  Minimises sum |dst_i - (c R src_i + t)|^2 over rotations R (no reflection), scale c > 0
  and translation t. Returns the parameters p = (a, b, tx, ty) [4] (module docstring).
  """
  src = np.asarray(src, np.float64)
  dst = np.asarray(dst, np.float64)
  if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or src.shape[0] < 2:
    raise ValueError(f"umeyama needs two [N, 2] point sets with N >= 2, got {src.shape} and "
                     f"{dst.shape}")
  mu_s, mu_d = src.mean(0), dst.mean(0)
  sc, dc = src - mu_s, dst - mu_d
  var_s = (sc * sc).sum() / len(src)
  if var_s <= 1e-12:
    raise ValueError("umeyama: the source points coincide (no scale or rotation defined)")
  cov = dc.T @ sc / len(src)
  u, d, vt = np.linalg.svd(cov)
  s = np.ones(2)
  if np.linalg.det(u) * np.linalg.det(vt) < 0:  # the best orthogonal map would reflect
    s[1] = -1.0
  rot = u @ np.diag(s) @ vt
  scale = (d * s).sum() / var_s
  t = mu_d - scale * rot @ mu_s
  return np.array([scale * rot[0, 0], scale * rot[1, 0], t[0], t[1]])


def to_matrix(p: np.ndarray) -> np.ndarray:
  """Parameters (a, b, tx, ty) [..., 4] -> matrices [..., 2, 3]."""
  a, b, tx, ty = np.moveaxis(np.asarray(p, np.float64), -1, 0)
  return np.stack([np.stack([a, -b, tx], -1), np.stack([b, a, ty], -1)], -2)


def apply(p: np.ndarray, points: np.ndarray) -> np.ndarray:
  """Maps points [N, 2] with the similarity p [4]."""
  m = to_matrix(p)
  return np.asarray(points, np.float64) @ m[:, :2].T + m[:, 2]


def invert(p: np.ndarray) -> np.ndarray:
  """The inverse similarity's parameters [4]."""
  a, b, tx, ty = np.asarray(p, np.float64)
  n = a * a + b * b
  ia, ib = a / n, -b / n
  return np.array([ia, ib, -(ia * tx - ib * ty), -(ib * tx + ia * ty)])


def smooth(params: np.ndarray, segments: np.ndarray, method: str, window: int = 5,
           alpha: float = 0.5) -> np.ndarray:
  """Temporal smoothing of per-frame parameters [T, 4] within runs of equal `segments` [T]
  (a new track is never blended with the previous one).

  "centred": mean over the `window` frames centred on each frame (odd window; shorter at
  the ends of a run). "ema": y_t = alpha x_t + (1 - alpha) y_{t-1} forwards, then the same
  backwards over that result, which cancels the lag. "none": unchanged.
  """
  params = np.asarray(params, np.float64)
  if method == "none" or len(params) < 2:
    return params.copy()
  out = np.empty_like(params)
  bounds = np.flatnonzero(np.diff(segments) != 0) + 1
  for run in np.split(np.arange(len(params)), bounds):
    x = params[run]
    if method == "centred":
      half = window // 2
      csum = np.concatenate([np.zeros((1, 4)), np.cumsum(x, 0)])
      lo = np.maximum(np.arange(len(x)) - half, 0)
      hi = np.minimum(np.arange(len(x)) + half + 1, len(x))
      out[run] = (csum[hi] - csum[lo]) / (hi - lo)[:, None]
    elif method == "ema":
      y = x.copy()
      for i in range(1, len(y)):
        y[i] = alpha * y[i] + (1 - alpha) * y[i - 1]
      for i in range(len(y) - 2, -1, -1):
        y[i] = alpha * y[i] + (1 - alpha) * y[i + 1]
      out[run] = y
    else:
      raise ValueError(f"unknown smoothing {method!r}; allowed: centred, ema, none")
  return out


def warp(frame: np.ndarray, p: np.ndarray, face_size: int) -> np.ndarray:
  """Bilinear warp of an RGB uint8 frame [H, W, 3] by the frame->crop similarity p into a
  crop [face_size, face_size, 3] uint8; pixels from outside the frame are black."""
  from PIL import Image
  inv = to_matrix(invert(p))  # PIL asks, per crop pixel, where to sample the frame
  img = Image.fromarray(np.ascontiguousarray(frame)).transform(
      (face_size, face_size), Image.Transform.AFFINE, tuple(inv.reshape(-1)),
      resample=Image.Resampling.BILINEAR)
  return np.asarray(img)
