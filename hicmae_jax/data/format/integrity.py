"""Shard integrity: the byte sizes and SHA-256 sums `prepare` records, and the checks on them.

`prepare` writes each shard's size and SHA-256 into dataset_info.json (`shard_bytes`,
`shard_sha256`). Opening a split (`schema.DatasetInfo.load`) compares the sizes with one stat
per shard, so a copy cut short fails at start-up with the shard's name and the fix instead of
array-record's traceback later; `python -m hicmae_jax.data.verify` compares the checksums (a
shard damaged in the middle keeps its size). `open_source` / `open_reader` turn array-record's
open errors, which name no file, into a ShardError naming the shard.

Paths may be local or remote (gs://...): sizes and bytes go through etils.epath, and
array-record 0.8.6 opens gs:// shards itself (BUILD.md, "Data on a bucket").
"""
from __future__ import annotations

import concurrent.futures
import hashlib
import logging
import os
from typing import Callable, Sequence

# By name: `paths` is this module's word for a list of shard paths.
from hicmae_jax.paths import as_path, is_remote

log = logging.getLogger(__name__)

# Read size for checksums: large enough that hashlib releases the GIL and a remote read is one
# request per 8 MiB, small enough to keep memory flat over many threads.
HASH_CHUNK_BYTES = 8 << 20
# Threads for per-shard stats and opens on a bucket (one request each); local files need none.
_REMOTE_THREADS = 16
VERIFY_COMMAND = "python -m hicmae_jax.data.verify --split_dir={split_dir}"
FIX = ("re-copy the shard(s) from where the split was prepared, or delete them and re-run the "
       "prepare command that wrote the split (it rewrites only missing or damaged shards)")


class ShardError(ValueError):
  """A shard file that is truncated, damaged or unreadable; the message names it and the fix."""


def join(folder: str, name: str) -> str:
  """`folder/name` for local paths and URLs alike (os.path.join keeps gs://b/x as it is)."""
  return os.path.join(str(folder), name)


def file_size(path: str) -> int | None:
  """Bytes in `path`, None when it does not exist (one stat, also for gs://)."""
  if not is_remote(path):
    try:
      return os.stat(path).st_size
    except FileNotFoundError:
      return None
  p = as_path(path)
  try:
    return int(p.stat().length)
  except FileNotFoundError:
    return None


def file_sizes(paths: Sequence[str]) -> list[int | None]:
  """file_size of each path; remote ones in parallel (each stat is a request)."""
  if not any(is_remote(p) for p in paths):
    return [file_size(p) for p in paths]
  with concurrent.futures.ThreadPoolExecutor(min(_REMOTE_THREADS, len(paths))) as pool:
    return list(pool.map(file_size, paths))


def sha256_of(path: str, on_bytes: Callable[[int], None] | None = None) -> str:
  """Hex SHA-256 of a file's bytes; on_bytes(n) is called after each chunk (progress)."""
  digest = hashlib.sha256()
  opener = open if not is_remote(path) else (lambda p, m: as_path(p).open(m))
  with opener(path, "rb") as f:
    while True:
      chunk = f.read(HASH_CHUNK_BYTES)
      if not chunk:
        break
      digest.update(chunk)
      if on_bytes is not None:
        on_bytes(len(chunk))
  return digest.hexdigest()


def _listing(items: Sequence[str], limit: int = 5) -> str:
  return "; ".join(items[:limit]) + (f"; and {len(items) - limit} more" if len(items) > limit
                                     else "")


def check_sizes(split_dir: str, names: Sequence[str], expected: Sequence[int]) -> list[str]:
  """Shard paths of `split_dir`, after checking every shard exists and has its recorded size.

  expected: bytes per shard as recorded by prepare (empty: not recorded, only existence is
  checked). Raises FileNotFoundError naming missing shards, ShardError naming shards whose
  size differs (a truncated copy, most often) with the fix."""
  paths = [join(split_dir, n) for n in names]
  sizes = file_sizes(paths)
  missing = [p for p, s in zip(paths, sizes) if s is None]
  if missing:
    raise FileNotFoundError(
        f"{len(missing)} of {len(paths)} shard files of {split_dir} are missing: "
        f"{_listing(missing)}. Copy them again from where the split was prepared, or re-run "
        f"its prepare command")
  if expected:
    if len(expected) != len(names):
      raise ShardError(f"{join(split_dir, 'dataset_info.json')} lists {len(names)} shards "
                       f"but {len(expected)} sizes: re-run the prepare command for this split")
    bad = []
    for path, size, want in zip(paths, sizes, expected):
      if size != want:
        kind = "truncated (an interrupted copy?)" if size < want else "longer than written"
        bad.append(f"{path} is {size} bytes, dataset_info.json records {want}: {kind}")
    if bad:
      raise ShardError(f"{len(bad)} of {len(paths)} shards of {split_dir} are damaged: "
                       f"{_listing(bad)}. Fix: {FIX}; then check the split with "
                       f"`{VERIFY_COMMAND.format(split_dir=split_dir)}`")
  return paths


