"""Read and write PyTorch `torch.save` checkpoint files without importing torch.

A `torch.save` file (torch >= 1.6) is an uncompressed zip archive:

  <name>/data.pkl               pickle (protocol 2) of the saved object; tensors are
                                `torch._utils._rebuild_tensor_v2(storage, offset, size,
                                stride, requires_grad, backward_hooks)` calls whose
                                storage is a persistent id
                                `('storage', torch.FloatStorage, '<key>', 'cpu', numel)`
  <name>/data/<key>             raw little-endian bytes of storage <key>
  <name>/byteorder              'little' (torch >= 1.13)
  <name>/version                '3\\n'
  <name>/.format_version, .storage_alignment, .data/serialization_id  (torch >= 2.x)

`<name>` is the file stem for files written by `torch.save`, 'archive' for buffers; it
varies, so the reader locates `*/data.pkl` instead of guessing.

Tensors whose dtype has no legacy storage class (uint16/32/64, float8; torch >= 2.3) are
`_rebuild_tensor_v3(untyped storage, ..., torch.<dtype>)` calls instead.

Reading: the pickle is untrusted input (checkpoints are downloaded), so it is loaded with
a restricted unpickler whose `find_class` only hands out the handful of callables that a
checkpoint of plain state dicts needs, each replaced by a local, side-effect-free
stand-in; a linear pre-scan of the opcodes first rejects the few fields with which a
corrupt pickle makes CPython's unpickler allocate gigabytes. Tensors come back as numpy
arrays (copies, never views of the archive), torch Parameters as plain arrays,
`argparse.Namespace` as `types.SimpleNamespace`. Anything wrong raises
CheckpointFormatError naming the file and the problem.

Writing: the pickle opcodes are emitted directly (no `pickle.Pickler`), because pickling
the globals `torch._utils._rebuild_tensor_v2` / `torch.FloatStorage` through the standard
pickler would require importing torch. The output uses only opcodes and globals accepted
by torch's `weights_only=True` loader (the torch >= 2.6 default).
"""
from __future__ import annotations

import collections
import hashlib
import io
import math
import os
import pickle
import pickletools
import secrets
import struct
import sys
import types
import weakref
import zipfile
from typing import Any, BinaryIO, Callable, Mapping

import ml_dtypes
import numpy as np

__all__ = [
  "CheckpointFormatError",
  "read_torch_checkpoint",
  "write_torch_checkpoint",
  "save_state_dict_like_original",
]


class CheckpointFormatError(ValueError):
  """The file is not a readable torch zip checkpoint (message names file and problem)."""


class _TensorError(ValueError):
  """Inconsistent tensor/storage found by a rebuild stand-in, which does not know the file
  name; the loader re-raises it as CheckpointFormatError with the name prepended."""


# ----------------------------------------------------------------------------- dtypes

# Legacy typed-storage class name (what `_rebuild_tensor_v2` pickles) -> numpy dtype.
_STORAGE_DTYPES: dict[str, np.dtype] = {
  "DoubleStorage": np.dtype(np.float64),
  "FloatStorage": np.dtype(np.float32),
  "HalfStorage": np.dtype(np.float16),
  "BFloat16Storage": np.dtype(ml_dtypes.bfloat16),
  "LongStorage": np.dtype(np.int64),
  "IntStorage": np.dtype(np.int32),
  "ShortStorage": np.dtype(np.int16),
  "CharStorage": np.dtype(np.int8),
  "ByteStorage": np.dtype(np.uint8),
  "BoolStorage": np.dtype(np.bool_),
  "ComplexFloatStorage": np.dtype(np.complex64),
  "ComplexDoubleStorage": np.dtype(np.complex128),
}

