"""The PyTorch `torch.save` file format, shared by the .pth reader and writer (no torch needed).

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
"""
from __future__ import annotations

import ml_dtypes
import numpy as np


class CheckpointFormatError(ValueError):
  """The file is not a readable torch zip checkpoint (message names file and problem)."""


# ----------------------------------------------------------------------------- dtypes

# Legacy typed-storage class name (what `_rebuild_tensor_v2` pickles) -> numpy dtype.
STORAGE_DTYPES: dict[str, np.dtype] = {
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
TORCH_DTYPES: dict[str, np.dtype] = {
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


def contiguous_strides(size: tuple[int, ...]) -> tuple[int, ...]:
  """torch's C-contiguous strides in elements (a zero-size dim counts as 1)."""
  stride, step = [], 1
  for s in reversed(size):
    stride.append(step)
    step *= max(s, 1)
  return tuple(reversed(stride))
