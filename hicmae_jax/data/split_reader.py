"""Opening a prepared split (its DatasetInfo and checked shard paths, which the pipelines use
too) and reading it clip by clip, fully decoded (tools and tests; training reads records
through the grain pipeline, data/records.py, and small fields through data/record_index.py).
"""
from __future__ import annotations

import contextlib
from typing import Iterator

from hicmae_jax.data import integrity, schema

_READ_CHUNK = 64  # records per ArrayRecord read call


def read_split(split_dir: str) -> tuple[schema.DatasetInfo, list[str]]:
  """-> (DatasetInfo, shard paths in order), for the pipelines and the tools alike; raises
  FileNotFoundError for unprepared splits (or a missing shard) and integrity.ShardError for
  shards whose size differs from the recorded one (the one check, in shard_paths)."""
  info = schema.DatasetInfo.load(split_dir, check_shards=False)
  return info, info.shard_paths(split_dir)


def iterate_records(split_dir: str) -> Iterator[tuple[str, int, bytes]]:
  """(shard path, record index in that shard, record bytes) for every record of a prepared
  split, in clip_index order (shards in dataset_info order).

  A shard that cannot be opened or read raises integrity.ShardError naming it."""
  _, paths = read_split(split_dir)
  for path in paths:
    reader = integrity.open_reader(path)
    try:
      n = reader.num_records()
      for start in range(0, n, _READ_CHUNK):
        stop = min(n, start + _READ_CHUNK)
        try:
          batch = reader.read(start, stop)
        except Exception as e:  # noqa: BLE001 - array-record's error names no file
          raise integrity.unreadable_error(
              [(path, f"records {start}-{stop - 1}: {type(e).__name__}: {e}")], 1) from e
        for offset, data in enumerate(batch):
          yield path, start + offset, data
    except BaseException:  # also GeneratorExit: a caller that stops early
      integrity.close_reader(reader, path, quiet=True)
      raise
    integrity.close_reader(reader, path)


def iterate_clips(split_dir: str) -> Iterator[schema.Clip]:
  """Yields every clip of a prepared split, in clip_index order (decode_clip on each record).

  A shard that cannot be opened or read raises integrity.ShardError naming it; a record that
  does not decode, schema.RecordError naming the shard and record."""
  # closing: a record that fails to decode closes its shard's reader at once.
  with contextlib.closing(iterate_records(split_dir)) as records:
    for path, index, data in records:
      try:
        yield schema.decode_clip(data)
      except schema.RecordError as e:
        raise schema.RecordError(f"{path} record {index}: {e}") from None