def unreadable(paths: Sequence[str]) -> list[tuple[str, str]]:
  """(path, reason) of each shard array-record cannot open or count (footer and index read)."""
  from array_record.python.array_record_module import ArrayRecordReader

  def problem(path: str) -> str | None:
    try:
      reader = ArrayRecordReader(path, "readahead_buffer_size:0")
      try:
        reader.num_records()
      finally:
        reader.close()
    except Exception as e:  # noqa: BLE001 - array-record raises RuntimeError/ValueError/...
      return f"{type(e).__name__}: {e}"
    return None

  workers = min(_REMOTE_THREADS if any(is_remote(p) for p in paths) else 4, len(paths)) or 1
  with concurrent.futures.ThreadPoolExecutor(workers) as pool:
    reasons = list(pool.map(problem, paths))
  return [(p, r) for p, r in zip(paths, reasons) if r is not None]


def unreadable_error(found: Sequence[tuple[str, str]], total: int) -> ShardError:
  """The one-line error for shards that fail to open (see `unreadable`)."""
  items = [f"{p} ({' '.join(r.split())})" for p, r in found]
  return ShardError(f"{len(found)} of {total} shards cannot be read: {_listing(items)}. "
                    f"Fix: {FIX}")


def open_source(paths: Sequence[str]):
  """grain.sources.ArrayRecordDataSource over `paths`; a shard that fails to open raises
  ShardError naming it (array-record's own error names no file)."""
  import grain
  try:
    return grain.sources.ArrayRecordDataSource(list(paths))
  except Exception as e:  # noqa: BLE001 - sorted below: a named shard, or re-raised as is
    found = unreadable(paths)
    if not found:
      raise
    raise unreadable_error(found, len(paths)) from e


def open_reader(path: str, options: str = ""):
  """array-record's ArrayRecordReader for one shard; failing to open raises ShardError."""
  from array_record.python.array_record_module import ArrayRecordReader
  try:
    reader = ArrayRecordReader(path, options)
  except Exception as e:  # noqa: BLE001 - array-record raises RuntimeError/ValueError/...
    raise unreadable_error([(path, f"{type(e).__name__}: {e}")], 1) from e
  try:
    reader.num_records()  # reads the footer and index: where a damaged file fails
  except Exception as e:  # noqa: BLE001
    close_reader(reader, path, quiet=True)
    raise unreadable_error([(path, f"{type(e).__name__}: {e}")], 1) from e
  return reader


def close_reader(reader, path: str, quiet: bool = False) -> None:
  """Closes an ArrayRecordReader; its close re-raises an earlier read failure, which names no
  file: ShardError naming `path`, or nothing with `quiet` (a failure already reported)."""
  try:
    reader.close()
  except Exception as e:  # noqa: BLE001 - array-record raises RuntimeError/...
    if not quiet:
      raise unreadable_error([(path, f"{type(e).__name__}: {e}")], 1) from e


_WARNED_UNRECORDED: set[str] = set()


def warn_unrecorded(split_dir: str) -> None:
  """Once per split and process: this split's sizes were not recorded, so no start-up check."""
  if split_dir in _WARNED_UNRECORDED:
    return
  _WARNED_UNRECORDED.add(split_dir)
  log.warning(
      "%s: dataset_info.json records no shard sizes (prepared before they were added), so a "
      "truncated or damaged shard is not caught at start-up. Add them with `%s --record` "
      "(reads every record, then writes sizes and SHA-256 sums), or re-run the prepare "
      "command.", split_dir, VERIFY_COMMAND.format(split_dir=split_dir))
