"""A few small fields of every record of a prepared split, in record order, without decoding
frames or audio (clip ids for per-clip predictions, source paths for the leakage check).

A record is a msgpack map (`schema.encode_clip`); the map is walked and every value other than
the wanted ones is skipped, so a split of JPEG-laden records is read at disk speed. Record i
of the result is the record the pipelines call clip_index i (shards in dataset_info order).
"""
from __future__ import annotations

import contextlib
from typing import Sequence

import msgpack

from hicmae_jax.data.format import schema, split_reader


def _fields_of(record: bytes, names: Sequence[str]) -> dict[str, object]:
  """{name: value} of one record; falls back to a full decode when the bytes are not a map."""
  unpacker = msgpack.Unpacker(raw=False, strict_map_key=True)
  unpacker.feed(record)
  try:
    size = unpacker.read_map_header()
    out = {}
    for _ in range(size):
      key = unpacker.unpack()
      if key in names:
        out[key] = unpacker.unpack()
      else:
        unpacker.skip()
  except (msgpack.UnpackException, ValueError):
    clip = schema.decode_clip(record)  # raises RecordError naming what is wrong
    return {name: getattr(clip, name) for name in names}
  missing = [n for n in names if n not in out]
  if missing:
    raise schema.RecordError(f"field(s) {missing} missing")
  return out


def read_fields(split_dir: str, names: Sequence[str] = ("clip_id",)) -> list[dict[str, object]]:
  """[{name: value}] for every record of the split, in record order.

  Raises FileNotFoundError for an unprepared split, integrity.ShardError for a shard that
  cannot be read and RecordError naming the shard and record that lacks a field."""
  rows: list[dict[str, object]] = []
  with contextlib.closing(split_reader.iterate_records(split_dir)) as records:
    for path, index, data in records:
      try:
        rows.append(_fields_of(data, tuple(names)))
      except schema.RecordError as e:
        raise schema.RecordError(f"{path} record {index}: {e}") from None
  return rows


def clip_ids(split_dir: str) -> list[str]:
  """The clip id of every record of the split, in record (clip_index) order."""
  return [str(row["clip_id"]) for row in read_fields(split_dir, ("clip_id",))]
