"""Reading a prepared split clip by clip, fully decoded (tools and tests; training reads
through the grain pipeline, data/records.py, and small fields through data/record_index.py).
"""
from __future__ import annotations

from typing import Iterator

from hicmae_jax.data import integrity
from hicmae_jax.data import schema


def read_split(split_dir: str) -> tuple[schema.DatasetInfo, list[str]]:
  """-> (DatasetInfo, shard paths in order); raises FileNotFoundError for unprepared splits
  and integrity.ShardError for shards whose size differs from the recorded one."""
  info = schema.DatasetInfo.load(split_dir, check_shards=False)
  return info, info.shard_paths(split_dir)


def iterate_clips(split_dir: str) -> Iterator[schema.Clip]:
  """Yields every clip of a prepared split, in shard order (decode_clip on each record).

  A shard that cannot be opened or read raises integrity.ShardError naming it."""
  _, paths = read_split(split_dir)
  for path in paths:
    reader = integrity.open_reader(path)
    try:
      n = reader.num_records()
      for start in range(0, n, 64):
        try:
          batch = reader.read(start, min(n, start + 64))
        except Exception as e:  # noqa: BLE001 - array-record's error names no file
          raise integrity.unreadable_error(
              [(path, f"records {start}-{min(n, start + 64) - 1}: {type(e).__name__}: {e}")],
              1) from e
        for offset, data in enumerate(batch):
          try:
            yield schema.decode_clip(data)
          except schema.RecordError as e:
            raise schema.RecordError(f"{path} record {start + offset}: {e}") from None
    except BaseException:  # also GeneratorExit: a caller that stops early
      integrity.close_reader(reader, path, quiet=True)
      raise
    integrity.close_reader(reader, path)
