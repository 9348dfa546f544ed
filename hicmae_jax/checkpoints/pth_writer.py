"""Write PyTorch `torch.save` checkpoint files without importing torch.

The pickle opcodes are emitted directly (no `pickle.Pickler`), because pickling the globals
`torch._utils._rebuild_tensor_v2` / `torch.FloatStorage` through the standard pickler would
require importing torch. The output uses only opcodes and globals accepted by torch's
`weights_only=True` loader (the torch >= 2.6 default).
"""
from __future__ import annotations

import collections
import hashlib
import io
import math
import os
import posixpath
import secrets
import struct
import sys
import tempfile
import zipfile
from typing import Any, Callable, Mapping

import ml_dtypes
import numpy as np

from hicmae_jax import paths
from hicmae_jax.checkpoints.pth_format import STORAGE_DTYPES, contiguous_strides

__all__ = ["write_torch_checkpoint", "save_state_dict_like_original"]

# numpy scalar type -> legacy storage class name, for writing. Keyed by `dtype.type` so
# byte-order variants ('>f4') map to the same storage.
_WRITE_STORAGE: dict[type, str] = {
  dt.type: name for name, dt in STORAGE_DTYPES.items()
}
# Dtypes without a legacy storage class are written the way torch >= 2.3 writes them:
# `_rebuild_tensor_v3` on an untyped storage plus the torch dtype global.
_WRITE_V3_DTYPE: dict[type, str] = {
  np.dtype(np.uint16).type: "uint16",
  np.dtype(np.uint32).type: "uint32",
  np.dtype(np.uint64).type: "uint64",
  np.dtype(ml_dtypes.float8_e4m3fn).type: "float8_e4m3fn",
  np.dtype(ml_dtypes.float8_e5m2).type: "float8_e5m2",
  np.dtype(ml_dtypes.float8_e4m3fnuz).type: "float8_e4m3fnuz",
  np.dtype(ml_dtypes.float8_e5m2fnuz).type: "float8_e5m2fnuz",
  np.dtype(ml_dtypes.float8_e8m0fnu).type: "float8_e8m0fnu",
}

# Pickle opcodes (protocol 2), the subset torch's weights_only unpickler implements.
_PROTO, _STOP, _MARK = b"\x80", b".", b"("
_NONE, _TRUE, _FALSE = b"N", b"\x88", b"\x89"
_BININT, _BININT1, _BININT2, _LONG1 = b"J", b"K", b"M", b"\x8a"
_BINFLOAT, _BINUNICODE = b"G", b"X"
_EMPTY_TUPLE, _TUPLE, _TUPLE1, _TUPLE2, _TUPLE3 = b")", b"t", b"\x85", b"\x86", b"\x87"
_EMPTY_LIST, _APPENDS, _EMPTY_DICT, _SETITEMS = b"]", b"e", b"}", b"u"
_GLOBAL, _REDUCE, _BINPERSID = b"c", b"R", b"Q"
_BINPUT, _LONG_BINPUT, _BINGET, _LONG_BINGET = b"q", b"r", b"h", b"j"
_BATCH = 1000  # items per APPENDS/SETITEMS, as pickle does (bounds the unpickler's stack)

_ALIGNMENT = 64  # torch's zip writer starts every record's data on a 64-byte boundary
_FB_PADDING_ID = 0x4246  # 'FB': the extra-field id torch's writer pads local headers with


