"""Read PyTorch `torch.save` checkpoint files without importing torch.

The zip archive is opened and checked (sizes from its directory before any read), its
data.pkl is loaded with the restricted unpickler (`pth_unpickle`), and storages are read on
demand. Anything wrong raises CheckpointFormatError naming the file and the problem.
"""
from __future__ import annotations

import io
import os
import pickle
import sys
import weakref
import zipfile
from typing import Any, BinaryIO

import numpy as np
from etils import epath

from hicmae_jax.checkpoints.pth_format import CheckpointFormatError
from hicmae_jax.checkpoints.pth_unpickle import (
  RestrictedUnpickler,
  Storage,
  StorageType,
  TensorError,
  check_int,
  prescan_pickle,
  resolve_dtype_proxies,
)

__all__ = ["CheckpointFormatError", "read_torch_checkpoint"]


class _ArchiveReader:
  """Storage lookup for one open checkpoint zip.

  path:     file name for messages.
  zf:       the open ZipFile.
  prefix:   '<top>/' folder holding data.pkl.
  byteswap: True when the archive's byte order differs from this machine's.
  """

  def __init__(self, path: str, zf: zipfile.ZipFile, prefix: str, byteswap: bool,
               archive_bytes: int):
    self.path = path
    self.zf = zf
    self.prefix = prefix
    self.byteswap = byteswap
    self.archive_bytes = archive_bytes
    # Weak: a storage's bytes are dropped once every tensor viewing it has been copied
    # out, so peak memory stays near one checkpoint plus one storage, while storages
    # shared by several tensors are still read only once at a time.
    self._raw_cache: weakref.WeakValueDictionary[str, np.ndarray] = (
      weakref.WeakValueDictionary())

  def error(self, what: str) -> CheckpointFormatError:
    return CheckpointFormatError(f"{self.path}: {what}")

  def _read_raw(self, key: str, need: int) -> np.ndarray:
    record = f"{self.prefix}data/{key}"
    raw = self._raw_cache.get(key)
    if raw is None:
      try:
        info = self.zf.getinfo(record)
      except KeyError:
        raise self.error(f"storage '{record}' missing") from None
      # Check sizes from the directory before reading, so a corrupt numel or entry
      # size can neither trigger a huge allocation nor a long read.
      if info.file_size < need:
        raise self.error(
          f"storage '{record}' truncated: need {need} bytes, have {info.file_size}")
      if info.file_size > need:
        raise self.error(
          f"storage '{record}' has {info.file_size} bytes, expected {need}")
      _check_entry_sizes(self.path, info, self.archive_bytes)
      data = self.zf.read(info)
      if len(data) != need:
        raise self.error(f"storage '{record}' truncated: need {need} bytes, have {len(data)}")
      raw = np.frombuffer(data, dtype=np.uint8)
      self._raw_cache[key] = raw
    elif raw.nbytes != need:
      # A key reinterpreted with another dtype must still cover the same bytes.
      raise self.error(
        f"storage '{record}' referenced with {need} bytes, but it has {raw.nbytes}")
    return raw

  def persistent_load(self, pid: Any) -> Storage:
    if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
      raise pickle.UnpicklingError(f"unsupported persistent id {pid!r:.200}")
    _, storage_type, key, _location, numel = pid
    if not isinstance(storage_type, StorageType):
      raise pickle.UnpicklingError(f"persistent id names no storage type: {storage_type!r:.100}")
    if not isinstance(key, str) or not key or len(key) > 64:
      raise pickle.UnpicklingError(f"bad storage key {key!r:.100}")
    numel = check_int(numel, "storage numel")
    if numel < 0:
      raise pickle.UnpicklingError(f"negative storage numel {numel}")
    itemsize = 1 if storage_type.dtype is None else storage_type.dtype.itemsize
    raw = self._read_raw(key, numel * itemsize)
    return Storage(raw, storage_type.dtype, f"{self.prefix}data/{key}", self.byteswap)


# deflate cannot compress better than about 1032:1; a larger claimed ratio is corruption
# (or a zip bomb) and would only make the reader inflate gigabytes before failing.
_MAX_DEFLATE_RATIO = 1032


