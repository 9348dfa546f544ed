"""Tests for hicmae_jax.checkpoints.pth_reader / pth_writer (torch.save files without torch).

The torch-backed tests at the bottom run only where torch is importable (a throwaway
venv, not CI); everything else checks the format against the fixtures written by the
original PyTorch code and against hand-built archives.
"""
from __future__ import annotations

import argparse
import collections
import io
import json
import os
import pathlib
import pickle
import struct
import time
import types
import zipfile

import ml_dtypes
import numpy as np
import pytest

from hicmae_jax.checkpoints.pth_reader import CheckpointFormatError, read_torch_checkpoint
from hicmae_jax.checkpoints.pth_writer import save_state_dict_like_original, write_torch_checkpoint

DATA = pathlib.Path(__file__).parent / "data"
FIXTURES = {"pretrain": DATA / "pretrain_tiny.pth", "finetune": DATA / "finetune_tiny.pth"}

ALL_DTYPES = [np.float32, np.float64, np.float16, ml_dtypes.bfloat16, np.int64, np.int32,
              np.int16, np.int8, np.uint8, np.bool_]
# Written via torch>=2.3's `_rebuild_tensor_v3` (no legacy storage class).
V3_DTYPES = [np.uint16, np.uint32, np.uint64, ml_dtypes.float8_e4m3fn, ml_dtypes.float8_e5m2]


def _random_array(rng: np.random.Generator, shape, dtype) -> np.ndarray:
  """Random values of `dtype`; floats include negative zero, inf and nan bit patterns."""
  dtype = np.dtype(dtype)
  if dtype == np.bool_:
    return rng.integers(0, 2, shape).astype(np.bool_)
  if dtype.kind in "iu":
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)
  out = (rng.standard_normal(shape) * 100).astype(dtype)
  flat = out.reshape(-1)
  if flat.size >= 4:
    flat[:4] = np.array([-0.0, np.inf, -np.inf, np.nan]).astype(dtype)
  return out


def _bits(a: np.ndarray) -> np.ndarray:
  """Bit pattern of an array (so nan == nan and -0.0 != 0.0 compare bitwise)."""
  a = np.ascontiguousarray(a)
  if a.dtype == np.bool_:
    return a.view(np.uint8)
  return a.view(f"u{a.dtype.itemsize}") if a.dtype.itemsize in (1, 2, 4, 8) else a


def _assert_bitwise_equal(got: np.ndarray, want: np.ndarray) -> None:
  assert isinstance(got, np.ndarray)
  assert got.dtype == want.dtype, (got.dtype, want.dtype)
  assert got.shape == want.shape, (got.shape, want.shape)
  np.testing.assert_array_equal(_bits(got), _bits(want))


def _zip_bytes(records: dict[str, bytes]) -> bytes:
  buf = io.BytesIO()
  with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
    for name, data in records.items():
      zf.writestr(name, data)
  return buf.getvalue()


# Minimal hand-written protocol-2 pickle pieces, independent of the module's writer.
def _p_str(s: str) -> bytes:
  b = s.encode()
  return b"X" + struct.pack("<I", len(b)) + b


def _p_int(i: int) -> bytes:
  return b"J" + struct.pack("<i", i)


def _p_tuple(items: list[bytes]) -> bytes:
  return b"(" + b"".join(items) + b"t"


def _p_tensor(storage_type: str, key: str, numel: int, offset: int, size, stride) -> bytes:
  pid = _p_tuple([_p_str("storage"), f"ctorch\n{storage_type}\n".encode(), _p_str(key),
                  _p_str("cpu"), _p_int(numel)]) + b"Q"
  args = _p_tuple([pid, _p_int(offset), _p_tuple([_p_int(s) for s in size]),
                   _p_tuple([_p_int(s) for s in stride]), b"\x89",
                   b"ccollections\nOrderedDict\n)R"])
  return b"ctorch._utils\n_rebuild_tensor_v2\n" + args + b"R"


def _p_dict(items: list[tuple[str, bytes]]) -> bytes:
  return b"}(" + b"".join(_p_str(k) + v for k, v in items) + b"u"


