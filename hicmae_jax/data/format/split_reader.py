"""Opening a prepared split (its DatasetInfo and checked shard paths, which the pipelines use
too) and reading it clip by clip, fully decoded (tools and tests; training reads records
through the grain pipeline, data/pipeline/records.py, and small fields through
data/format/record_index.py).
"""
from __future__ import annotations

import contextlib
import dataclasses
from typing import Iterator

from hicmae_jax.data.format import integrity, schema

_READ_CHUNK = 64  # records per ArrayRecord read call


@dataclasses.dataclass(frozen=True)
class Split:
  """A prepared split opened once (`open_split`): its folder, DatasetInfo and shard paths in
  order, the shards checked against their recorded sizes. The trainer opens its train split
  once and hands it to the pipeline factories, which open a folder name themselves."""
  directory: str
  info: schema.DatasetInfo
  paths: list[str]


def open_split(split: str | Split) -> Split:
  """A split folder opened (a Split is returned as it is); raises FileNotFoundError for
  unprepared splits (or a missing shard) and integrity.ShardError for shards whose size
  differs from the recorded one (the one check, in shard_paths)."""
  if isinstance(split, Split):
    return split
  info = schema.DatasetInfo.load(split, check_shards=False)
  return Split(split, info, info.shard_paths(split))


def read_split(split_dir: str) -> tuple[schema.DatasetInfo, list[str]]:
  """-> (DatasetInfo, shard paths in order) of `open_split(split_dir)`, for the tools."""
  split = open_split(split_dir)
  return split.info, split.paths


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


def iterate_clips(split_dir: str, limit: int = 0) -> Iterator[schema.Clip]:
  """Yields every clip of a prepared split (the first `limit` when > 0), in clip_index order
  (decode_clip on each record).

  A shard that cannot be opened or read raises integrity.ShardError naming it; a record that
  does not decode, schema.RecordError naming the shard and record."""
  # closing: a record that fails to decode closes its shard's reader at once.
  with contextlib.closing(iterate_records(split_dir)) as records:
    for i, (path, index, data) in enumerate(records):
      if limit and i >= limit:
        return
      try:
        yield schema.decode_clip(data)
      except schema.RecordError as e:
        raise schema.RecordError(f"{path} record {index}: {e}") from None