# torch dtype global name -> numpy dtype, for `_rebuild_tensor_v3` (torch >= 2.3 pickles
# dtypes without a legacy storage class, e.g. uint16 or float8, this way).
_TORCH_DTYPES: dict[str, np.dtype] = {
  "float64": np.dtype(np.float64), "double": np.dtype(np.float64),
  "float32": np.dtype(np.float32), "float": np.dtype(np.float32),
  "float16": np.dtype(np.float16), "half": np.dtype(np.float16),
  "bfloat16": np.dtype(ml_dtypes.bfloat16),
  "int64": np.dtype(np.int64), "long": np.dtype(np.int64),
  "int32": np.dtype(np.int32), "int": np.dtype(np.int32),
  "int16": np.dtype(np.int16), "short": np.dtype(np.int16),
  "int8": np.dtype(np.int8),
  "uint8": np.dtype(np.uint8),
  "uint16": np.dtype(np.uint16),
  "uint32": np.dtype(np.uint32),
  "uint64": np.dtype(np.uint64),
  "bool": np.dtype(np.bool_),
  "complex64": np.dtype(np.complex64), "cfloat": np.dtype(np.complex64),
  "complex128": np.dtype(np.complex128), "cdouble": np.dtype(np.complex128),
  "float8_e4m3fn": np.dtype(ml_dtypes.float8_e4m3fn),
  "float8_e5m2": np.dtype(ml_dtypes.float8_e5m2),
  "float8_e4m3fnuz": np.dtype(ml_dtypes.float8_e4m3fnuz),
  "float8_e5m2fnuz": np.dtype(ml_dtypes.float8_e5m2fnuz),
  "float8_e8m0fnu": np.dtype(ml_dtypes.float8_e8m0fnu),
}