def _write(tmp_path: pathlib.Path, name: str, data: bytes) -> pathlib.Path:
  path = tmp_path / name
  path.write_bytes(data)
  return path


# --------------------------------------------------------------------------- fixtures

@pytest.mark.parametrize("which", ["pretrain", "finetune"])
def test_reads_original_fixture(which):
  manifest = json.loads((DATA / "tiny_manifest.json").read_text())
  expected = manifest[f"{which}_state_dict"]
  ckpt = read_torch_checkpoint(FIXTURES[which])
  assert isinstance(ckpt, dict) and "model" in ckpt
  assert ckpt.get("epoch") == 0
  model = ckpt["model"]
  assert isinstance(model, collections.OrderedDict)
  assert list(model) == list(expected)  # same names, same order as the original module
  for name, shape in expected.items():
    value = model[name]
    assert isinstance(value, np.ndarray), name
    assert value.shape == tuple(shape), name
    assert value.dtype == np.float32, name
    assert value.flags.c_contiguous and value.flags.writeable, name
    assert np.isfinite(value).all(), name
  assert len(model) == len(expected)
  total = sum(int(np.prod(s)) for s in expected.values())
  assert sum(v.size for v in model.values()) == total
  assert any(np.any(v != 0) for v in model.values())
  assert np.any(np.concatenate([v.reshape(-1) for v in model.values()]) != 0)


# ------------------------------------------------------------------------- round trip

@pytest.mark.parametrize("dtype", ALL_DTYPES + V3_DTYPES + [np.complex64, np.complex128],
                         ids=lambda d: np.dtype(d).name)
def test_round_trip_dtypes(tmp_path, dtype):
  rng = np.random.default_rng(0)
  base = _random_array(rng, (4, 6, 5), dtype)
  obj = {
    "contiguous": base,
    "transposed": base.transpose(2, 0, 1),  # non-contiguous
    "strided": base[1:, ::2, ::-1],  # offset + step + negative stride
    "scalar": base[:1, 0, 0].reshape(()),  # 0-d array
    "empty": np.zeros((0, 3), dtype=dtype),
    "empty_mid": np.zeros((2, 0, 3), dtype=dtype),
    "fortran": np.asfortranarray(base[:, :, 0]),
  }
  path = tmp_path / "rt.pth"
  write_torch_checkpoint(path, obj)
  got = read_torch_checkpoint(path)
  assert list(got) == list(obj)
  for key, want in obj.items():
    _assert_bitwise_equal(got[key], want)


def test_round_trip_nested_containers(tmp_path):
  rng = np.random.default_rng(1)
  a = rng.standard_normal((3, 2)).astype(np.float32)
  obj = {
    "model": collections.OrderedDict([("w", a), ("b", np.arange(3, dtype=np.int64))]),
    "epoch": 7,
    "list": [1, -1, 255, 256, 65535, 65536, -2**31, 2**31, 2**63, -2**200, 0.5, float("inf"),
             "text", "ünïcødé", None, True, False, []],
    "tuples": ((), (1,), (1, 2), (1, 2, 3), (1, 2, 3, 4)),
    "same_array_twice": [a, a],
    "big_list": list(range(2500)),
    "big_dict": {f"k{i}": i for i in range(1200)},
    1: "int key",
    "numpy_scalars": [np.int64(5), np.float32(0.25), np.bool_(True)],
  }
  path = tmp_path / "nested.pth"
  write_torch_checkpoint(path, obj)
  got = read_torch_checkpoint(path)
  assert isinstance(got["model"], collections.OrderedDict)
  assert type(got) is dict
  _assert_bitwise_equal(got["model"]["w"], a)
  _assert_bitwise_equal(got["model"]["b"], np.arange(3, dtype=np.int64))
  assert got["epoch"] == 7
  assert got["list"] == obj["list"]
  assert got["tuples"] == obj["tuples"]
  for x in got["same_array_twice"]:
    _assert_bitwise_equal(x, a)
  assert got["big_list"] == obj["big_list"]
  assert got["big_dict"] == obj["big_dict"]
  assert got[1] == "int key"
  assert got["numpy_scalars"] == [5, 0.25, True]
  # A plain top-level float survives as a float.
  write_torch_checkpoint(path, 1.5)
  assert read_torch_checkpoint(path) == 1.5


