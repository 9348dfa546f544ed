"""clu metric writers without TensorFlow (STACK_NOTES section 4, option A).

`clu.metric_writers/__init__.py` imports its TensorFlow SummaryWriter unconditionally, so
`from clu import metric_writers` (and `periodic_actions`, which imports it) fails when TF is
not installed. Importing this module first registers a module `clu.metric_writers.summary_writer`
in `sys.modules` whose `SummaryWriter` writes TensorBoard event files with tensorboardX; clu then
imports that instead of its TF one and everything else in clu works as usual:

  from hicmae_jax import writers           # before any clu.metric_writers / periodic_actions
  w = writers.create_writer(workdir)       # AsyncMultiWriter[LoggingWriter, SummaryWriter]
  from clu import periodic_actions

When TensorFlow is importable nothing is replaced (clu's own writer is used).

A logdir in a bucket (gs://...) works as is: tensorboardX writes gs:// event files itself, with
google-cloud-storage (a gcsfs requirement). Its GCS record writer keeps the file in memory and
uploads it whole at each flush (clu flushes at summaries and at the end), so the bucket holds
every value up to the last flush.
`read_event_scalars(logdir)` reads scalars back without TensorBoard (tests, tools).
"""
from __future__ import annotations

import glob
import importlib.util
import os
import struct
import sys
import time
import types
from typing import Any, Mapping, Optional

import jax
import numpy as np
from absl import logging
from etils import epath
from tensorboardX import summary as tbx
from tensorboardX.event_file_writer import EventsWriter
from tensorboardX.proto import event_pb2, summary_pb2, tensor_pb2, tensor_shape_pb2
from tensorboardX.record_writer import masked_crc32c

from hicmae_jax import paths

_SHIM_NAME = "clu.metric_writers.summary_writer"


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
  """{'optim': {'lr': 1}} -> {'optim.lr': 1} (clu flattens nested hparams the same way)."""
  out = {}
  for k, v in d.items():
    key = f"{prefix}{k}"
    if isinstance(v, Mapping):
      out.update(_flatten(v, key + "."))
    else:
      out[key] = v
  return out


def _hparam_value(v):
  # tensorboardX's hparams plugin only knows str / bool / number; keep those, stringify the
  # rest (tuples, None, enums) so every hyper-parameter is visible.
  if isinstance(v, (bool, str)):
    return v
  if isinstance(v, (int, float, np.integer, np.floating)):
    return float(v)
  return str(v)


