"""Atomic file writes: JSON reports and binary files (PNG), never seen half-written."""
from __future__ import annotations

import json
import os
import uuid
from typing import Any, BinaryIO, Callable

import numpy as np


def atomic_write(path, write: Callable[[BinaryIO], Any]) -> None:
  """write(file object) into a temporary file next to `path`, then rename it over `path`, so a
  reader (or a crash) never sees a half-written file.

  The temporary file is made with open(), not tempfile.mkstemp: mkstemp creates mode 0600,
  which the rename would carry over; open() gives the usual 0666 minus the umask."""
  path = os.fspath(path)
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
  with open(path) as f:
    return json.load(f)