def test_same_array_object_shares_one_storage(tmp_path):
  a = np.arange(6, dtype=np.float32)
  path = tmp_path / "shared.pth"
  write_torch_checkpoint(path, {"x": a, "y": a, "z": a.copy()})
  with zipfile.ZipFile(path) as zf:
    storages = [n for n in zf.namelist() if "/data/" in n]
  assert storages == ["shared/data/0", "shared/data/1"]


def test_written_layout_matches_torch(tmp_path):
  path = tmp_path / "layout.v1.pth"
  write_torch_checkpoint(path, {"w": np.ones((2, 3), np.float32), "b": np.ones(5, np.uint8)})
  raw = path.read_bytes()
  with zipfile.ZipFile(path) as zf:
    names = zf.namelist()
    assert names == ["layout/data.pkl", "layout/.format_version", "layout/.storage_alignment",
                     "layout/byteorder", "layout/data/0", "layout/data/1", "layout/version",
                     "layout/.data/serialization_id"]
    assert zf.read("layout/version") == b"3\n"
    assert zf.read("layout/byteorder") == b"little"
    sid = zf.read("layout/.data/serialization_id")
    assert len(sid) == 40 and sid.isdigit()
    pkl = zf.read("layout/data.pkl")
    assert pkl.startswith(b"\x80\x02")
    assert b"ctorch._utils\n_rebuild_tensor_v2\n" in pkl and b"ctorch\nFloatStorage\n" in pkl
    for info in zf.infolist():
      assert info.compress_type == zipfile.ZIP_STORED
      # Data start from the local header: torch aligns every record to 64 bytes.
      (sig, _, _, _, _, _, _, _, _, name_len, extra_len) = struct.unpack(
        "<IHHHHHIIIHH", raw[info.header_offset:info.header_offset + 30])
      assert sig == 0x04034B50
      assert (info.header_offset + 30 + name_len + extra_len) % 64 == 0, info.filename
  # Identical content -> identical bytes (deterministic serialization id).
  path2 = tmp_path / "layout.pth"
  write_torch_checkpoint(path2, {"w": np.ones((2, 3), np.float32), "b": np.ones(5, np.uint8)})
  assert path2.read_bytes() == raw


def _data_offsets(path: pathlib.Path) -> dict[str, int]:
  """Archive entry -> file offset of its data, read from the local headers."""
  raw = path.read_bytes()
  out = {}
  with zipfile.ZipFile(path) as zf:
    for info in zf.infolist():
      name_len, extra_len = struct.unpack(
        "<HH", raw[info.header_offset + 26:info.header_offset + 30])
      out[info.filename] = info.header_offset + 30 + name_len + extra_len
  return out


def test_zip64_records_stay_aligned(tmp_path, monkeypatch):
  # Storages over 2 GiB get a zip64 extra in their local header, which shifts the data;
  # shrink zipfile's limit so that path runs on a small file.
  monkeypatch.setattr(zipfile, "ZIP64_LIMIT", 1000)
  arrays = {"small": np.arange(10, dtype=np.int64), "big": np.arange(600, dtype=np.float32)}
  path = tmp_path / "z64.pth"
  write_torch_checkpoint(path, arrays)
  offsets = _data_offsets(path)
  assert all(off % 64 == 0 for off in offsets.values()), offsets
  got = read_torch_checkpoint(path)
  for key, want in arrays.items():
    _assert_bitwise_equal(got[key], want)


def test_write_rejects_unsupported_and_is_atomic(tmp_path):
  path = tmp_path / "keep.pth"
  write_torch_checkpoint(path, {"a": np.ones(2, np.float32)})
  before = path.read_bytes()
  for bad in ({"a": object()}, {"a": np.ones(2, "m8[s]")}, {"a": np.array(["s"])},
              {"a": b"bytes"}, {"a": argparse.Namespace(x=1)}, {object(): 1}):
    with pytest.raises((TypeError, ValueError)):
      write_torch_checkpoint(path, bad)
  cyclic: list = []
  cyclic.append(cyclic)
  with pytest.raises(ValueError, match="recursive"):
    write_torch_checkpoint(path, cyclic)
  assert path.read_bytes() == before
  assert sorted(os.listdir(tmp_path)) == ["keep.pth"]  # no temp files left behind


