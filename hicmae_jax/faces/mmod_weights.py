"""Reads dlib's MMOD face detector (`mmod_human_face_detector.dat`) without dlib or torch.

The file is dlib's serialize() of
  loss_mmod<con<1,9,9,1,1, rcon5<rcon5<rcon5<downsampler<input_rgb_image_pyramid<
      pyramid_down<6>>>>>>>>
  downsampler = relu<bn<con<32,5,5,2,2, relu<bn<con<32,5,5,2,2, relu<bn<con<16,5,5,2,2, .>>>>>>>>>
  rcon5 = relu<bn<con<45,5,5,1,1, .>>>
written by dlib's serialisation (dlib/serialize.h, dlib/dnn/*.h):
- an integer: one byte, bit 7 the sign and bits 0-3 the count n of bytes that follow, then the
  magnitude in n bytes, little-endian;
- a float scalar: two integers, mantissa and exponent (value = mantissa * 2**exponent);
- a string: its length (integer), then its bytes; a bool: one character, '1' or '0';
- a tensor: version 2, num_samples, k, nr, nc (integers), then k*nr*nc*num_samples float32
  little-endian; an alias tensor: version 1 and its 4 sizes.
Order: the loss layer (version, "loss_mmod_", its options), the versions of the 19 nested
add_layers, the input layer, then each layer from the input up: its details ("con_4",
"bn_con2", "relu_") and three bools and three (empty) tensors of training state.
The batch norms are frozen here as dlib's affine_ does when it loads a bn_con2:
scale = gamma / sqrt(running_variance + eps), shift = beta - running_mean * scale.
The pyramid's type (pyramid_down<6>) is a C++ template argument, not in the file.
"""
from __future__ import annotations

import dataclasses

import numpy as np

PYRAMID_DOWN = 6  # pyramid_down<6>: each level is 5/6 of the one before


class MmodFormatError(ValueError):
  """The file is not the MMOD network this reader knows."""


@dataclasses.dataclass(frozen=True)
class Conv:
  """One convolution, dlib's layout: weight [O, I, kh, kw] (cross-correlation), bias [O]."""
  weight: np.ndarray
  bias: np.ndarray
  stride: tuple[int, int]  # (y, x)
  padding: tuple[int, int]  # (y, x), zeros on both sides


@dataclasses.dataclass(frozen=True)
class Affine:
  """A frozen batch norm: x * scale + shift per channel, scale and shift [C]."""
  scale: np.ndarray
  shift: np.ndarray


@dataclasses.dataclass(frozen=True)
class MmodNet:
  """What detection needs from the file.

  mean_rgb [3]: subtracted from the pixels (then / 256). layers: Conv, Affine or "relu",
  from the input up. window: the detector window (width, height) in pixels of a pyramid
  level. nms: (iou, percent covered) thresholds of dlib's test_box_overlap.
  """
  mean_rgb: np.ndarray
  pyramid_padding: int
  pyramid_outer_padding: int
  layers: tuple
  window: tuple[int, int]
  nms: tuple[float, float]


class _Reader:
  """dlib's serialised values, read in order from bytes."""

  def __init__(self, data: bytes, path: str):
    self.data, self.pos, self.path = data, 0, path

  def fail(self, what: str):
    raise MmodFormatError(f"{self.path}: {what} at byte {self.pos}; not dlib's "
                          "mmod_human_face_detector.dat (reinstall face-recognition-models==0.3.0)")

  def integer(self) -> int:
    if self.pos >= len(self.data):
      self.fail("file ends early")
    head = self.data[self.pos]
    n = head & 0x0F
    if head & 0x70 or n > 8 or self.pos + 1 + n > len(self.data):
      self.fail(f"bad integer header {head:#x}")
    value = int.from_bytes(self.data[self.pos + 1:self.pos + 1 + n], "little")
    self.pos += 1 + n
    return -value if head & 0x80 else value

  def scalar(self) -> float:
    mantissa, exponent = self.integer(), self.integer()
    if abs(exponent) > 1100:
      self.fail("a non-finite float")
    return float(mantissa) * 2.0 ** exponent

  def string(self) -> str:
    n = self.integer()
    if n < 0 or self.pos + n > len(self.data):
      self.fail("bad string length")
    text = self.data[self.pos:self.pos + n]
    self.pos += n
    return text.decode("latin-1")

  def expect(self, value, read):
    got = read()
    if got != value:
      self.fail(f"expected {value!r}, found {got!r}")

  def boolean(self) -> bool:
    char = self.data[self.pos:self.pos + 1]
    if char not in (b"0", b"1"):
      self.fail("bad bool")
    self.pos += 1
    return char == b"1"

  def tensor(self) -> np.ndarray:
    """A tensor -> float32 [num_samples, k, nr, nc]."""
    self.expect(2, self.integer)
    shape = tuple(self.integer() for _ in range(4))
    count = int(np.prod(shape))
    if min(shape) < 0 or self.pos + 4 * count > len(self.data):
      self.fail(f"bad tensor shape {shape}")
    values = np.frombuffer(self.data, "<f4", count, self.pos).reshape(shape)
    self.pos += 4 * count
    return values.astype(np.float32)

  def alias_tensor(self) -> tuple[int, ...]:
    self.expect(1, self.integer)
    return tuple(self.integer() for _ in range(4))