# numpy scalar type -> legacy storage class name, for writing. Keyed by `dtype.type` so
# byte-order variants ('>f4') map to the same storage.
_WRITE_STORAGE: dict[type, str] = {
  dt.type: name for name, dt in _STORAGE_DTYPES.items()
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

# A tensor larger than both its storage and this many bytes (only possible with
# overlapping, e.g. stride-0, views) is refused: a corrupt size field must not make the
# reader allocate gigabytes.
_MAX_EXPANSION_BYTES = 1 << 31


# ------------------------------------------------------------- restricted unpickling

class _Opaque:
  """Base of the stand-ins handed out by `find_class`.

  Slotted and refusing BUILD (`__setstate__`), so a crafted pickle cannot attach state to
  these shared module-level objects and influence later loads.
  """
  __slots__ = ("name",)

  def __init__(self, name: str):
    self.name = name

  def __setstate__(self, state):
    raise pickle.UnpicklingError(f"BUILD on '{self.name}' is not allowed")

  def __reduce__(self):
    raise TypeError(f"{self.name} stand-in cannot be pickled")

  def __repr__(self) -> str:
    return f"<{self.name}>"


class _StorageType(_Opaque):
  """Stand-in for `torch.FloatStorage` & co.; `dtype` None means untyped (bytes)."""
  __slots__ = ("dtype",)

  def __init__(self, name: str, dtype: np.dtype | None):
    super().__init__(name)
    self.dtype = dtype


class _TorchDtype(_Opaque):
  """Stand-in for `torch.float32` & co. (the dtype argument of `_rebuild_tensor_v3`)."""
  __slots__ = ("dtype",)

  def __init__(self, name: str, dtype: np.dtype):
    super().__init__(name)
    self.dtype = dtype


class _Marker(_Opaque):
  """Stand-in for harmless torch objects that only tag things (torch.strided, torch.Tensor)."""
  __slots__ = ()


class _SafeCallable(_Opaque):
  """A vetted local function exposed under a torch/numpy global's name."""
  __slots__ = ("fn",)

  def __init__(self, name: str, fn: Callable[..., Any]):
    super().__init__(name)
    self.fn = fn

  def __call__(self, *args):
    return self.fn(*args)


class _Storage:
  """One storage as referenced by a persistent id.

  raw:      1-D uint8 array with the record's bytes (shared by every reference to the key).
  dtype:    element dtype of the typed storage, None for an untyped one.
  record:   zip entry name, for error messages.
  byteswap: True when the archive's byte order differs from this machine's; kept here so
            the rebuild stand-ins, which only see the storage, need no other state.
  """
  __slots__ = ("raw", "dtype", "record", "byteswap")

  def __init__(self, raw: np.ndarray, dtype: np.dtype | None, record: str, byteswap: bool):
    self.raw = raw
    self.dtype = dtype
    self.record = record
    self.byteswap = byteswap

  def __setstate__(self, state):
    raise pickle.UnpicklingError("BUILD on a storage is not allowed")

  def __repr__(self) -> str:
    return f"<storage {self.record} {self.raw.nbytes} bytes>"


def _check_int(value: Any, what: str) -> int:
  # bool is an int subclass; a corrupted pickle may also yield floats or strings here.
  if type(value) is not int:
    raise pickle.UnpicklingError(f"{what} must be an int, got {type(value).__name__}")
  return value


def _check_int_tuple(value: Any, what: str) -> tuple[int, ...]:
  if not isinstance(value, tuple):
    raise pickle.UnpicklingError(f"{what} must be a tuple, got {type(value).__name__}")
  out = tuple(_check_int(v, what) for v in value)
  if any(v < 0 for v in out):
    raise pickle.UnpicklingError(f"{what} has negative entries: {out}")
  return out


def _contiguous_strides(size: tuple[int, ...]) -> tuple[int, ...]:
  """torch's C-contiguous strides in elements (a zero-size dim counts as 1)."""
  stride, step = [], 1
  for s in reversed(size):
    stride.append(step)
    step *= max(s, 1)
  return tuple(reversed(stride))


def _tensor_from_storage(storage: Any, dtype: np.dtype, storage_offset: Any, size: Any,
                         stride: Any) -> np.ndarray:
  """Copy the strided view (offset, size, stride in elements) of `storage` as `dtype`.

  Returns a fresh C-contiguous numpy array of shape `size`; shared storages and
  non-contiguous views work because the view is taken with the saved strides.
  """
  if not isinstance(storage, _Storage):
    raise pickle.UnpicklingError(f"tensor storage must be a persistent storage, got {storage!r}")
  offset = _check_int(storage_offset, "storage_offset")
  size = _check_int_tuple(size, "size")
  stride = _check_int_tuple(stride, "stride")
  if offset < 0:
    raise pickle.UnpicklingError(f"negative storage_offset {offset}")
  if len(size) != len(stride):
    raise pickle.UnpicklingError(f"size {size} and stride {stride} differ in length")
  if len(size) > 64:
    raise pickle.UnpicklingError(f"{len(size)} dimensions (numpy supports 64)")
  # Bool storages may hold any byte; reading them as uint8 and comparing with 0 gives
  # proper numpy bools (True/False) instead of bools with odd bit patterns.
  is_bool = dtype.kind == "b"
  carrier = np.dtype(np.uint8) if is_bool else dtype
  itemsize = carrier.itemsize
  raw = storage.raw
  if raw.nbytes % itemsize:
    raise _TensorError(
      f"storage '{storage.record}' has {raw.nbytes} bytes, not a multiple of {dtype} "
      f"itemsize {itemsize}")
  n_elems = raw.nbytes // itemsize
  if 0 in size:
    # Empty tensors read no element, so torch accepts any offset for them.
    return np.zeros(size, dtype=dtype)
  last = offset + sum((s - 1) * st for s, st in zip(size, stride))
  if last >= n_elems:
    raise _TensorError(
      f"tensor (offset {offset}, size {size}, stride {stride}) reaches element {last} of "
      f"storage '{storage.record}' which holds {n_elems} {dtype} elements")
  numel = math.prod(size)
  if numel * itemsize > max(raw.nbytes, _MAX_EXPANSION_BYTES):
    raise _TensorError(
      f"tensor of size {size} would expand the {raw.nbytes}-byte storage "
      f"'{storage.record}' to {numel * itemsize} bytes; refusing")
  typed = raw.view(carrier)
  if stride == _contiguous_strides(size):
    # The common case (state dicts are mostly contiguous): a plain slice is much cheaper
    # than as_strided, which matters for checkpoints with hundreds of small tensors.
    out = typed[offset:offset + numel].reshape(size).copy()
  else:
    view = np.lib.stride_tricks.as_strided(
      typed[offset:], shape=size, strides=tuple(st * itemsize for st in stride),
      writeable=False)
    out = view.copy()
  if storage.byteswap:
    out = out.byteswap()
  if is_bool:
    out = out.astype(np.bool_)  # nonzero -> True; keeps 0-d results arrays
  return out


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
  """`torch._utils._rebuild_tensor_v2` stand-in: typed storage -> numpy array."""
  del requires_grad, backward_hooks, metadata  # meaningless for numpy arrays
  if not isinstance(storage, _Storage) or storage.dtype is None:
    raise pickle.UnpicklingError("_rebuild_tensor_v2 needs a typed storage")
  return _tensor_from_storage(storage, storage.dtype, storage_offset, size, stride)


def _rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad,
                       backward_hooks, dtype, metadata=None):
  """`torch._utils._rebuild_tensor_v3` stand-in: untyped storage + torch dtype."""
  del requires_grad, backward_hooks, metadata
  if not isinstance(dtype, _TorchDtype):
    raise pickle.UnpicklingError(f"_rebuild_tensor_v3 needs a torch dtype, got {dtype!r}")
  return _tensor_from_storage(storage, dtype.dtype, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, state=None):
  """`torch._utils._rebuild_parameter(_with_state)` stand-in: a Parameter is its data."""
  del requires_grad, backward_hooks, state
  if not isinstance(data, np.ndarray):
    raise pickle.UnpicklingError(f"parameter data must be a tensor, got {type(data).__name__}")
  return data