def test_save_state_dict_like_original(tmp_path):
  sd = {"encoder.w": np.ones((2, 2), np.float32), "head.b": np.zeros(3, np.float32)}
  path = tmp_path / "ckpt.pth"
  save_state_dict_like_original(path, sd)
  got = read_torch_checkpoint(path)
  assert set(got) == {"model"}
  assert list(got["model"]) == list(sd)
  args = argparse.Namespace(lr=1e-3, batch_size=np.int64(8), model="hicmae", layers=[1, 2])
  save_state_dict_like_original(path, sd, epoch=3, args=args)
  got = read_torch_checkpoint(path)
  assert got["epoch"] == 3
  assert got["args"] == {"lr": 1e-3, "batch_size": 8, "model": "hicmae", "layers": [1, 2]}
  for k, v in sd.items():
    _assert_bitwise_equal(got["model"][k], v)


# ---------------------------------------------------------------------- hand-built reads

def test_reads_shared_and_strided_storages(tmp_path):
  # One 24-element storage viewed three ways, plus a bool storage with a non-0/1 byte.
  base = np.arange(24, dtype=np.float32)
  pkl = b"\x80\x02" + _p_dict([
    ("full", _p_tensor("FloatStorage", "0", 24, 0, (4, 6), (6, 1))),
    ("t", _p_tensor("FloatStorage", "0", 24, 0, (6, 4), (1, 6))),
    ("sub", _p_tensor("FloatStorage", "0", 24, 7, (2, 2), (6, 2))),
    ("bcast", _p_tensor("FloatStorage", "0", 24, 3, (3, 2), (0, 1))),
    ("flag", _p_tensor("BoolStorage", "1", 3, 0, (3,), (1,))),
  ]) + b"."
  path = _write(tmp_path, "h.pth", _zip_bytes({
    "whatever/data.pkl": pkl, "whatever/data/0": base.tobytes(),
    "whatever/data/1": bytes([0, 1, 7]), "whatever/byteorder": b"little"}))
  got = read_torch_checkpoint(path)
  full = base.reshape(4, 6)
  _assert_bitwise_equal(got["full"], full)
  _assert_bitwise_equal(got["t"], full.T)
  _assert_bitwise_equal(got["sub"], full[1:3, 1:5:2])
  _assert_bitwise_equal(got["bcast"], np.broadcast_to(base[3:5], (3, 2)))
  _assert_bitwise_equal(got["flag"], np.array([False, True, True]))
  got["t"][0, 0] = 99  # results are independent, writable copies
  assert got["full"][0, 0] == 0


def test_reads_big_endian_archive(tmp_path):
  values = np.arange(5, dtype=">i4")
  pkl = b"\x80\x02" + _p_dict([("x", _p_tensor("IntStorage", "0", 5, 0, (5,), (1,)))]) + b"."
  path = _write(tmp_path, "be.pth", _zip_bytes({
    "a/data.pkl": pkl, "a/data/0": values.tobytes(), "a/byteorder": b"big"}))
  np.testing.assert_array_equal(read_torch_checkpoint(path)["x"], np.arange(5))


def test_reads_namespace_and_numpy_scalars(tmp_path):
  args = argparse.Namespace(lr=np.float64(1.5e-4), depth=np.int64(12), name="x",
                            flags=np.bool_(True), size=(160, 160))
  pkl = pickle.dumps({"args": args, "epoch": 4}, protocol=2)
  path = _write(tmp_path, "ns.pth", _zip_bytes({"archive/data.pkl": pkl}))
  got = read_torch_checkpoint(path)
  assert isinstance(got["args"], types.SimpleNamespace)
  assert vars(got["args"]) == vars(args)
  assert type(got["args"].lr) is np.float64 and type(got["args"].depth) is np.int64