def _check_entry_sizes(path: str, info: zipfile.ZipInfo, archive_bytes: int) -> None:
  """Reject a zip entry whose directory sizes cannot be right, before reading it."""
  if info.compress_size > archive_bytes:
    raise CheckpointFormatError(
      f"{path}: entry '{info.filename}' claims {info.compress_size} bytes, more than the "
      f"whole file ({archive_bytes})")
  if info.compress_type == zipfile.ZIP_STORED:
    if info.compress_size != info.file_size:
      raise CheckpointFormatError(
        f"{path}: stored entry '{info.filename}' has inconsistent sizes "
        f"({info.compress_size} vs {info.file_size})")
  elif info.file_size > _MAX_DEFLATE_RATIO * info.compress_size + 1024:
    raise CheckpointFormatError(
      f"{path}: entry '{info.filename}' claims {info.file_size} bytes from "
      f"{info.compress_size} compressed: implausible")


def _find_data_pkl(names: list[str]) -> str | None:
  """Archive entry of the top-level data.pkl ('<top>/data.pkl'), or None."""
  for name in names:
    if name.endswith("/data.pkl") and name.count("/") == 1:
      return name
  return None


def read_torch_checkpoint(path: str | os.PathLike | BinaryIO) -> Any:
  """Load a `torch.save` zip checkpoint as numpy arrays and plain Python containers.

  Args:
    path: checkpoint file name, or an open seekable binary file object (e.g. BytesIO;
      read from its start, left open).
  Returns:
    The saved object: dicts/OrderedDicts/lists/tuples/scalars as pickled, every tensor
    (and Parameter) as a C-contiguous numpy array of its saved shape and dtype
    (bfloat16/float8 via ml_dtypes), `argparse.Namespace` as `types.SimpleNamespace`.
  Raises:
    CheckpointFormatError: not a zip checkpoint, missing/short records, inconsistent
      tensors, a disallowed pickle global, or any error while unpickling.
    OSError: the file cannot be opened at all (missing, permissions).
  """
  if hasattr(path, "read"):
    name = str(getattr(path, "name", "<stream>"))
    return _read_guarded(name, path)
  path_str = os.fspath(path)
  # Opening errors (missing file, permissions) are not format problems: let them through.
  # epath: a gs://... file is read in place (zip members are located by seeking).
  with epath.Path(path_str).open("rb") as f:
    return _read_guarded(path_str, f)


def _read_guarded(name: str, f: BinaryIO) -> Any:
  """`_read_open_file`, with every unexpected failure reported as a format error."""
  try:
    return _read_open_file(name, f)
  except CheckpointFormatError:
    raise
  except Exception as e:  # noqa: BLE001 - any failure on garbage input is a format error
    raise CheckpointFormatError(f"{name}: {type(e).__name__}: {e}") from e


def _read_open_file(path: str, f: BinaryIO) -> Any:
  archive_bytes = f.seek(0, io.SEEK_END)
  f.seek(0)
  head = f.read(4)
  f.seek(0)
  try:
    zf = zipfile.ZipFile(f)
  except zipfile.BadZipFile:
    if head == b"PK\x03\x04":
      raise CheckpointFormatError(
        f"{path}: truncated or damaged zip archive (no readable central directory)") from None
    raise CheckpointFormatError(
      f"{path}: is not a zip archive (legacy torch<1.6 format or not a checkpoint)") from None
  with zf:
    names = zf.namelist()
    pkl_name = _find_data_pkl(names)
    if pkl_name is None:
      raise CheckpointFormatError(f"{path}: data.pkl missing (not a torch zip checkpoint)")
    prefix = pkl_name[: -len("data.pkl")]
    byteorder = "little"
    if f"{prefix}byteorder" in names:
      byteorder = zf.read(f"{prefix}byteorder").decode("ascii", "replace").strip()
      if byteorder not in ("little", "big"):
        raise CheckpointFormatError(f"{path}: unknown byteorder record {byteorder[:20]!r}")
    info = zf.getinfo(pkl_name)
    _check_entry_sizes(path, info, archive_bytes)
    pickle_bytes = zf.read(info)
    reader = _ArchiveReader(path, zf, prefix, byteorder != sys.byteorder, archive_bytes)
    unpickler = RestrictedUnpickler(io.BytesIO(pickle_bytes), reader)
    try:
      prescan_pickle(pickle_bytes)
      result = unpickler.load()
      if unpickler.made_dtypes:
        result = resolve_dtype_proxies(result, set())
      return result
    except CheckpointFormatError:
      raise
    except TensorError as e:
      raise CheckpointFormatError(f"{path}: {e}") from e
    except Exception as e:  # noqa: BLE001
      raise CheckpointFormatError(
        f"{path}: cannot unpickle data.pkl: {type(e).__name__}: {e}") from e
