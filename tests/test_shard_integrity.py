"""Shard integrity: sizes and SHA-256 sums recorded by prepare, the start-up size check (a
truncated copy), verify (a same-size corruption), shards that fail to open, splits prepared
before sizes were recorded, and a split read straight from a bucket (GCS emulator)."""
import hashlib
import importlib.util
import json
import logging
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from hicmae_jax import cli
from hicmae_jax.data.format import integrity, schema, split_reader, verify
from hicmae_jax.data.pipeline import records
from hicmae_jax.data.prepare import command as prepare
from hicmae_jax.data.prepare.split_file import PrepareError
from tests.test_cli_errors import CREMA, assert_one_error_line, run_binary

NUM_CLIPS = 4  # at 2 per shard: 2 shards


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
  """A split file of NUM_CLIPS frames folders (3 random PNG frames each) with short wavs."""
  root = tmp_path_factory.mktemp("raw")
  rng = np.random.default_rng(0)
  lines = []
  for i in range(NUM_CLIPS):
    folder = root / f"clip{i}"
    folder.mkdir()
    for k in range(3):
      Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(
          folder / f"img_{k:03d}.png")
    sf.write(str(root / f"clip{i}.wav"), rng.standard_normal(1600) * 0.1, 16000,
             subtype="PCM_16")
    lines.append(f"clip{i} clip{i}.wav {i % 2}")
  (root / "train.txt").write_text("\n".join(lines) + "\n")
  return str(root)


def _prepare(raw, out):
  return prepare.prepare_split(os.path.join(raw, "train.txt"), str(out), "train", root=raw,
                               class_names=("a", "b"), clips_per_shard=2, verbose=False)


@pytest.fixture
def split(raw, tmp_path):
  _prepare(raw, tmp_path / "out")
  return str(tmp_path / "out" / "train")


def _shard(split_dir, index=0):
  info = schema.DatasetInfo.load(split_dir, check_shards=False)
  return os.path.join(split_dir, info.shards[index])


def _truncate(path, fraction=2 / 3):
  data = open(path, "rb").read()
  open(path, "wb").write(data[:int(len(data) * fraction)])


def _flip(path, start_fraction, end_fraction):
  """Inverts the bytes between the two fractions of the file; the size stays."""
  data = bytearray(open(path, "rb").read())
  a, b = int(len(data) * start_fraction), int(len(data) * end_fraction)
  data[a:b] = bytes(x ^ 0xFF for x in data[a:b])
  open(path, "wb").write(bytes(data))


def _drop_sizes(split_dir):
  """dataset_info.json as prepare wrote it before sizes and checksums were recorded."""
  path = os.path.join(split_dir, schema.INFO_FILENAME)
  raw = json.load(open(path))
  del raw["shard_bytes"], raw["shard_sha256"]
  json.dump(raw, open(path, "w"))


def test_prepare_records_sizes_and_checksums(split, raw, caplog):
  info = schema.DatasetInfo.load(split)
  assert info.num_clips == NUM_CLIPS and len(info.shards) == 2
  for name, size, digest in zip(info.shards, info.shard_bytes, info.shard_sha256):
    data = open(os.path.join(split, name), "rb").read()
    assert size == len(data) and digest == hashlib.sha256(data).hexdigest()
  # A re-run keeps both shards (nothing to write) and records the same values.
  assert _prepare(raw, os.path.dirname(split)) == info
  with caplog.at_level(logging.WARNING):
    schema.DatasetInfo.load(split)
  assert not caplog.records


def test_truncated_shard_is_named_at_start_up(split, raw):
  shard = _shard(split, 1)
  _truncate(shard)
  with pytest.raises(integrity.ShardError) as e:
    schema.DatasetInfo.load(split)
  line = cli.error_line(e.value)
  assert cli.is_bad_input(e.value) and "\n" not in line
  for text in (shard, "truncated", "re-copy", "re-run the prepare command",
               f"python -m hicmae_jax.data.verify --split_dir={split}"):
    assert text in line, line
  # The fix works: a re-run of prepare rewrites exactly the damaged shard.
  _prepare(raw, os.path.dirname(split))
  assert schema.DatasetInfo.load(split).num_clips == NUM_CLIPS


def test_eval_binary_names_truncated_shard(split, tmp_path):
  shard = _shard(split)
  _truncate(shard)
  (tmp_path / "ckpt" / "1").mkdir(parents=True)  # a step folder: the split is checked next
  done = run_binary("hicmae_jax.eval_main", f"--config={CREMA}", f"--checkpoint={tmp_path}/ckpt",
                    f"--config.data.test_dir={split}", cwd=tmp_path)
  assert_one_error_line(done, shard, "truncated", "re-copy")


def test_verify_finds_same_size_corruption(split, capsys):
  assert verify.main(["--split_dir", split]) == verify.EXIT_OK
  shard = _shard(split)
  _flip(shard, 0.05, 0.06)  # inside the first record (the shard ends in zero padding)
  schema.DatasetInfo.load(split)  # same size: the start-up check cannot see it
  assert verify.main(["--split_dir", split]) == verify.EXIT_DAMAGED
  errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
  assert len(errors) == 1
  assert shard in errors[0] and "SHA-256 differs" in errors[0] and "re-copy" in errors[0]
  assert _shard(split, 1) not in errors[0]