class TensorboardXSummaryWriter:
  """clu MetricWriter writing TensorBoard event files with tensorboardX (one file per writer).

  Summaries are built with tensorboardX's summary functions and written synchronously with its
  EventsWriter, not through tensorboardX.SummaryWriter: that class queues events for a
  background thread and its flush() does not drain the queue, so clu's contract that flush()
  leaves every value on disk would not hold. clu's AsyncMultiWriter already keeps writes off
  the training loop.

  This holds the implementation; the class clu sees (`clu.metric_writers.SummaryWriter`) is
  built by install_shim() as a subclass of it and of clu's MetricWriter.
  """

  def __init__(self, logdir: str):
    super().__init__()
    self._logdir = os.fspath(logdir)
    paths.makedirs(self._logdir)
    # tensorboardX picks its writer by the path's scheme: a local file or a gs:// object.
    self._events = EventsWriter(os.path.join(self._logdir, "events"))
    self._closed = False

  @property
  def logdir(self) -> str:
    return self._logdir

  def _add(self, summary, step: Optional[int]):
    if self._closed:
      raise RuntimeError(f"SummaryWriter for {self._logdir} is closed")
    event = event_pb2.Event(summary=summary, wall_time=time.time())
    if step is not None:
      event.step = int(step)
    self._events.write_event(event)

  def write_summaries(self, step: int, values: Mapping[str, Any],
                      metadata: Optional[Mapping[str, Any]] = None):
    """Raw tensor summaries: values {tag: array}, metadata {tag: SummaryMetadata proto or its
    serialized bytes}."""
    dtypes = {np.dtype(np.float32): "DT_FLOAT", np.dtype(np.float64): "DT_DOUBLE",
              np.dtype(np.int32): "DT_INT32", np.dtype(np.int64): "DT_INT64",
              np.dtype(np.bool_): "DT_BOOL", np.dtype(np.uint8): "DT_UINT8"}
    summary = summary_pb2.Summary()
    for key, value in values.items():
      arr = np.asarray(value)
      if arr.dtype not in dtypes:
        arr = arr.astype(np.float32)
      tensor = tensor_pb2.TensorProto(
          dtype=dtypes[arr.dtype],
          tensor_shape=tensor_shape_pb2.TensorShapeProto(
              dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=s) for s in arr.shape]),
          tensor_content=np.ascontiguousarray(arr).tobytes())
      entry = summary.value.add(tag=key, tensor=tensor)
      md = metadata.get(key) if metadata is not None else None
      if md is not None:
        raw = md if isinstance(md, bytes) else md.SerializeToString()
        entry.metadata.CopyFrom(summary_pb2.SummaryMetadata.FromString(raw))
    self._add(summary, step)

  def write_scalars(self, step: int, scalars: Mapping[str, Any]):
    for key, value in scalars.items():
      self._add(tbx.scalar(key, float(np.asarray(value))), step)

  def write_images(self, step: int, images: Mapping[str, Any]):
    """images {key: [N, H, W, C] or [H, W, C]}, C in 1/3/4, float in [0, 1] or uint8; N > 1
    is written as one grid image."""
    for key, value in images.items():
      arr = np.asarray(value)
      self._add(tbx.image(key, arr, dataformats="HWC" if arr.ndim == 3 else "NHWC"), step)

  def write_videos(self, step: int, videos: Mapping[str, Any]):
    del step, videos
    # As clu's TF writer: videos are not supported (tensorboardX would need moviepy).
    logging.log_first_n(logging.WARNING, "SummaryWriter does not support writing videos.", 1)

  def write_audios(self, step: int, audios: Mapping[str, Any], *, sample_rate: int):
    """audios {key: [N, T, C]} in [-1, 1], C = 1 or 2; clip i of N > 1 is written as key/i."""
    for key, value in audios.items():
      arr = np.asarray(value, np.float32)
      if arr.ndim == 2:
        arr = arr[None]
      for i, clip in enumerate(arr):
        tag = key if len(arr) == 1 else f"{key}/{i}"
        self._add(tbx.audio(tag, clip, sample_rate=sample_rate), step)

  def write_texts(self, step: int, texts: Mapping[str, str]):
    for key, value in texts.items():
      self._add(tbx.text(key, value), step)

  def write_histograms(self, step: int, arrays: Mapping[str, Any],
                       num_buckets: Optional[Mapping[str, int]] = None):
    for key, value in arrays.items():
      buckets = None if num_buckets is None else num_buckets.get(key)
      values = np.asarray(value, np.float64).reshape(-1)
      # 30 equal-width buckets by default, as tf.summary.histogram.
      self._add(tbx.histogram(key, values, bins=int(buckets or 30)), step)

  def write_pointcloud(self, step: int, point_clouds: Mapping[str, Any], *,
                       point_colors: Optional[Mapping[str, Any]] = None,
                       configs: Optional[Mapping[str, Any]] = None):
    """point_clouds {key: [N, 3] or [B, N, 3]}; optional colors uint8 of the same shape
    (tensorboard's mesh plugin)."""
    for key, value in point_clouds.items():
      vertices = np.asarray(value, np.float32)
      if vertices.ndim == 2:
        vertices = vertices[None]
      colors = None if point_colors is None else point_colors.get(key)
      if colors is not None:
        colors = np.asarray(colors, np.uint8).reshape(vertices.shape)
      config = None if configs is None else dict(configs)
      self._add(tbx.mesh(key, vertices, colors, None, config), step)

  def write_hparams(self, hparams: Mapping[str, Any]):
    """Into this run's own event file, as clu's TF writer does (tensorboardX's add_hparams
    would open a sub-run); nested dicts are flattened to dotted names."""
    flat = {k: _hparam_value(v) for k, v in _flatten(dict(hparams)).items()}
    for summary in tbx.hparams(flat, {}):
      self._add(summary, None)

  def flush(self):
    if not self._closed:
      self._events.flush()

  def close(self):
    if not self._closed:
      self._events.close()
      self._closed = True


def tensorflow_available() -> bool:
  return importlib.util.find_spec("tensorflow") is not None