class _CheckpointPickler:
  """Emits a protocol-2 pickle of a nest of plain containers and numpy arrays.

  Arrays become `_rebuild_tensor_v2` calls on one storage each (one storage per distinct
  array object); `storages` collects their contiguous little-endian data in key order.
  """

  def __init__(self):
    self.out = bytearray()
    self.storages: list[np.ndarray] = []
    self._memo: dict[str, int] = {}  # global name -> memo slot (globals repeat per tensor)
    self._array_keys: dict[int, tuple[str, np.ndarray]] = {}  # id(array) -> key, keep-alive
    self._active: set[int] = set()  # ids of containers being written (cycle detection)

  def dump(self, obj: Any) -> bytes:
    self.out += _PROTO + b"\x02"
    self._save(obj, "obj")
    self.out += _STOP
    return bytes(self.out)

  # -- scalars
  def _int(self, value: int, where: str) -> None:
    if 0 <= value < 0x100:
      self.out += _BININT1 + bytes((value,))
    elif 0 <= value < 0x10000:
      self.out += _BININT2 + struct.pack("<H", value)
    elif -0x80000000 <= value < 0x80000000:
      self.out += _BININT + struct.pack("<i", value)
    else:
      # Minimal two's-complement little-endian bytes, exactly pickle.encode_long.
      nbytes = (value.bit_length() >> 3) + 1
      data = value.to_bytes(nbytes, "little", signed=True)
      if value < 0 and nbytes > 1 and data[-1] == 0xFF and data[-2] & 0x80:
        data = data[:-1]
      if len(data) > 255:  # LONG4 exists, but torch's weights_only loader lacks it
        raise ValueError(f"{where}: integer too large to save ({len(data)} bytes)")
      self.out += _LONG1 + bytes((len(data),)) + data

  def _str(self, value: str) -> None:
    data = value.encode("utf-8", "surrogatepass")
    self.out += _BINUNICODE + struct.pack("<I", len(data)) + data

  def _global(self, module: str, name: str) -> None:
    key = f"{module}\n{name}\n"
    slot = self._memo.get(key)
    if slot is not None:
      self.out += (_BINGET + bytes((slot,)) if slot < 0x100
                   else _LONG_BINGET + struct.pack("<I", slot))
      return
    self.out += _GLOBAL + key.encode("ascii")
    slot = len(self._memo)
    self._memo[key] = slot
    self.out += (_BINPUT + bytes((slot,)) if slot < 0x100
                 else _LONG_BINPUT + struct.pack("<I", slot))

  def _int_tuple(self, values: tuple[int, ...], where: str) -> None:
    self._tuple_of([lambda v=v: self._int(v, where) for v in values])

  def _tuple_of(self, writers: list[Callable[[], None]]) -> None:
    if not writers:
      self.out += _EMPTY_TUPLE
      return
    if len(writers) > 3:
      self.out += _MARK
    for w in writers:
      w()
    self.out += {1: _TUPLE1, 2: _TUPLE2, 3: _TUPLE3}.get(len(writers), _TUPLE)

  # -- containers and dispatch
  def _save(self, obj: Any, where: str) -> None:
    if obj is None:
      self.out += _NONE
    elif obj is True or obj is False:
      self.out += _TRUE if obj else _FALSE
    elif isinstance(obj, (bool, np.bool_)):
      self.out += _TRUE if bool(obj) else _FALSE
    elif isinstance(obj, int):
      self._int(int(obj), where)
    elif isinstance(obj, float):
      self.out += _BINFLOAT + struct.pack(">d", float(obj))
    elif isinstance(obj, str):
      self._str(str(obj))
    elif isinstance(obj, np.ndarray):
      self._tensor(obj, where)
    elif isinstance(obj, np.generic):
      # numpy scalars (common in args) become Python scalars: torch's weights_only loader
      # refuses numpy globals, and ints/floats carry the same value.
      if obj.dtype.kind in "iu":
        self._int(int(obj), where)
      elif obj.dtype.kind == "f":
        self.out += _BINFLOAT + struct.pack(">d", float(obj))
      else:
        raise TypeError(f"{where}: cannot save numpy scalar of dtype {obj.dtype}")
    elif isinstance(obj, (dict, list, tuple)):
      if id(obj) in self._active:
        raise ValueError(f"{where}: recursive container cannot be saved")
      self._active.add(id(obj))
      try:
        if isinstance(obj, dict):
          self._dict(obj, where)
        elif isinstance(obj, list):
          self.out += _EMPTY_LIST
          items = list(obj)
          for start in range(0, len(items), _BATCH):
            self.out += _MARK
            for i, item in enumerate(items[start:start + _BATCH], start):
              self._save(item, f"{where}[{i}]")
            self.out += _APPENDS
        else:
          self._tuple_of([lambda i=i, item=item: self._save(item, f"{where}[{i}]")
                          for i, item in enumerate(obj)])
      finally:
        self._active.discard(id(obj))
    elif hasattr(obj, "__array__") and hasattr(obj, "shape") and hasattr(obj, "dtype"):
      # jax.Array and friends: save their host value.
      self._tensor(np.asarray(obj), where)
    else:
      raise TypeError(f"{where}: cannot save object of type {type(obj).__qualname__} "
                      f"(only dict/list/tuple/str/int/float/bool/None and numpy arrays)")

  def _dict(self, obj: dict, where: str) -> None:
    if isinstance(obj, collections.OrderedDict):
      # What pickle emits for OrderedDict at protocol 2: OrderedDict() then SETITEMS.
      self._global("collections", "OrderedDict")
      self.out += _EMPTY_TUPLE + _REDUCE
    else:
      self.out += _EMPTY_DICT
    items = list(obj.items())
    for start in range(0, len(items), _BATCH):
      self.out += _MARK
      for key, value in items[start:start + _BATCH]:
        if not isinstance(key, (str, int, float, tuple, type(None))):
          raise TypeError(f"{where}: dict key {key!r} of type {type(key).__name__} not allowed")
        self._save(key, f"{where} key")
        self._save(value, f"{where}[{key!r}]")
      self.out += _SETITEMS

  def _tensor(self, arr: np.ndarray, where: str) -> None:
    storage_name = _WRITE_STORAGE.get(arr.dtype.type)
    v3_dtype = _WRITE_V3_DTYPE.get(arr.dtype.type)
    if (storage_name is None and v3_dtype is None) or arr.dtype.fields is not None:
      raise TypeError(f"{where}: numpy dtype {arr.dtype} has no torch equivalent")
    known = self._array_keys.get(id(arr))
    if known is None:
      data = arr if arr.flags.c_contiguous else arr.copy(order="C")
      # Storages are little-endian on disk (the byteorder record says so).
      if arr.dtype.itemsize > 1 and (arr.dtype.byteorder == ">" or (
          arr.dtype.byteorder == "=" and sys.byteorder == "big")):
        data = data.astype(arr.dtype.newbyteorder("<"))
      key = str(len(self.storages))
      self.storages.append(data)
      self._array_keys[id(arr)] = (key, arr)  # holding arr keeps its id unique
    else:
      key = known[0]
    shape = tuple(int(s) for s in arr.shape)
    stride = contiguous_strides(shape)
    numel = math.prod(shape)

    self._global("torch._utils", "_rebuild_tensor_v2" if v3_dtype is None
                 else "_rebuild_tensor_v3")
    self.out += _MARK
    # persistent id ('storage', torch.XStorage, key, 'cpu', numel); an untyped storage
    # counts bytes instead of elements.
    self.out += _MARK
    self._str("storage")
    if v3_dtype is None:
      self._global("torch", storage_name)
      self._str(key)
      self._str("cpu")
      self._int(numel, where)
    else:
      self._global("torch.storage", "UntypedStorage")
      self._str(key)
      self._str("cpu")
      self._int(numel * arr.dtype.itemsize, where)
    self.out += _TUPLE + _BINPERSID
    self._int(0, where)  # storage_offset
    self._int_tuple(shape, where)
    self._int_tuple(stride, where)
    self.out += _FALSE  # requires_grad
    self._global("collections", "OrderedDict")  # backward hooks: empty OrderedDict
    self.out += _EMPTY_TUPLE + _REDUCE
    if v3_dtype is not None:
      self._global("torch", v3_dtype)
    self.out += _TUPLE + _REDUCE


