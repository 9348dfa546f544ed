"""dlib's MMOD CNN face detector run by JAX (XLA:CPU here; the same code on a GPU or TPU),
with the weights read from dlib's file by mmod_weights (no dlib, no torch).

It does what dlib's `cnn_face_detection_model_v1(img, 0)` does (dlib/dnn/input.h,
loss.h, image_transforms/image_pyramid.h):
1. the input: the frame, (pixel - mean colour) / 256, and its pyramid_down<6> levels (each 5/6
   of the one before, bilinear, down to 5 rows) tiled into one image, 10 px of zeros between
   levels and 11 around (`layout`);
2. the network (`scores`): 7 convolutions (the frozen batch norms folded into them), ReLUs, one
   score per position of the 1/8-size output map; jitted per frame size and batch;
3. the detection (`detections`, on the host: a handful of positions): every score above
   adjust_threshold is an 80x80 window centred on its position in the tiled image, mapped to
   the level its centre lies in and up to the frame; sorted by score; greedy non-max
   suppression with dlib's test_box_overlap (intersection over the bounding box of both > 0.338,
   or one box covered completely).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from hicmae_jax.faces import mmod_weights

_MIN_LEVEL_ROWS = 5  # dlib stops the pyramid at levels under 5 rows


@functools.lru_cache(maxsize=None)
def layout(height: int, width: int, padding: int = 10, outer: int = 11,
           down: int = mmod_weights.PYRAMID_DOWN) -> tuple[tuple, tuple[int, int]]:
  """dlib's compute_tiled_image_pyramid_details: -> the levels' rects ((left, top, right,
  bottom), inclusive) in the tiled image, and its size (rows, cols)."""
  sizes = [(width, height)]
  nr, nc = height, width
  while True:
    nr, nc = int(np.floor((down - 1) / down * nr)), int(np.floor((down - 1) / down * nc))
    if nr * nc == 0 or nr < _MIN_LEVEL_ROWS:
      break
    sizes.append((nc, nr))
  total = sum(h + padding for _, h in sizes) - 2 * padding
  height_used, prev_width = 0, 0
  for w, h in sizes:  # the first column, until the rest fits beside it
    if w <= sizes[0][0] - prev_width - padding and \
        (height_used - sizes[0][1]) * 2 >= total - sizes[0][1]:
      break
    height_used += h + padding
    prev_width = w
  height_used -= padding
  rows, cols = height_used + 2 * outer, sizes[0][0] + 2 * outer
  rects, y, i = [], outer, 0
  while y < height_used + outer and i < len(sizes):
    w, h = sizes[i]
    rects.append((outer, y, outer + w - 1, y + h - 1))
    y += h + padding
    i += 1
  y -= padding
  while i < len(sizes):  # the second column, bottom up, right-aligned
    w, h = sizes[i]
    x1, y1 = outer + sizes[0][0] - 1, y - 1
    rect = (x1 - (w - 1), y1 - (h - 1), x1, y1)
    first = rects[0]
    if rect[0] <= first[2] and rect[2] >= first[0] and rect[1] <= first[3] and rect[3] >= first[1]:
      break
    rects.append(rect)
    y -= h + padding
    i += 1
  return tuple(rects), (rows, cols)


def _resize_plan(src_n: int, dst_n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """dlib's bilinear resize along one axis: -> lower index, upper index, fraction [dst_n]."""
  scale = (src_n - 1) / max(dst_n - 1, 1)
  pos = np.arange(dst_n) * scale
  low = np.floor(pos).astype(np.int32)
  return low, np.minimum(low + 1, src_n - 1), (pos - low).astype(np.float32)


def _resize(img: jnp.ndarray, rows: int, cols: int) -> jnp.ndarray:
  """[B, h, w, C] -> [B, rows, cols, C], dlib's bilinear resize (its corners' weights
  (1-fy)(1-fx), ... applied rows first: equal up to float rounding, ~1e-7, and ~1/3 cheaper)."""
  top, bottom, fy = _resize_plan(img.shape[1], rows)
  left, right, fx = _resize_plan(img.shape[2], cols)
  fy, fx = fy[None, :, None, None], fx[None, None, :, None]
  by_rows = (1 - fy) * img[:, top] + fy * img[:, bottom]
  return (1 - fx) * by_rows[:, :, left] + fx * by_rows[:, :, right]