def install_shim() -> bool:
  """Registers the tensorboardX SummaryWriter as clu.metric_writers.summary_writer.

  Idempotent. Returns True when the shim is in place, False when it is not needed (TensorFlow
  importable) or too late (clu.metric_writers already imported, e.g. with TF present).
  """
  if _SHIM_NAME in sys.modules:
    return getattr(sys.modules[_SHIM_NAME], "IS_TENSORBOARDX_SHIM", False)
  if tensorflow_available() or "clu.metric_writers" in sys.modules:
    return False
  module = types.ModuleType(_SHIM_NAME)
  module.__doc__ = "TF-free stand-in for clu's SummaryWriter (hicmae_jax.writers)."
  module.IS_TENSORBOARDX_SHIM = True

  def module_getattr(name):
    # Built lazily (PEP 562): clu.metric_writers' __init__ asks for SummaryWriter while the
    # package is half-initialised, after it has loaded `interface`, so the class can be a real
    # subclass of clu's MetricWriter without importing the package first.
    if name != "SummaryWriter":
      raise AttributeError(f"module {_SHIM_NAME!r} has no attribute {name!r}")
    from clu.metric_writers import interface
    cls = type("SummaryWriter", (TensorboardXSummaryWriter, interface.MetricWriter),
               {"__module__": _SHIM_NAME,
                "__doc__": "clu MetricWriter writing TensorBoard event files with tensorboardX."})
    module.SummaryWriter = cls
    return cls

  module.__getattr__ = module_getattr
  sys.modules[_SHIM_NAME] = module
  try:
    import clu.metric_writers  # noqa: F401  (binds our SummaryWriter everywhere in clu)
  except BaseException:
    del sys.modules[_SHIM_NAME]
    raise
  return True


SHIMMED = install_shim()


def create_writer(logdir, *, just_logging: bool = False):
  """clu's default writer (logging + TensorBoard event files under logdir).

  Only process 0 writes event files; other processes (and just_logging=True, or logdir None)
  only log.
  """
  # Imported on use: where TensorFlow is installed (no shim) clu's writer imports it, which
  # takes seconds that a process reading event files only should not pay.
  from clu import metric_writers
  just_logging = just_logging or jax.process_index() != 0 or logdir is None
  return metric_writers.create_default_writer(None if logdir is None else os.fspath(logdir),
                                              just_logging=just_logging)


# ---- reading event files back (no TensorBoard needed) -------------------------------------------

def iter_event_records(path: str):
  """Yields each record's bytes from a TFRecord-framed event file, checking both CRCs.

  Framing: uint64 length, uint32 masked crc32c(length), data, uint32 masked crc32c(data).
  """
  with epath.Path(path).open("rb") as f:
    while True:
      header = f.read(8)
      if not header:
        return
      if len(header) < 8:
        raise ValueError(f"{path}: truncated record header")
      (length,) = struct.unpack("<Q", header)
      (crc,) = struct.unpack("<I", f.read(4))
      if crc != masked_crc32c(header):
        raise ValueError(f"{path}: bad length crc")
      data = f.read(length)
      (crc,) = struct.unpack("<I", f.read(4))
      if len(data) != length or crc != masked_crc32c(data):
        raise ValueError(f"{path}: bad or truncated record")
      yield data


def read_events(logdir: str) -> list:
  """All Event protos of every events.out.tfevents.* file under logdir (recursively; in a
  bucket, logdir's own files only: a recursive listing there costs a request per folder)."""
  if paths.is_remote(logdir):
    files = sorted(map(str, paths.as_path(logdir).glob("events.out.tfevents.*")))
  else:
    files = sorted(glob.glob(os.path.join(os.fspath(logdir), "**", "events.out.tfevents.*"),
                             recursive=True))
  return [event_pb2.Event.FromString(r) for path in files for r in iter_event_records(path)]


def read_event_scalars(logdir: str) -> dict[str, list[tuple[int, float]]]:
  """{tag: [(step, value), ...]} of the scalar summaries under logdir."""
  out: dict[str, list[tuple[int, float]]] = {}
  for event in read_events(logdir):
    if not event.HasField("summary"):
      continue
    for value in event.summary.value:
      if value.WhichOneof("value") == "simple_value":
        out.setdefault(value.tag, []).append((int(event.step), float(value.simple_value)))
  return out