def _rebuild_from_type_v2(func, new_type, args, state):
  """`torch._tensor._rebuild_from_type_v2` stand-in (tensor subclasses, e.g. Parameter)."""
  del state  # Python attributes set on a tensor; nothing to attach them to on numpy
  if not isinstance(func, _SafeCallable) or not isinstance(new_type, _Marker):
    raise pickle.UnpicklingError("_rebuild_from_type_v2 with unexpected arguments")
  if not isinstance(args, tuple):
    raise pickle.UnpicklingError("_rebuild_from_type_v2 args must be a tuple")
  out = func(*args)
  if not isinstance(out, np.ndarray):
    raise pickle.UnpicklingError("_rebuild_from_type_v2 did not rebuild a tensor")
  return out


def _latin1_encode(text, encoding="latin1", errors="strict"):
  """`_codecs.encode` stand-in: protocol-2 pickles store bytes as latin-1 text."""
  if not isinstance(text, str) or encoding not in ("latin1", "latin-1") or errors != "strict":
    raise pickle.UnpicklingError("_codecs.encode is only allowed as (str, 'latin1')")
  return text.encode("latin1")


class _DtypeProxy:
  """What the `numpy.dtype` stand-in returns: a simple numpy dtype awaiting its BUILD.

  numpy pickles a dtype as `numpy.dtype(spec, align, copy)` followed by BUILD with a state
  tuple. numpy's own `dtype.__setstate__` crashes the interpreter (segfault, numpy 2.4) on
  some malformed states, so the state is validated and applied here instead (only the
  byte order matters for the simple dtypes allowed). Resolved to the real dtype by
  `_numpy_scalar` and, if one is left in the loaded object, by `_resolve_dtype_proxies`.
  """
  __slots__ = ("dtype",)

  def __init__(self, dtype: np.dtype):
    self.dtype = dtype

  def __setstate__(self, state):
    if not (isinstance(state, tuple) and len(state) in (8, 9) and state[0] in (3, 4)
            and state[1] in ("<", ">", "|", "=") and state[2:5] == (None, None, None)
            and all(type(v) is int for v in state[5:8])):
      raise pickle.UnpicklingError(f"unexpected numpy dtype state {state!r:.200}")
    if state[1] in "<>" and self.dtype.byteorder != "|":
      self.dtype = self.dtype.newbyteorder(state[1])


def _numpy_dtype(spec, align=False, copy=True):
  """`numpy.dtype` stand-in restricted to simple (non-object, non-structured) dtypes."""
  del align, copy  # irrelevant for the simple dtypes allowed
  if not isinstance(spec, str) or len(spec) > 16:
    raise pickle.UnpicklingError(f"numpy.dtype spec must be a short string, got {spec!r:.100}")
  dt = np.dtype(spec)
  # No datetimes: their unit travels in the BUILD metadata, which is not interpreted here.
  if dt.kind not in "biufcSU" or dt.hasobject or dt.fields is not None or dt.subdtype:
    raise pickle.UnpicklingError(f"numpy dtype {spec!r} is not allowed")
  return _DtypeProxy(dt)


