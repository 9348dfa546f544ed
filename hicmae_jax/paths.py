"""Local and cloud paths through one type, etils.epath: a workdir, a checkpoint or an output
folder may be `gs://bucket/...` as well as a local path.

epath is what Orbax and JAX's compilation cache use for their own files. Without TensorFlow its
gs:// backend is fsspec's gcsfs (etils 1.15.0: `_PREFIX_TO_BACKEND['gs'] = fsspec_backend`,
TensorFlow's gfile only when TensorFlow is importable), so gcsfs is a requirement. Local paths
behave exactly as with os.path. Strings stay the currency between modules (flags, configs,
checkpoint meta); these helpers touch the files.
"""
from __future__ import annotations

import os
import posixpath
import shutil

from etils import epath


def is_remote(path) -> bool:
  """True for a URL such as gs://bucket/x (anything with a scheme)."""
  return "://" in os.fspath(path)


def as_path(path) -> epath.Path:
  return epath.Path(os.fspath(path))


def absolute(path) -> str:
  """os.path.abspath for a local path; a URL unchanged (abspath would make gs://b/x into
  <cwd>/gs:/b/x)."""
  path = os.fspath(path)
  return path if is_remote(path) else os.path.abspath(path)


def parent(path) -> str:
  """The folder holding `path` (absolute for a local path)."""
  path = os.fspath(path)
  if is_remote(path):
    return posixpath.dirname(path.rstrip("/"))
  return os.path.dirname(os.path.abspath(path))


def exists(path) -> bool:
  return as_path(path).exists()


def isdir(path) -> bool:
  """A folder (in a bucket: a prefix that holds objects)."""
  return as_path(path).is_dir()


def isfile(path) -> bool:
  return as_path(path).is_file()


def listdir(path) -> list[str]:
  """The names in a folder (not full paths)."""
  return sorted(p.name for p in as_path(path).iterdir())


def makedirs(path) -> None:
  """Creates a folder and its parents; a no-op in a bucket, where folders are name prefixes."""
  if is_remote(path):
    return
  os.makedirs(path, exist_ok=True)


def rmtree(path) -> None:
  """Removes a folder and everything in it; a missing one is fine."""
  p = as_path(path)
  if p.exists():
    p.rmtree()


def remove(path) -> None:
  """Removes a file; a missing one is fine."""
  p = as_path(path)
  if p.exists():
    p.unlink()


def read_bytes(path) -> bytes:
  return as_path(path).read_bytes()


def write_bytes(path, data: bytes) -> None:
  """Writes a whole file (a bucket object appears whole or not at all)."""
  makedirs(parent(path))
  as_path(path).write_bytes(data)


def copy_file(src, dst) -> None:
  """Copies one file, either side local or remote, in 16 MiB pieces (a bucket object appears
  when the copy is complete)."""
  makedirs(parent(dst))
  with as_path(src).open("rb") as fin, as_path(dst).open("wb") as fout:
    shutil.copyfileobj(fin, fout, 16 * 2**20)