def tiled_input(frames: jnp.ndarray, mean_rgb: jnp.ndarray, rects: tuple,
                shape: tuple[int, int]) -> jnp.ndarray:
  """uint8 [B, H, W, 3] RGB -> the tiled pyramid float32 [B, rows, cols, 3]."""
  canvas = jnp.zeros((frames.shape[0],) + tuple(shape) + (3,), jnp.float32)
  level = (frames.astype(jnp.float32) - mean_rgb) / 256.0
  for i, (x0, y0, x1, y1) in enumerate(rects):
    if i:
      level = _resize(level, y1 - y0 + 1, x1 - x0 + 1)
    canvas = canvas.at[:, y0:y1 + 1, x0:x1 + 1].set(level)
  return canvas


def fold(net: mmod_weights.MmodNet) -> list[dict]:
  """The network as convolutions with the batch norms folded in: [{w [kh, kw, I, O] (HWIO),
  b [O], stride, padding, relu}]."""
  convs = []
  for layer in net.layers:
    if isinstance(layer, mmod_weights.Conv):
      convs.append({"w": layer.weight.transpose(2, 3, 1, 0).astype(np.float32),
                    "b": layer.bias.astype(np.float32), "stride": layer.stride,
                    "padding": layer.padding, "relu": False})
    elif isinstance(layer, mmod_weights.Affine):
      convs[-1]["w"] = convs[-1]["w"] * layer.scale
      convs[-1]["b"] = convs[-1]["b"] * layer.scale + layer.shift
    else:
      convs[-1]["relu"] = True
  return convs


def _single_filter_conv(x: jnp.ndarray, w: jnp.ndarray, padding: tuple[int, int]) -> jnp.ndarray:
  """A stride-1 convolution with one output channel, w [kh, kw, C, 1]: one matmul to the
  kh*kw taps, then the shifted taps summed (XLA:CPU runs the direct form ~4x slower)."""
  kh, kw = w.shape[:2]
  (py, px), (h, wd) = padding, x.shape[1:3]
  taps = jnp.einsum("bhwc,ct->bhwt", x, w[..., 0].reshape(kh * kw, -1).T)
  taps = jnp.pad(taps, ((0, 0), (py, py), (px, px), (0, 0)))
  oh, ow = h + 2 * py - kh + 1, wd + 2 * px - kw + 1
  out = 0.0
  for dy in range(kh):
    for dx in range(kw):
      out = out + taps[:, dy:dy + oh, dx:dx + ow, dy * kw + dx]
  return out[..., None]


def _network(x: jnp.ndarray, weights: list, convs: list[dict]) -> jnp.ndarray:
  """[B, rows, cols, 3] -> scores [B, rows', cols']."""
  for (w, b), conv in zip(weights, convs):
    py, px = conv["padding"]
    if w.shape[-1] == 1 and conv["stride"] == (1, 1):
      x = _single_filter_conv(x, w, (py, px)) + b
    else:
      x = jax.lax.conv_general_dilated(x, w, conv["stride"], ((py, py), (px, px)),
                                       dimension_numbers=("NHWC", "HWIO", "NHWC")) + b
    if conv["relu"]:
      x = jax.nn.relu(x)
  return x[..., 0]


