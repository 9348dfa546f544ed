"""Atomic file writes: JSON reports and binary files (PNG), never seen half-written, on a
local disk or in a bucket (gs://, through paths.py)."""
from __future__ import annotations

import io
import json
import os
import uuid
from typing import Any, BinaryIO, Callable

import numpy as np

from hicmae_jax import paths


def atomic_write(path, write: Callable[[BinaryIO], Any]) -> None:
  """write(file object) into a temporary file next to `path`, then rename it over `path`, so a
  reader (or a crash) never sees a half-written file.

  The temporary file is made with open(), not tempfile.mkstemp: mkstemp creates mode 0600,
  which the rename would carry over; open() gives the usual 0666 minus the umask. In a bucket
  the bytes are built in memory and uploaded as one object, which appears whole or not at all."""
  path = os.fspath(path)
  if paths.is_remote(path):
    buf = io.BytesIO()
    write(buf)
    paths.write_bytes(path, buf.getvalue())
    return
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  tmp = os.path.join(directory, f".tmp-{uuid.uuid4().hex[:12]}-{os.path.basename(path)}")
  try:
    with open(tmp, "xb") as f:
      write(f)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def _json_default(obj):
  if isinstance(obj, np.ndarray):
    return obj.tolist()
  if isinstance(obj, np.generic):
    return obj.item()
  if hasattr(obj, "__array__"):   # jax arrays
    return np.asarray(obj).tolist()
  raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def write_json(path, obj) -> None:
  """Writes obj as indented JSON atomically (numpy / jax values converted; NaN as NaN; any
  other type raises TypeError rather than being written as its repr)."""
  text = json.dumps(obj, indent=2, sort_keys=False, default=_json_default)
  atomic_write(path, lambda f: f.write(text.encode("utf-8") + b"\n"))


def read_json(path) -> Any:
  return json.loads(paths.read_bytes(path))