def test_shard_that_fails_to_open_is_named(split):
  shard = _shard(split)
  _flip(shard, 0.3, 1.0)  # the index and footer at the end: array-record cannot open it
  paths = schema.DatasetInfo.load(split).shard_paths(split)
  for call in (lambda: records.count_records(paths),
               lambda: list(split_reader.iterate_clips(split))):
    with pytest.raises(integrity.ShardError) as e:
      call()
    assert shard in str(e.value) and "re-copy" in str(e.value)
    assert _shard(split, 1) not in str(e.value)


def test_old_split_warns_once_and_record_adds_sizes(split, caplog):
  expected = schema.DatasetInfo.load(split)
  _drop_sizes(split)
  with caplog.at_level(logging.WARNING, logger="hicmae_jax.data.format.integrity"):
    for _ in range(2):
      assert schema.DatasetInfo.load(split).num_clips == NUM_CLIPS
  warnings = [r.getMessage() for r in caplog.records]
  assert len(warnings) == 1 and "records no shard sizes" in warnings[0]
  assert f"verify --split_dir={split} --record" in warnings[0]
  # Without --record: every record is read and decoded, nothing written.
  assert verify.main(["--split_dir", split]) == verify.EXIT_OK
  assert not schema.DatasetInfo.load(split, check_shards=False).shard_bytes
  assert verify.main(["--split_dir", split, "--record"]) == verify.EXIT_OK
  assert schema.DatasetInfo.load(split) == expected


def test_record_refuses_a_damaged_old_split(split, capsys):
  _drop_sizes(split)
  shard = _shard(split)
  _flip(shard, 0.05, 0.06)  # inside the first record: opens, that record does not read
  assert verify.main(["--split_dir", split, "--record"]) == verify.EXIT_DAMAGED
  assert shard in capsys.readouterr().err
  assert not schema.DatasetInfo.load(split, check_shards=False).shard_bytes


@pytest.mark.slow
def test_prepare_refuses_a_bucket_output(raw):
  with pytest.raises(PrepareError, match="gcloud storage cp -r .*verify"):
    _prepare(raw, "gs://bucket/data")


# ------------------------------------------------------------------------------- bucket --

def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.fixture
def bucket(monkeypatch, tmp_path):
  """gs://test-bucket on a local GCS emulator, seen by gcsfs (etils.epath) and by array-record's
  own GCS client; None of it leaves the machine."""
  pytest.importorskip("gcp_storage_emulator")
  if importlib.util.find_spec("gcsfs") is None:
    pytest.skip("gcsfs is not installed")
  port = _free_port()
  server = subprocess.Popen(
      [sys.executable, "-m", "gcp_storage_emulator", "start", "--host=127.0.0.1",
       f"--port={port}", "--in-memory", "--default-bucket=test-bucket"],
      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  try:
    for _ in range(100):
      try:
        socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
        break
      except OSError:
        time.sleep(0.1)
    url = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", url)  # gcsfs
    monkeypatch.setenv("CLOUD_STORAGE_EMULATOR_ENDPOINT", url)  # array-record (google-cloud-cpp)
    # No credential lookup, and no bucket-type probe (a gRPC API the emulator does not serve).
    # Both are read once, at import (google.auth compares with "true"): gcsfs is imported
    # only now, else a later test in this process (test_cloud.py) probes the bucket type
    # and waits on the metadata server's retries.
    monkeypatch.setenv("NO_GCE_CHECK", "true")
    monkeypatch.setenv("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
    import gcsfs
    from etils.epath import backend
    gcsfs.GCSFileSystem.clear_instance_cache()  # instances remember the endpoint they saw
    backend.fsspec_backend._get_filesystem.cache_clear()
    yield "gs://test-bucket"
  finally:
    server.terminate()
    server.wait(timeout=30)
    if "gcsfs" in sys.modules:
      sys.modules["gcsfs"].GCSFileSystem.clear_instance_cache()


def test_split_on_a_bucket(split, bucket, capsys):
  from etils import epath
  remote = f"{bucket}/crema/train"
  for name in os.listdir(split):
    if os.path.isfile(os.path.join(split, name)):
      epath.Path(f"{remote}/{name}").write_bytes(open(os.path.join(split, name), "rb").read())
  info = schema.DatasetInfo.load(remote)
  paths = info.shard_paths(remote)
  assert paths[0] == f"{remote}/{info.shards[0]}"
  source = integrity.open_source(paths)  # array-record reads gs:// itself
  assert len(source) == NUM_CLIPS
  assert schema.decode_clip(source[3]).clip_id == "clip3"
  assert verify.main(["--split_dir", remote]) == verify.EXIT_OK
  # A copy cut short on the bucket is named at start-up, as on a disk.
  data = open(_shard(split), "rb").read()
  epath.Path(paths[0]).write_bytes(data[:len(data) * 2 // 3])
  with pytest.raises(integrity.ShardError, match=f"{paths[0]} is .* bytes.*truncated"):
    schema.DatasetInfo.load(remote)
  assert verify.main(["--split_dir", remote]) == verify.EXIT_DAMAGED
  assert paths[0] in capsys.readouterr().err