def _archive_name(path: str) -> str:
  """Top folder name inside the zip, as torch picks it: file name up to its first dot."""
  stem = os.path.basename(path).split(".", 1)[0]
  # torch uses the raw stem; restricting to portable characters keeps the archive's
  # names ASCII (no zip UTF-8 flag) without changing anything a loader looks at.
  stem = "".join(c if (c.isascii() and (c.isalnum() or c in "_-")) else "_" for c in stem)
  return stem or "archive"


def _storage_bytes(data: np.ndarray) -> memoryview:
  """Raw bytes of a C-contiguous array as a flat memoryview (no copy)."""
  return memoryview(data.reshape(-1).view(np.uint8))


def _write_zip(f: io.BufferedWriter, prefix: str, pickle_bytes: bytes,
               storages: list[np.ndarray]) -> None:
  """Write torch's record layout to `f` with every record's data 64-byte aligned."""
  records: list[tuple[str, Any]] = [
    ("data.pkl", pickle_bytes),
    (".format_version", b"1"),
    (".storage_alignment", str(_ALIGNMENT).encode()),
    ("byteorder", b"little"),
  ]
  records += [(f"data/{i}", _storage_bytes(s)) for i, s in enumerate(storages)]
  records.append(("version", b"3\n"))
  digest = hashlib.sha1()
  with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
    for name, payload in records:
      _write_aligned_record(f, zf, f"{prefix}/{name}", payload)
      info = zf.getinfo(f"{prefix}/{name}")
      digest.update(f"{info.filename}\0{info.file_size}\0{info.CRC}\n".encode())
    # torch derives the id from record names and CRCs (deterministic, opaque to loaders);
    # do the same in spirit so identical content gives identical files.
    serialization_id = f"{int.from_bytes(digest.digest(), 'big') % 10**40:040d}"
    _write_aligned_record(f, zf, f"{prefix}/.data/serialization_id",
                          serialization_id.encode())