@pytest.mark.parametrize("payload,match", [
  (b"\x80\x02cos\nsystem\nX\x05\x00\x00\x00touch\x85R.", "os.system"),
  (b"\x80\x02cbuiltins\neval\nX\x04\x00\x00\x001+1\x85R.", "builtins.eval"),
  (b"\x80\x02c__builtin__\ngetattr\n.", "__builtin__.getattr"),
  (b"\x80\x02ctorch\nload\n.", "torch.load"),
  (b"\x80\x02cnumpy\nload\n.", "numpy.load"),
])
def test_restricted_unpickler_refuses_globals(tmp_path, payload, match):
  path = _write(tmp_path, "evil.pth", _zip_bytes({"archive/data.pkl": payload}))
  with pytest.raises(CheckpointFormatError, match=match) as info:
    read_torch_checkpoint(path)
  assert "refusing to unpickle global" in str(info.value)
  assert str(path) in str(info.value)


def test_restricted_unpickler_executes_nothing(tmp_path):
  marker = tmp_path / "pwned"

  class Evil:
    def __reduce__(self):
      return (os.system, (f"touch {marker}",))

  path = _write(tmp_path, "evil.pth",
                _zip_bytes({"archive/data.pkl": pickle.dumps({"x": Evil()}, protocol=2)}))
  with pytest.raises(CheckpointFormatError, match="refusing to unpickle global"):
    read_torch_checkpoint(path)
  assert not marker.exists()


def test_format_errors_name_file_and_problem(tmp_path):
  good = b"\x80\x02" + _p_dict([("x", _p_tensor("FloatStorage", "0", 4, 0, (4,), (1,)))]) + b"."
  cases = {
    "legacy.pth": (b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19.", "is not a zip archive"),
    "empty.pth": (b"", "is not a zip archive"),
    "cut.pth": (FIXTURES["finetune"].read_bytes()[:5000], "truncated or damaged zip"),
    "nopkl.pth": (_zip_bytes({"a/data/0": b"\0" * 16}), "data.pkl missing"),
    "short.pth": (_zip_bytes({"a/data.pkl": good, "a/data/0": b"\0" * 10}),
                  r"storage 'a/data/0' truncated: need 16 bytes, have 10"),
    "long.pth": (_zip_bytes({"a/data.pkl": good, "a/data/0": b"\0" * 20}),
                 "has 20 bytes, expected 16"),
    "missing.pth": (_zip_bytes({"a/data.pkl": good}), "storage 'a/data/0' missing"),
    "extent.pth": (_zip_bytes({
      "a/data.pkl": b"\x80\x02" + _p_tensor("FloatStorage", "0", 4, 1, (2, 2), (2, 1)) + b".",
      "a/data/0": b"\0" * 16}), "reaches element 4"),
    "garbage_pkl.pth": (_zip_bytes({"a/data.pkl": b"\x80\x02}(X"}), "cannot unpickle"),
    "byteorder.pth": (_zip_bytes({"a/data.pkl": good, "a/byteorder": b"middle"}), "byteorder"),
  }
  for name, (data, match) in cases.items():
    path = _write(tmp_path, name, data)
    with pytest.raises(CheckpointFormatError, match=match) as info:
      read_torch_checkpoint(path)
    assert name in str(info.value), name
  with pytest.raises(FileNotFoundError):
    read_torch_checkpoint(tmp_path / "does_not_exist.pth")


def test_hostile_pickles_fail_fast(tmp_path):
  # Regressions found by fuzzing: each made CPython/numpy misbehave before the guards.
  cases = {
    # LONG_BINPUT with a huge memo index: the C unpickler would allocate a ~16 GB memo.
    "memo": b"\x80\x02N" + b"r" + struct.pack("<I", 0x7FFFFF00) + b".",
    # BYTEARRAY8 announcing 2**40 bytes: allocated before the (short) data is read.
    "bytearray": b"\x80\x05\x96" + struct.pack("<Q", 1 << 40) + b"x.",
    # numpy dtype BUILD state with 6 instead of 8 fields: numpy's __setstate__ segfaults.
    "dtype_state": (b"\x80\x02cnumpy\ndtype\nX\x02\x00\x00\x00f8\x89\x88\x87R"
                    b"(K\x03X\x01\x00\x00\x00<NJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb."),
    # numpy scalar of object dtype (would hand back an arbitrary object).
    "object_dtype": b"\x80\x02cnumpy\ndtype\nX\x02\x00\x00\x00O8\x89\x88\x87R.",
    # BUILD on an allowed stand-in, trying to attach state to a shared object.
    "build_standin": b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n}b.",
  }
  start = time.monotonic()
  for name, payload in cases.items():
    with pytest.raises(CheckpointFormatError):
      read_torch_checkpoint(io.BytesIO(_zip_bytes({"a/data.pkl": payload})))
  assert time.monotonic() - start < 2


