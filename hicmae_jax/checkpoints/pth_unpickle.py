"""Restricted unpickling of a checkpoint's data.pkl (untrusted input: checkpoints are downloaded).

`find_class` only hands out the handful of callables that a checkpoint of plain state dicts
needs, each replaced by a local, side-effect-free stand-in; a linear pre-scan of the opcodes
first rejects the few fields with which a corrupt pickle makes CPython's unpickler allocate
gigabytes. Tensors come back as numpy arrays (copies, never views of the archive), torch
Parameters as plain arrays, `argparse.Namespace` as `types.SimpleNamespace`.
"""
from __future__ import annotations

import collections
import io
import math
import pickle
import pickletools
import types
from typing import Any, Callable

import numpy as np

from hicmae_jax.checkpoints.pth_format import (
  STORAGE_DTYPES,
  TORCH_DTYPES,
  CheckpointFormatError,
  contiguous_strides,
)


class TensorError(ValueError):
  """Inconsistent tensor/storage found by a rebuild stand-in, which does not know the file
  name; the loader re-raises it as CheckpointFormatError with the name prepended."""


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


class StorageType(_Opaque):
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


class Storage:
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


def check_int(value: Any, what: str) -> int:
  # bool is an int subclass; a corrupted pickle may also yield floats or strings here.
  if type(value) is not int:
    raise pickle.UnpicklingError(f"{what} must be an int, got {type(value).__name__}")
  return value


def _check_int_tuple(value: Any, what: str) -> tuple[int, ...]:
  if not isinstance(value, tuple):
    raise pickle.UnpicklingError(f"{what} must be a tuple, got {type(value).__name__}")
  out = tuple(check_int(v, what) for v in value)
  if any(v < 0 for v in out):
    raise pickle.UnpicklingError(f"{what} has negative entries: {out}")
  return out


def _tensor_from_storage(storage: Any, dtype: np.dtype, storage_offset: Any, size: Any,
                         stride: Any) -> np.ndarray:
  """Copy the strided view (offset, size, stride in elements) of `storage` as `dtype`.

  Returns a fresh C-contiguous numpy array of shape `size`; shared storages and
  non-contiguous views work because the view is taken with the saved strides.
  """
  if not isinstance(storage, Storage):
    raise pickle.UnpicklingError(f"tensor storage must be a persistent storage, got {storage!r}")
  offset = check_int(storage_offset, "storage_offset")
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
    raise TensorError(
      f"storage '{storage.record}' has {raw.nbytes} bytes, not a multiple of {dtype} "
      f"itemsize {itemsize}")
  n_elems = raw.nbytes // itemsize
  if 0 in size:
    # Empty tensors read no element, so torch accepts any offset for them.
    return np.zeros(size, dtype=dtype)
  last = offset + sum((s - 1) * st for s, st in zip(size, stride))
  if last >= n_elems:
    raise TensorError(
      f"tensor (offset {offset}, size {size}, stride {stride}) reaches element {last} of "
      f"storage '{storage.record}' which holds {n_elems} {dtype} elements")
  numel = math.prod(size)
  if numel * itemsize > max(raw.nbytes, _MAX_EXPANSION_BYTES):
    raise TensorError(
      f"tensor of size {size} would expand the {raw.nbytes}-byte storage "
      f"'{storage.record}' to {numel * itemsize} bytes; refusing")
  typed = raw.view(carrier)
  if stride == contiguous_strides(size):
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
  if not isinstance(storage, Storage) or storage.dtype is None:
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
  `_numpy_scalar` and, if one is left in the loaded object, by `resolve_dtype_proxies`.
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


def resolve_dtype_proxies(obj: Any, seen: set[int]) -> Any:
  """Replace `_DtypeProxy` objects left in a loaded nest by their numpy dtype (in place
  for dicts/lists/namespaces, rebuilt for tuples). Only run when a proxy was created."""
  if isinstance(obj, _DtypeProxy):
    return obj.dtype
  if id(obj) in seen or isinstance(obj, (np.ndarray, np.generic, str, bytes, int, float)):
    return obj
  seen.add(id(obj))
  if isinstance(obj, types.SimpleNamespace):
    resolve_dtype_proxies(vars(obj), seen)
  elif isinstance(obj, dict):
    for key, value in obj.items():
      obj[key] = resolve_dtype_proxies(value, seen)  # same keys: safe while iterating
  elif isinstance(obj, list):
    for i, value in enumerate(obj):
      obj[i] = resolve_dtype_proxies(value, seen)
  elif isinstance(obj, tuple):
    items = tuple(resolve_dtype_proxies(v, seen) for v in obj)
    if any(a is not b for a, b in zip(items, obj)):
      return items
  return obj


def _torch_size(value=()):
  """`torch.Size` stand-in: a tuple of ints."""
  return tuple(check_int(v, "torch.Size entry") for v in value)


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
    ("torch.storage", "UntypedStorage"): StorageType("torch.storage.UntypedStorage", None),
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
  for name, dt in STORAGE_DTYPES.items():
    allowed[("torch", name)] = StorageType(f"torch.{name}", dt)
  for name, dt in TORCH_DTYPES.items():
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


def prescan_pickle(data: bytes) -> None:
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


class RestrictedUnpickler(pickle.Unpickler):
  """Unpickler that resolves only allow-listed globals and storage persistent ids.

  reader: the open archive (`pth_reader`): its `path` names the file in errors, its
  `persistent_load(pid)` returns the Storage a persistent id names."""

  def __init__(self, file: io.BytesIO, reader: Any):
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