def _write_aligned_record(f: io.BufferedWriter, zf: zipfile.ZipFile, name: str,
                          payload: Any) -> None:
  view = memoryview(payload)
  size = view.nbytes
  info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
  info.compress_type = zipfile.ZIP_STORED
  info.file_size = size
  # zipfile adds a 20-byte zip64 extra to the local header on exactly this condition
  # (passed explicitly so the padding computed below matches what gets written).
  zip64 = size * 1.05 > zipfile.ZIP64_LIMIT
  # Between records the file position is where zipfile writes the next local header
  # (zipfile seeks back there itself, so f.tell() is its start_dir).
  header_end = f.tell() + 30 + len(name.encode("ascii")) + 4 + (20 if zip64 else 0)
  pad = -header_end % _ALIGNMENT
  info.extra = struct.pack("<HH", _FB_PADDING_ID, pad) + b"Z" * pad
  with zf.open(info, "w", force_zip64=zip64) as w:
    # Chunked so a multi-GB storage is not handed to zlib.crc32 in one piece twice.
    for start in range(0, size, 1 << 26):
      w.write(view[start:start + (1 << 26)])


def write_torch_checkpoint(path: str | os.PathLike, obj: Any) -> None:
  """Write `obj` as a `torch.save`-compatible zip checkpoint, atomically.

  Args:
    path: destination file; replaced only once the new file is complete.
    obj: a nest of dict/OrderedDict/list/tuple/str/int/float/bool/None and numpy arrays
      (float32/64/16, bfloat16, int64/32/16/8, uint8, bool, complex64/128, and the
      torch>=2.3 dtypes uint16/32/64 and float8_*; jax arrays are converted with
      np.asarray). numpy scalars (np.int64, np.float32, ...) are written as Python
      ints/floats. Every array becomes a contiguous CPU tensor with
      its own storage (the same array object twice shares one), loadable by
      `torch.load(path)` including torch >= 2.6's `weights_only=True` default.
  Raises:
    TypeError / ValueError: unsupported object or dtype (nothing is written).
  """
  path_str = os.fspath(path)
  if paths.is_remote(path_str):
    # A bucket has no rename: write the file here, then upload it as one object.
    with tempfile.TemporaryDirectory(prefix="hicmae_pth_") as tmp_dir:
      local = os.path.join(tmp_dir, posixpath.basename(path_str))
      write_torch_checkpoint(local, obj)
      paths.copy_file(local, path_str)
    return
  # Serialise first: unsupported input fails before any file is touched.
  pickler = _CheckpointPickler()
  pickle_bytes = pickler.dump(obj)
  directory = os.path.dirname(os.path.abspath(path_str))
  tmp = os.path.join(directory, f".{os.path.basename(path_str)}.{os.getpid()}."
                                f"{secrets.token_hex(4)}.tmp")
  # os.open with 0o666 lets the umask decide permissions, like a plain open() would.
  fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
  try:
    with os.fdopen(fd, "wb") as f:
      _write_zip(f, _archive_name(path_str), pickle_bytes, pickler.storages)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path_str)
  except BaseException:
    try:
      os.unlink(tmp)
    except FileNotFoundError:
      pass
    raise


def _plain_args(args: Any) -> dict:
  """Training args (argparse.Namespace, SimpleNamespace or mapping) as a plain dict.

  A dict rather than a Namespace so `torch.load` with `weights_only=True` accepts it.
  """
  if isinstance(args, Mapping):
    return dict(args)
  if hasattr(args, "__dict__"):
    return dict(vars(args))
  raise TypeError(f"args must be a Namespace or a mapping, got {type(args).__name__}")


def save_state_dict_like_original(path: str | os.PathLike, state_dict: Mapping[str, Any],
                                  epoch: int | None = None, args: Any = None,
                                  extra: Mapping[str, Any] | None = None) -> None:
  """Write `{'model': OrderedDict(state_dict), 'epoch': epoch, 'args': args, **extra}`.

  The layout the original HiCMAE code loads (`checkpoint['model']`); entries that are
  None are omitted. `state_dict` maps torch parameter names to numpy (or jax) arrays;
  `args` is stored as a plain dict (see `_plain_args`); `extra` entries (plain values) are
  written as they are, next to those.
  """
  checkpoint: dict[str, Any] = {"model": collections.OrderedDict(state_dict)}
  if epoch is not None:
    checkpoint["epoch"] = int(epoch)
  if args is not None:
    checkpoint["args"] = _plain_args(args)
  for key, value in (extra or {}).items():
    if key in checkpoint:
      raise ValueError(f"extra entry {key!r} would replace the checkpoint's own {key!r}")
    checkpoint[key] = value
  write_torch_checkpoint(path, checkpoint)