def _numpy_scalar(dtype, data=None):
  """`numpy.core.multiarray.scalar` stand-in: (simple dtype, raw bytes) -> numpy scalar."""
  if not isinstance(dtype, _DtypeProxy):
    raise pickle.UnpicklingError(f"numpy scalar needs a numpy dtype, got {dtype!r:.100}")
  dt = dtype.dtype
  if not isinstance(data, bytes) or len(data) != dt.itemsize:
    raise pickle.UnpicklingError(f"numpy scalar data must be {dt.itemsize} bytes")
  return np.frombuffer(data, dtype=dt)[0]


def _resolve_dtype_proxies(obj: Any, seen: set[int]) -> Any:
  """Replace `_DtypeProxy` objects left in a loaded nest by their numpy dtype (in place
  for dicts/lists/namespaces, rebuilt for tuples). Only run when a proxy was created."""
  if isinstance(obj, _DtypeProxy):
    return obj.dtype
  if id(obj) in seen or isinstance(obj, (np.ndarray, np.generic, str, bytes, int, float)):
    return obj
  seen.add(id(obj))
  if isinstance(obj, types.SimpleNamespace):
    _resolve_dtype_proxies(vars(obj), seen)
  elif isinstance(obj, dict):
    for key, value in obj.items():
      obj[key] = _resolve_dtype_proxies(value, seen)  # same keys: safe while iterating
  elif isinstance(obj, list):
    for i, value in enumerate(obj):
      obj[i] = _resolve_dtype_proxies(value, seen)
  elif isinstance(obj, tuple):
    items = tuple(_resolve_dtype_proxies(v, seen) for v in obj)
    if any(a is not b for a, b in zip(items, obj)):
      return items
  return obj


def _torch_size(value=()):
  """`torch.Size` stand-in: a tuple of ints."""
  return tuple(_check_int(v, "torch.Size entry") for v in value)


def _torch_device(kind, index=None):
  """`torch.device` stand-in: the device string ('cpu', 'cuda:0')."""
  if not isinstance(kind, str) or (index is not None and type(index) is not int):
    raise pickle.UnpicklingError("torch.device needs (str[, int])")
  return kind if index is None else f"{kind}:{index}"


def _get_layout(name):
  if not isinstance(name, str):
    raise pickle.UnpicklingError("torch.serialization._get_layout needs a str")
  return _Marker(name)


def _build_allowed_globals() -> dict[tuple[str, str], Any]:
  """(module, name) -> object handed to the unpickler; everything else is refused."""
  allowed: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("argparse", "Namespace"): types.SimpleNamespace,
    ("_codecs", "encode"): _SafeCallable("_codecs.encode", _latin1_encode),
    ("torch", "Size"): _SafeCallable("torch.Size", _torch_size),
    ("torch", "device"): _SafeCallable("torch.device", _torch_device),
    ("torch.serialization", "_get_layout"): _SafeCallable("torch.serialization._get_layout",
                                                          _get_layout),
    ("torch", "Tensor"): _Marker("torch.Tensor"),
    ("torch.nn.parameter", "Parameter"): _Marker("torch.nn.parameter.Parameter"),
    ("torch.storage", "UntypedStorage"): _StorageType("torch.storage.UntypedStorage", None),
  }
  for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
    allowed[(module, "scalar")] = _SafeCallable(f"{module}.scalar", _numpy_scalar)
  # Plain containers that protocol-2 pickles reach through globals.
  for module in ("builtins", "__builtin__"):
    for name, obj in (("set", set), ("frozenset", frozenset), ("complex", complex)):
      allowed[(module, name)] = obj
  for name, fn in (("_rebuild_tensor_v2", _rebuild_tensor_v2),
                   ("_rebuild_tensor_v3", _rebuild_tensor_v3),
                   ("_rebuild_parameter", _rebuild_parameter),
                   ("_rebuild_parameter_with_state", _rebuild_parameter)):
    allowed[("torch._utils", name)] = _SafeCallable(f"torch._utils.{name}", fn)
  allowed[("torch._tensor", "_rebuild_from_type_v2")] = _SafeCallable(
    "torch._tensor._rebuild_from_type_v2", _rebuild_from_type_v2)
  for name, dt in _STORAGE_DTYPES.items():
    allowed[("torch", name)] = _StorageType(f"torch.{name}", dt)
  for name, dt in _TORCH_DTYPES.items():
    allowed[("torch", name)] = _TorchDtype(f"torch.{name}", dt)
  for name in ("strided", "sparse_coo", "sparse_csr", "sparse_csc", "sparse_bsr",
               "sparse_bsc", "_mkldnn", "jagged"):
    allowed[("torch", name)] = _Marker(f"torch.{name}")
  return allowed