def _loss(r: _Reader) -> tuple[tuple[int, int], tuple[float, float]]:
  """The loss layer: -> detector window (width, height), NMS thresholds."""
  r.expect(1, r.integer)
  r.expect("loss_mmod_", r.string)
  version = r.integer()
  if version != 1:
    r.fail(f"mmod_options version {version} (this reader knows version 1: one window)")
  window = (r.integer(), r.integer())
  for _ in range(3):  # loss per false alarm, per missed target, truth match IoU: training only
    r.scalar()
  nms = (r.scalar(), r.scalar())
  r.scalar(), r.scalar()  # overlaps_ignore: training only
  return window, nms


def _conv(r: _Reader) -> Conv:
  params = r.tensor().reshape(-1)
  num_filters, nr, nc, sy, sx, py, px = (r.integer() for _ in range(7))
  filters, biases = r.alias_tensor(), r.alias_tensor()
  if filters[0] != num_filters or filters[2:] != (nr, nc) or biases[1] != num_filters:
    r.fail(f"con_4 sizes disagree: {filters}, {biases}")
  for _ in range(4):  # learning-rate and weight-decay multipliers
    r.scalar()
  n = int(np.prod(filters))
  if params.size != n + num_filters:
    r.fail(f"con_4 has {params.size} parameters, expected {n + num_filters}")
  return Conv(params[:n].reshape(filters), params[n:], (sy, sx), (py, px))


def _batch_norm(r: _Reader) -> Affine:
  params = r.tensor().reshape(-1)
  gamma, beta = r.alias_tensor(), r.alias_tensor()
  for _ in range(2):  # batch means and inverse stds: training only
    r.tensor()
  running_means, running_variances = r.tensor().reshape(-1), r.tensor().reshape(-1)
  r.integer(), r.integer()  # num_updates, running_stats_window_size
  for _ in range(4):
    r.scalar()
  eps = r.scalar()
  c = int(np.prod(gamma))
  if int(np.prod(beta)) != c or params.size != 2 * c or running_means.size != c:
    r.fail(f"bn_con2 sizes disagree: {params.size} parameters, {c} channels")
  scale = params[:c] / np.sqrt(running_variances + np.float32(eps))
  return Affine(scale.astype(np.float32), (params[c:] - running_means * scale).astype(np.float32))


_LAYER_READERS = {"con_4": _conv, "bn_con2": _batch_norm, "relu_": lambda r: "relu"}


def _layer(r: _Reader):
  name = r.string()
  if name not in _LAYER_READERS:
    r.fail(f"layer {name!r} (this reader knows {sorted(_LAYER_READERS)})")
  layer = _LAYER_READERS[name](r)
  for _ in range(3):  # set-up / gradient flags
    r.boolean()
  for _ in range(3):  # training buffers, saved empty
    r.tensor()
  return layer


def _kind(layer) -> str:
  return {Conv: "con", Affine: "bn"}.get(type(layer), layer)


# The layers from the input up, as the file must hold them.
_EXPECTED = ("con", "bn", "relu") * 6 + ("con",)


def read(path: str) -> MmodNet:
  """Parses the MMOD .dat file at path; MmodFormatError (one line) when it is not that net."""
  with open(path, "rb") as f:
    r = _Reader(f.read(), path)
  window, nms = _loss(r)
  for _ in range(len(_EXPECTED) - 1):
    r.expect(2, r.integer)
  r.expect(3, r.integer)
  name = r.string()
  if name not in ("input_rgb_image_pyramid", "input_rgb_image_pyramid2"):
    r.fail(f"input layer {name!r}")
  mean = np.array([r.scalar() for _ in range(3)], np.float32)
  padding = (r.integer(), r.integer()) if name.endswith("2") else (10, 11)
  layers = [_layer(r)]
  r.expect(1, r.integer)  # the input's sample_expansion_factor (add_layer version 3)
  layers += [_layer(r) for _ in _EXPECTED[1:]]
  kinds = tuple(_kind(x) for x in layers)
  if kinds != _EXPECTED:
    r.fail(f"layers {kinds}, expected {_EXPECTED}")
  if r.pos != len(r.data):
    r.fail(f"{len(r.data) - r.pos} bytes left over")
  return MmodNet(mean, padding[0], padding[1], tuple(layers), window, nms)
