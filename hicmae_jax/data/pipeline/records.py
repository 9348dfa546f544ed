"""Records of a prepared split as the pipelines read them: this process's share, random access
with read errors returned (not raised), and the training stream of global-batch slices.

Random streams: every purpose has its own tag, so the streams of one (seed, index) never
coincide: epoch order (TAG_SHUFFLE), per-example augmentation (TAG_EXAMPLE), per-batch mixing
(TAG_BATCH), evaluation (TAG_EVAL).
"""
from __future__ import annotations

import dataclasses
import os
import sys
from typing import Sequence

import grain
import numpy as np

from hicmae_jax.data.format import integrity

TAG_SHUFFLE, TAG_EXAMPLE, TAG_BATCH, TAG_EVAL = 11, 23, 37, 41


class RecordSource:
  """Random access to this process's records: item i -> (record index, bytes | None, error,
  locator).

  Index -1 is a padding slot (eval pads every process to the same clip count). A read error
  is returned, not raised, so the group function can count it like a decode error."""

  def __init__(self, paths: Sequence[str], indices: np.ndarray):
    self._paths = list(paths)
    self._indices = np.asarray(indices, dtype=np.int64)
    self._source = grain.sources.ArrayRecordDataSource(self._paths)

  def __len__(self) -> int:
    return int(self._indices.shape[0])

  def __getitem__(self, i: int):
    index = int(self._indices[i])
    if index < 0:
      return index, None, None, ""
    try:
      return index, self._source[index], None, self._locator
    except Exception as e:  # noqa: BLE001 - any read failure is a skipped record
      return index, None, f"read failed ({type(e).__name__}: {e})", self._locator

  @property
  def _locator(self) -> ShardLocator:
    return ShardLocator(tuple(self._paths))

  def __repr__(self) -> str:
    return f"RecordSource({len(self)} records of {len(self._paths)} shards)"


@dataclasses.dataclass(frozen=True)
class ShardLocator:
  """Turns a split-wide record index into 'shard-00000-of-00004.array_record record k' for
  skip logs (shard sizes are read only when a record is actually skipped)."""
  paths: tuple[str, ...]

  def __call__(self, index: int) -> str:
    starts = _shard_starts(self.paths)
    shard = int(np.searchsorted(starts, index, side="right")) - 1
    return f"{os.path.basename(self.paths[shard])} record {index - int(starts[shard])}"


_SHARD_STARTS: dict[tuple[str, ...], np.ndarray] = {}


def _shard_starts(paths: tuple[str, ...]) -> np.ndarray:
  if paths not in _SHARD_STARTS:
    counts = [len(grain.sources.ArrayRecordDataSource([p])) for p in paths]
    _SHARD_STARTS[paths] = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
  return _SHARD_STARTS[paths]


def process_slice(shard_index: int | None, shard_count: int | None) -> tuple[int, int]:
  """(index, count) of this process; defaults to jax's process index/count."""
  if shard_index is None or shard_count is None:
    opts = grain.sharding.ShardByJaxProcess(drop_remainder=True)  # imports jax lazily
    shard_index = opts.shard_index if shard_index is None else shard_index
    shard_count = opts.shard_count if shard_count is None else shard_count
  if not 0 <= shard_index < shard_count:
    raise ValueError(f"shard_index {shard_index} not in [0, {shard_count})")
  return int(shard_index), int(shard_count)


def count_records(paths: Sequence[str]) -> int:
  # integrity.open_source: a shard that fails to open is named (array-record's error is not).
  return len(integrity.open_source(paths))


_EPOCH_ORDERS: dict[tuple[int, int, int], np.ndarray] = {}


def epoch_order(seed: int, epoch: int, num_records: int) -> np.ndarray:
  """The record order of one epoch: a permutation keyed by (seed, epoch) only, so every
  process computes the same one."""
  key = (int(seed), int(epoch), int(num_records))
  order = _EPOCH_ORDERS.get(key)
  if order is None:
    order = np.random.default_rng([key[0], TAG_SHUFFLE, key[1]]).permutation(key[2])
    order.flags.writeable = False
    if len(_EPOCH_ORDERS) >= 4:  # the read threads only ever need the current and next epoch
      _EPOCH_ORDERS.pop(next(iter(_EPOCH_ORDERS)), None)
    _EPOCH_ORDERS[key] = order
  return order


class BatchSlices:
  """The training stream of one process as a random-access source: element j is this process's
  slice of global batch j, i.e. `records_per_slice` consecutive positions of the global record
  stream (epochs of the whole split, each in its own (seed, epoch) order) starting at
  (j * slice_count + slice_index) * records_per_slice.

  A record's global position keys its randomness, and the slice index is the block of
  global-batch rows this process holds, so the global batches do not depend on how many
  processes (or grain workers) build them. Item j -> [(global position, record item), ...]."""

  def __init__(self, records: RecordSource, *, seed: int, shuffle: bool, slice_index: int,
               slice_count: int, records_per_slice: int, num_epochs: int | None):
    self._records = records
    self._seed, self._shuffle = seed, shuffle
    self._index, self._count, self._k = slice_index, slice_count, records_per_slice
    self.num_records = len(records)
    per_batch = records_per_slice * slice_count
    if num_epochs is None:
      self._total = None
      self._len = sys.maxsize
    else:
      total = int(num_epochs) * self.num_records
      if slice_count > 1:  # every process the same number of full slices
        total = total // per_batch * per_batch
      self._total = total
      self._len = -(-total // per_batch)

  def __len__(self) -> int:
    return self._len

  def __getitem__(self, j: int) -> list:
    base = (int(j) * self._count + self._index) * self._k
    items = []
    for g in range(base, base + self._k):
      if self._total is not None and g >= self._total:
        break
      epoch, offset = divmod(g, self.num_records)
      record = (int(epoch_order(self._seed, epoch, self.num_records)[offset])
                if self._shuffle else offset)
      items.append((g, self._records[record]))
    return items

  def __repr__(self) -> str:
    return (f"BatchSlices(slice {self._index}/{self._count}, {self._k} records each, "
            f"{self._records!r})")