_ALLOWED_GLOBALS = _build_allowed_globals()


def _build_opcode_table() -> list[tuple[str, int] | None]:
  """Per opcode byte: how its argument is laid out ('fixed', n), ('len', width), ('line',
  lines) or None for an unknown opcode. Derived from pickletools' opcode descriptions."""
  table: list[tuple[str, int] | None] = [None] * 256
  for op in pickletools.opcodes:
    code = ord(op.code)
    if op.arg is None:
      table[code] = ("fixed", 0)
    elif op.arg.n >= 0:
      table[code] = ("fixed", op.arg.n)
    elif op.arg.n == pickletools.UP_TO_NEWLINE:
      table[code] = ("line", 2 if op.name in ("GLOBAL", "INST") else 1)
    elif op.arg.n == pickletools.TAKEN_FROM_ARGUMENT1:
      table[code] = ("len", 1)
    elif op.arg.n in (pickletools.TAKEN_FROM_ARGUMENT4, pickletools.TAKEN_FROM_ARGUMENT4U):
      table[code] = ("len", 4)
    elif op.arg.n == pickletools.TAKEN_FROM_ARGUMENT8U:
      table[code] = ("len", 8)
  return table


_OPCODE_TABLE = _build_opcode_table()
_CODE_LONG_BINPUT, _CODE_PUT, _CODE_STOP = ord("r"), ord("p"), ord(".")


def _prescan_pickle(data: bytes) -> None:
  """Walk the opcodes of `data` up to STOP, checking every argument fits in the data.

  The C unpickler trusts two kinds of fields that a corrupt pickle can blow up: a memo
  index (LONG_BINPUT 0x0a000000 makes it allocate a multi-GB memo table) and length
  prefixes of some opcodes (BYTEARRAY8 allocates before reading). Rejecting memo indices
  larger than the pickle itself (a real pickler numbers memo entries 0, 1, 2, ..., each
  costing >= 2 bytes) and lengths beyond the end of the data bounds its memory by a small
  multiple of the pickle size. Linear in len(data); no objects are built.
  """
  n = len(data)
  pos = 0
  while pos < n:
    code = data[pos]
    layout = _OPCODE_TABLE[code]
    if layout is None:
      raise pickle.UnpicklingError(f"invalid pickle opcode 0x{code:02x} at byte {pos}")
    kind, width = layout
    start = pos + 1
    if kind == "fixed":
      end = start + width
    elif kind == "len":
      if start + width > n:
        raise pickle.UnpicklingError(f"pickle truncated at byte {pos}")
      length = int.from_bytes(data[start:start + width], "little", signed=(width == 4))
      if length < 0:
        raise pickle.UnpicklingError(f"negative length {length} at byte {pos}")
      end = start + width + length
    else:
      end = start
      for _ in range(width):
        newline = data.find(b"\n", end)
        if newline < 0:
          raise pickle.UnpicklingError(f"pickle truncated at byte {pos} (no newline)")
        end = newline + 1
    if end > n:
      raise pickle.UnpicklingError(
        f"pickle truncated: opcode at byte {pos} needs {end - n} more bytes")
    if code == _CODE_LONG_BINPUT or code == _CODE_PUT:
      try:
        index = (int.from_bytes(data[start:start + 4], "little") if code == _CODE_LONG_BINPUT
                 else int(data[start:end - 1]))
      except ValueError:
        raise pickle.UnpicklingError(f"bad PUT index at byte {pos}") from None
      if not 0 <= index < n:
        raise pickle.UnpicklingError(
          f"memo index {index} at byte {pos} is implausible for a {n}-byte pickle")
    if code == _CODE_STOP:  # the unpickler reads nothing after it
      return
    pos = end
  raise pickle.UnpicklingError("pickle has no STOP opcode (truncated)")


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

  def persistent_load(self, pid: Any) -> _Storage:
    if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
      raise pickle.UnpicklingError(f"unsupported persistent id {pid!r:.200}")
    _, storage_type, key, _location, numel = pid
    if not isinstance(storage_type, _StorageType):
      raise pickle.UnpicklingError(f"persistent id names no storage type: {storage_type!r:.100}")
    if not isinstance(key, str) or not key or len(key) > 64:
      raise pickle.UnpicklingError(f"bad storage key {key!r:.100}")
    numel = _check_int(numel, "storage numel")
    if numel < 0:
      raise pickle.UnpicklingError(f"negative storage numel {numel}")
    itemsize = 1 if storage_type.dtype is None else storage_type.dtype.itemsize
    raw = self._read_raw(key, numel * itemsize)
    return _Storage(raw, storage_type.dtype, f"{self.prefix}data/{key}", self.byteswap)