class MmodJax:
  """The network of one .dat file, compiled once per frame size and batch (jit's cache)."""

  def __init__(self, net: mmod_weights.MmodNet):
    self.net = net
    self.convs = fold(net)
    self.weights = [(jnp.asarray(c["w"]), jnp.asarray(c["b"])) for c in self.convs]
    self.mean = jnp.asarray(net.mean_rgb)
    self._jitted = {}

  def _fn(self, height: int, width: int):
    if (height, width) not in self._jitted:
      rects, shape = layout(height, width, self.net.pyramid_padding,
                            self.net.pyramid_outer_padding)
      convs = [{k: v for k, v in c.items() if k not in ("w", "b")} for c in self.convs]

      def run(frames, mean, weights):
        return _network(tiled_input(frames, mean, rects, shape), weights, convs)
      self._jitted[(height, width)] = jax.jit(run)
    return self._jitted[(height, width)]

  def scores(self, frames: np.ndarray) -> np.ndarray:
    """uint8 RGB [B, H, W, 3] -> score maps float32 [B, rows', cols'] of the tiled image."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
      raise ValueError(f"MMOD frames must be uint8 RGB [B, H, W, 3], got {frames.dtype} "
                       f"{frames.shape}")
    return np.asarray(self._fn(*frames.shape[1:3])(frames, self.mean, self.weights))

  def output_to_input(self) -> tuple[int, int, int, int]:
    """(ax, bx, ay, by): a score at (col c, row r) is centred at (ax c + bx, ay r + by) in the
    tiled image (dlib's map_output_to_input through the convolutions)."""
    ax, bx, ay, by = 1, 0, 1, 0
    for c in reversed(self.convs):
      (sy, sx), (py, px) = c["stride"], c["padding"]
      kh, kw = c["w"].shape[:2]
      ax, bx = ax * sx, bx * sx - px + kw // 2
      ay, by = ay * sy, by * sy - py + kh // 2
    return ax, bx, ay, by

  def detect(self, frames: np.ndarray, adjust_threshold: float = 0.0, upsample: int = 0,
             step: int = 1) -> list[tuple[np.ndarray, np.ndarray]]:
    """uint8 RGB [B, H, W, 3] -> per frame (boxes [K, 4] int as (left, top, right, bottom),
    confidences [K]), as dlib's cnn_face_detection_model_v1(frame, upsample): the frame
    enlarged by dlib's pyramid_up upsample times, the boxes brought back by its rect_down.
    step > 1: a frame whose sides are not multiples of step is first padded to them
    (pad_to_step), which changes the pyramid: its detections are near dlib's, not equal."""
    frames = pad_to_step(np.asarray(frames), self.net.mean_rgb, step)
    for _ in range(upsample):
      frames = np.stack([pyramid_up(f) for f in frames])
    maps = self.scores(frames)
    rects, _ = layout(frames.shape[1], frames.shape[2], self.net.pyramid_padding,
                      self.net.pyramid_outer_padding)
    found = [detections(m, rects, self.output_to_input(), self.net.window, self.net.nms,
                        adjust_threshold) for m in maps]
    return [(rect_down(boxes, upsample), scores) for boxes, scores in found]


def pad_to_step(frames: np.ndarray, mean_rgb: np.ndarray, step: int) -> np.ndarray:
  """uint8 [B, H, W, 3] -> [B, H', W', 3] with H', W' the next multiples of step, padded at
  the bottom and right with the mean colour (rounded; zero after the normalisation)."""
  b, h, w, _ = frames.shape
  hp, wp = -(-h // step) * step, -(-w // step) * step
  if (hp, wp) == (h, w):
    return frames
  out = np.empty((b, hp, wp, 3), np.uint8)
  out[:] = np.round(mean_rgb).astype(np.uint8)
  out[:, :h, :w] = frames
  return out


# pyramid_down<2>'s point_down(p) = p / 2 - (1.25, 0.75) and point_up(p) = (p + (1.25, 0.75)) * 2.
_DOWN2_OFFSET = (1.25, 0.75)


def pyramid_up(frame: np.ndarray) -> np.ndarray:
  """dlib's pyramid_up(img, pyramid_down<2>) of an RGB uint8 frame [H, W, 3] -> [2H+1, 2W+2, 3]:
  the size of rect_up(the frame's rect), filled by dlib's bilinear resize (corners onto
  corners), each value truncated to uint8 as dlib's assign_pixel does."""
  h, w = frame.shape[:2]
  out_w = int(np.floor((w - 1 + _DOWN2_OFFSET[0]) * 2 + 0.5)) + 1
  out_h = int(np.floor((h - 1 + _DOWN2_OFFSET[1]) * 2 + 0.5)) + 1
  top, bottom, fy = _resize_plan(h, out_h)
  left, right, fx = _resize_plan(w, out_w)
  fy, fx = fy.astype(np.float64)[:, None, None], fx.astype(np.float64)[None, :, None]
  img = frame.astype(np.float64)
  upper, lower = img[top], img[bottom]
  value = (1 - fy) * ((1 - fx) * upper[:, left] + fx * upper[:, right]) + \
      fy * ((1 - fx) * lower[:, left] + fx * lower[:, right])
  return np.clip(np.floor(value), 0, 255).astype(np.uint8)


def rect_down(boxes: np.ndarray, levels: int) -> np.ndarray:
  """Boxes int [K, 4] in a frame enlarged `levels` times by pyramid_up -> in the frame (dlib's
  pyramid_down<2>::rect_down, rounded to the nearest pixel)."""
  if not levels:
    return boxes
  v = boxes.astype(np.float64)
  offset = np.array(_DOWN2_OFFSET * 2)
  for _ in range(levels):
    v = v / 2 - offset
  return np.floor(v + 0.5).astype(np.int64)


def _nearest_rect(rects: tuple, x: float, y: float) -> int:
  """dlib's nearest_rect: the first rect holding the point, else the nearest one."""
  best, best_dist = 0, np.inf
  for i, (x0, y0, x1, y1) in enumerate(rects):
    if x0 <= x <= x1 and y0 <= y <= y1:
      return i
    dist = np.hypot(x - min(max(x, x0), x1), y - min(max(y, y0), y1))
    if dist < best_dist:
      best, best_dist = i, dist
  return best


def _point_up(v: float, levels: int, down: int = mmod_weights.PYRAMID_DOWN) -> float:
  for _ in range(levels):  # pyramid_down<N>::point_up, one level at a time
    v = v * (down / (down - 1.0)) + 0.3
  return v


def overlaps(a: np.ndarray, b: np.ndarray, iou: float, covered: float) -> bool:
  """dlib's test_box_overlap on integer rects (inclusive: width = right - left + 1)."""
  iw = min(a[2], b[2]) - max(a[0], b[0]) + 1
  ih = min(a[3], b[3]) - max(a[1], b[1]) + 1
  if iw <= 0 or ih <= 0:
    return False
  inner = float(iw * ih)
  outer = (max(a[2], b[2]) - min(a[0], b[0]) + 1) * (max(a[3], b[3]) - min(a[1], b[1]) + 1)
  area_a = (a[2] - a[0] + 1) * (a[3] - a[1] + 1)
  area_b = (b[2] - b[0] + 1) * (b[3] - b[1] + 1)
  return inner / outer > iou or inner / area_a > covered or inner / area_b > covered


def detections(scores: np.ndarray, rects: tuple, mapping: tuple, window: tuple[int, int],
               nms: tuple[float, float], adjust_threshold: float = 0.0
               ) -> tuple[np.ndarray, np.ndarray]:
  """One score map [rows', cols'] -> (boxes int [K, 4] (left, top, right, bottom) in the frame,
  confidences [K]), dlib's loss_mmod_::to_label (module docstring)."""
  ax, bx, ay, by = mapping
  rows, cols = np.nonzero(scores > adjust_threshold)
  found = []
  for r, c in zip(rows, cols):
    x, y = ax * c + bx, ay * r + by
    level = _nearest_rect(rects, x, y)
    ox, oy = rects[level][:2]
    half_w, half_h = (window[0] - 1) / 2, (window[1] - 1) / 2
    box = [_point_up(x - half_w - ox, level), _point_up(y - half_h - oy, level),
           _point_up(x + half_w - ox, level), _point_up(y + half_h - oy, level)]
    found.append((float(scores[r, c]), np.floor(np.array(box) + 0.5).astype(np.int64)))
  found.sort(key=lambda d: -d[0])
  kept = []
  for score, box in found:
    if not any(overlaps(k, box, *nms) for _, k in kept):
      kept.append((score, box))
  boxes = np.array([k for _, k in kept], np.int64).reshape(-1, 4)
  return boxes, np.array([s for s, _ in kept], np.float64)


@functools.lru_cache(maxsize=None)
def load(path: str) -> MmodJax:
  """The detector of the .dat file at path (read once per process)."""
  return MmodJax(mmod_weights.read(path))