def test_numpy_dtype_survives_in_args():
  payload = pickle.dumps({"dtype": np.dtype(">i4"), "t": (np.dtype("f2"), 1)}, protocol=2)
  got = read_torch_checkpoint(io.BytesIO(_zip_bytes({"a/data.pkl": payload})))
  assert got["dtype"] == np.dtype(">i4") and isinstance(got["dtype"], np.dtype)
  assert got["t"] == (np.dtype("f2"), 1)


# ------------------------------------------------------------------------------ fuzz

def _expect_clean(data: bytes) -> None:
  # In-memory: the test is about the parser, and file writes would dominate its runtime.
  try:
    read_torch_checkpoint(io.BytesIO(data))
  except CheckpointFormatError:
    pass


def test_fuzz_never_raises_other_errors(tmp_path):
  start = time.monotonic()
  fixture = FIXTURES["finetune"].read_bytes()
  small_path = tmp_path / "small.pth"
  write_torch_checkpoint(small_path, {
    "model": collections.OrderedDict(
      [("w", np.arange(12, dtype=np.float32).reshape(3, 4)), ("m", np.ones(3, np.bool_)),
       ("t", np.arange(6, dtype=np.int64).reshape(2, 3).T)]),
    "epoch": 1, "meta": [1.5, "x", (2, 3)]})
  small = small_path.read_bytes()
  with zipfile.ZipFile(small_path) as zf:
    small_records = {n: zf.read(n) for n in zf.namelist()}
  # Second pickle to corrupt: training args with numpy scalars (numpy dtype/scalar paths).
  args = argparse.Namespace(lr=np.float64(1e-3), depth=np.int64(4), flag=np.bool_(True),
                            name="x", sizes=[1, 2])
  pickles = [small_records["small/data.pkl"],
             pickle.dumps({"args": args, "epoch": 2, "od": collections.OrderedDict(a=1)},
                          protocol=2)]
  for seed in range(300):
    r = np.random.default_rng(seed)
    # 1. random bytes, sometimes dressed up with a zip signature
    junk = r.bytes(int(r.integers(0, 3000)))
    _expect_clean(b"PK\x03\x04" + junk if seed % 2 else junk)
    # 2. truncation of the fixture
    _expect_clean(fixture[:int(r.integers(0, len(fixture)))])
    # 3. one corrupted byte anywhere in the fixture's zip
    data = bytearray(fixture)
    pos = int(r.integers(0, len(data)))
    data[pos] = (data[pos] + int(r.integers(1, 256))) % 256
    _expect_clean(bytes(data))
    # 4. corrupted data.pkl inside an intact zip (reaches the unpickler and the tensor
    #    rebuild; a byte corruption of the zip mostly stops at a CRC check)
    pkl = bytearray(pickles[seed % 2])
    for _ in range(int(r.integers(1, 4))):
      pos = int(r.integers(0, len(pkl)))
      pkl[pos] = int(r.integers(0, 256))
    _expect_clean(_zip_bytes(dict(small_records, **{"small/data.pkl": bytes(pkl)})))
    # 5. one corrupted byte of the small archive (directory and headers are a large
    #    share of it, unlike the fixture's)
    data = bytearray(small)
    pos = int(r.integers(0, len(data)))
    data[pos] ^= int(r.integers(1, 256))
    _expect_clean(bytes(data))
  # The file-path entry point takes the same route; spot-check it on disk.
  path = tmp_path / "fuzz.pth"
  for seed in range(5):
    path.write_bytes(fixture[:len(fixture) * seed // 5])
    with pytest.raises(CheckpointFormatError):
      read_torch_checkpoint(path)
  assert time.monotonic() - start < 20


# ----------------------------------------------------------------- real torch (optional)

def test_torch_loads_written_file(tmp_path):
  torch = pytest.importorskip("torch", reason="optional cross-check with real torch: "
                              "pip install torch")
  rng = np.random.default_rng(5)
  obj = {"model": collections.OrderedDict(), "epoch": 2, "meta": [1, 2.5, "s", None, (1, 2)]}
  for dtype in ALL_DTYPES + V3_DTYPES + [np.complex64]:
    name = np.dtype(dtype).name
    base = _random_array(rng, (3, 4), dtype)
    obj["model"][name] = base
    obj["model"][f"{name}.t"] = base.T
    obj["model"][f"{name}.0d"] = base[:1, 0].reshape(())
    obj["model"][f"{name}.empty"] = base[:0]
  path = tmp_path / "for_torch.pth"
  write_torch_checkpoint(path, obj)
  for kwargs in ({"weights_only": True}, {"weights_only": True, "mmap": True}, {}):
    got = torch.load(path, map_location="cpu", **kwargs)
    assert got["epoch"] == 2 and got["meta"] == obj["meta"]
    assert list(got["model"]) == list(obj["model"])
    for key, want in obj["model"].items():
      t = got["model"][key]
      assert tuple(t.shape) == want.shape, key
      assert t.is_contiguous(), key
      want_c = np.array(want, order="C")  # (ascontiguousarray would make 0-d arrays 1-d)
      if want.dtype.type.__module__ == "ml_dtypes":  # bfloat16 / float8: no torch .numpy()
        assert str(t.dtype) == f"torch.{want.dtype.name}", (t.dtype, want.dtype)
        carrier = torch.int16 if want.dtype.itemsize == 2 else torch.int8
        np.testing.assert_array_equal(t.view(carrier).numpy().view(f"u{want.dtype.itemsize}"),
                                      want_c.view(f"u{want.dtype.itemsize}"))
      else:
        _assert_bitwise_equal(t.numpy(), want_c)


def test_reads_file_written_by_torch(tmp_path):
  torch = pytest.importorskip("torch", reason="optional cross-check with real torch: "
                              "pip install torch")
  base = torch.arange(60, dtype=torch.float32).reshape(5, 12)
  linear = torch.nn.Linear(4, 3)
  sd = collections.OrderedDict([
    ("base", base),
    ("transposed", base.t()),  # shares base's storage, non-contiguous
    ("slice", base[1:4, 2:9:3]),  # storage offset + step
    ("expanded", base[0, :3].expand(4, 3)),  # stride 0
    ("bf16", torch.randn(3, 5).to(torch.bfloat16)[:, 1:]),
    ("half", torch.randn(4).half()),
    ("long", torch.arange(-3, 3)),
    ("bool", torch.tensor([True, False, True])),
    ("u16", torch.arange(5).to(torch.uint16)),  # pickled via _rebuild_tensor_v3
    ("scalar", torch.tensor(3.25, dtype=torch.float64)),
    ("empty", torch.zeros(0, 4)),
    ("param", linear.weight),  # nn.Parameter
  ])
  path = tmp_path / "torch_saved.pth"
  args = argparse.Namespace(lr=np.float64(1e-3), epochs=np.int64(3), name="x")
  torch.save({"model": sd, "epoch": 1, "args": args, "state": linear.state_dict()}, path)
  got = read_torch_checkpoint(path)
  assert got["epoch"] == 1
  assert vars(got["args"]) == vars(args)
  for key, t in sd.items():
    t = t.detach()
    want = (t.contiguous().view(torch.int16).numpy().view(ml_dtypes.bfloat16)
            if t.dtype == torch.bfloat16 else t.contiguous().numpy())
    _assert_bitwise_equal(got["model"][key], want)
  _assert_bitwise_equal(got["state"]["bias"], linear.bias.detach().numpy())
  # And our writer's output of what we read goes back into torch unchanged.
  path2 = tmp_path / "again.pth"
  write_torch_checkpoint(path2, {"model": got["model"]})
  again = torch.load(path2, weights_only=True)["model"]
  for key, t in sd.items():
    assert torch.equal(again[key], t.detach().contiguous()), key