class _RestrictedUnpickler(pickle.Unpickler):
  """Unpickler that resolves only allow-listed globals and storage persistent ids."""

  def __init__(self, file: io.BytesIO, reader: _ArchiveReader):
    # utf-8: torch's own loader decodes Python-2 era str pickles the same way.
    super().__init__(file, encoding="utf-8")
    self._reader = reader
    self.made_dtypes = False  # whether any _DtypeProxy may be in the result

  def _make_dtype(self, *args) -> _DtypeProxy:
    self.made_dtypes = True
    return _numpy_dtype(*args)

  def find_class(self, module: str, name: str) -> Any:
    if (module, name) == ("numpy", "dtype"):
      return _SafeCallable("numpy.dtype", self._make_dtype)
    obj = _ALLOWED_GLOBALS.get((module, name))
    if obj is None:
      raise CheckpointFormatError(
        f"{self._reader.path}: refusing to unpickle global '{module}.{name}': only tensors "
        f"and plain containers are allowed")
    return obj

  def persistent_load(self, pid: Any) -> Any:
    return self._reader.persistent_load(pid)


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
  with open(path_str, "rb") as f:
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
    unpickler = _RestrictedUnpickler(io.BytesIO(pickle_bytes), reader)
    try:
      _prescan_pickle(pickle_bytes)
      result = unpickler.load()
      if unpickler.made_dtypes:
        result = _resolve_dtype_proxies(result, set())
      return result
    except CheckpointFormatError:
      raise
    except _TensorError as e:
      raise CheckpointFormatError(f"{path}: {e}") from e
    except Exception as e:  # noqa: BLE001
      raise CheckpointFormatError(
        f"{path}: cannot unpickle data.pkl: {type(e).__name__}: {e}") from e


# ------------------------------------------------------------------------- writing

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
    stride = _contiguous_strides(shape)
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
                                  epoch: int | None = None, args: Any = None) -> None:
  """Write `{'model': OrderedDict(state_dict), 'epoch': epoch, 'args': args}`.

  The layout the original HiCMAE code loads (`checkpoint['model']`); entries that are
  None are omitted. `state_dict` maps torch parameter names to numpy (or jax) arrays;
  `args` is stored as a plain dict (see `_plain_args`).
  """
  checkpoint: dict[str, Any] = {"model": collections.OrderedDict(state_dict)}
  if epoch is not None:
    checkpoint["epoch"] = int(epoch)
  if args is not None:
    checkpoint["args"] = _plain_args(args)
  write_torch_checkpoint(path, checkpoint)
