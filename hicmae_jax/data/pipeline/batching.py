"""grain stages after the per-record groups: batching in the worker, skip statistics in the
main process, and the dataset object the `make_*_dataset` factories return.

A group is {"position", "records", "skipped", "examples"}: one record's examples (a bad record
gives none and counts as skipped). Batches carry the counts as `_num_records`/`_num_skipped`
from the worker to the main process, where `PipelineIterator` strips them into `it.stats`.
"""
from __future__ import annotations

from typing import Callable, Sequence

import grain
import numpy as np

from hicmae_jax.data.pipeline.options import LoaderOptions
from hicmae_jax.data.pipeline.records import TAG_BATCH


class TooManySkippedRecords(RuntimeError):
  """More records failed to decode than the allowed fraction."""


def check_skip_rate(stats: dict[str, int], *, max_fraction: float,
                    min_records: int = 100) -> None:
  """Raises TooManySkippedRecords when stats['skipped'] / stats['records'] > max_fraction,
  once at least `min_records` records were read (a few early failures are not a rate)."""
  records, skipped = int(stats.get("records", 0)), int(stats.get("skipped", 0))
  if records >= min_records and skipped > max_fraction * records:
    raise TooManySkippedRecords(
        f"{skipped} of {records} records failed to decode ({skipped / records:.2%} > "
        f"{max_fraction:.2%}); the log names each one. Re-run the prepare step for them.")


def stack(examples: Sequence[dict]) -> dict[str, np.ndarray]:
  """Examples (dicts of arrays) -> a batch {key: [B, ...]}."""
  return {k: np.stack([np.asarray(e[k]) for e in examples]) for k in examples[0]}


def _as_padding(example: dict) -> dict:
  pad = {k: np.zeros_like(np.asarray(v)) for k, v in example.items()}
  pad["clip_index"] = np.int32(-1)
  pad["view_index"] = np.int32(-1)
  pad["valid"] = np.bool_(False)
  return pad


class _GroupBatchIterator(grain.DatasetIterator):
  """Flattens groups into examples and batches them; adds `_num_records`/`_num_skipped`.

  Each batch carries the counts of the groups fetched while building it. After filling a
  batch it reads ahead to the next group that has examples, so skipped records at the end
  of the stream are still counted (in the last batch). Records in a dropped remainder are
  not counted.

  State = (parent state before the buffered group, examples of it already used): on restore
  the group is recomputed (a pure function of its position) without counting it again."""

  def __init__(self, parent: grain.DatasetIterator, spec: GroupBatchIterDataset):
    super().__init__(parent)
    self._spec = spec
    self._group_state = parent.get_state()
    self._examples: list = []
    self._position = -1
    self._offset = 0
    self._records = 0
    self._skipped = 0

  def _fetch(self, count: bool = True) -> None:
    self._group_state = self._parent.get_state()
    group = next(self._parent)  # StopIteration ends the stream
    self._examples = group["examples"]
    self._position = int(group["position"])
    self._offset = 0
    if count:
      self._records += int(group["records"])
      self._skipped += int(group["skipped"])

  def _fill(self) -> bool:
    """Buffers a group with unused examples; False at the end of the stream."""
    while self._offset >= len(self._examples):
      try:
        self._fetch()
      except StopIteration:
        return False
    return True

  def __next__(self) -> dict:
    spec = self._spec
    out, key = [], None
    while len(out) < spec.batch_size and self._fill():
      if key is None:
        key = (self._position, self._offset)
      out.append(self._examples[self._offset])
      self._offset += 1
    if not out or (len(out) < spec.batch_size and spec.drop_remainder):
      raise StopIteration
    self._fill()  # read ahead: count the skipped records that follow in this batch
    if len(out) < spec.batch_size:
      out += [_as_padding(out[-1])] * (spec.batch_size - len(out))
    batch = stack(out)
    if spec.batch_transform is not None:
      rng = np.random.default_rng([spec.seed, TAG_BATCH, key[0], key[1]])
      batch = spec.batch_transform(batch, rng)
    batch["_num_records"] = np.int64(self._records)
    batch["_num_skipped"] = np.int64(self._skipped)
    self._records = self._skipped = 0
    return batch

  def get_state(self) -> dict:
    if self._offset < len(self._examples):
      return {"parent": self._group_state, "offset": self._offset, "buffered": True}
    return {"parent": self._parent.get_state(), "offset": 0, "buffered": False}

  def set_state(self, state: dict) -> None:
    self._parent.set_state(state["parent"])
    self._examples, self._offset = [], 0
    self._records = self._skipped = 0
    if state["buffered"]:
      self._fetch(count=False)
      self._offset = int(state["offset"])


class GroupBatchIterDataset(grain.IterDataset):
  """See _GroupBatchIterator. Picklable: it travels to the workers. batch_transform(batch,
  rng) runs on each finished batch with a stream keyed by its first example."""

  def __init__(self, parent: grain.IterDataset, *, batch_size: int, drop_remainder: bool,
               seed: int, batch_transform: Callable | None = None):
    super().__init__(parent)
    self.batch_size = batch_size
    self.drop_remainder = drop_remainder
    self.seed = seed
    self.batch_transform = batch_transform

  def __iter__(self) -> _GroupBatchIterator:
    return _GroupBatchIterator(self._parent.__iter__(), self)

  def __str__(self) -> str:
    return f"GroupBatch(batch_size={self.batch_size}, drop_remainder={self.drop_remainder})"


class PipelineIterator(grain.DatasetIterator):
  """Main-process end of a pipeline: strips the skip counters from each batch into `stats`
  and runs the batch check (e.g. the counts of the pipeline's masks).

  Works with `grain.checkpoint.CheckpointSave/Restore` (it is a DatasetIterator whose state is
  a JSON-able dict: grain's state plus the counters)."""

  def __init__(self, parent: grain.DatasetIterator, max_skip_fraction: float | None,
               skip_check_min_records: int, check_batch: Callable[[dict], None]):
    super().__init__(parent)
    self._max_skip_fraction = max_skip_fraction
    self._min_records = skip_check_min_records
    self._check_batch = check_batch
    self._stats = {"records": 0, "skipped": 0, "batches": 0}

  @property
  def stats(self) -> dict[str, int]:
    """records read, records skipped, batches returned (since the start, across restores)."""
    return dict(self._stats)

  def __next__(self) -> dict:
    batch = dict(next(self._parent))
    self._stats["records"] += int(batch.pop("_num_records"))
    self._stats["skipped"] += int(batch.pop("_num_skipped"))
    self._stats["batches"] += 1
    if self._max_skip_fraction is not None:
      check_skip_rate(self._stats, max_fraction=self._max_skip_fraction,
                      min_records=self._min_records)
    self._check_batch(batch)
    return batch

  def get_state(self) -> dict:
    return {"pipeline": self._parent.get_state(), "stats": dict(self._stats)}

  def set_state(self, state: dict) -> None:
    self._parent.set_state(state["pipeline"])
    self._stats = {k: int(v) for k, v in state["stats"].items()}


class PipelineDataset(grain.IterDataset):
  """What `make_*_dataset` returns: `iter()` gives a PipelineIterator.

  Attributes: recipe (what turns a record into examples; the stage timer runs it), paths (the
  split's shard files), seed, batch_size, num_records (records of this process per epoch,
  padding excluded), examples_per_record, and num_batches (finite eval pipelines: the exact
  count, the same on every process; None for repeating ones)."""

  def __init__(self, parent: grain.IterDataset, *, recipe, paths: Sequence[str], seed: int,
               batch_size: int, num_records: int, num_batches: int | None,
               loader: LoaderOptions):
    super().__init__(parent)
    self.recipe = recipe
    self.paths = list(paths)
    self.seed = seed
    self.batch_size = batch_size
    self.num_records = num_records
    self.examples_per_record = recipe.examples_per_record
    self.num_batches = num_batches
    self._loader = loader

  def __iter__(self) -> PipelineIterator:
    return PipelineIterator(self._parent.__iter__(), self._loader.max_skip_fraction,
                            self._loader.skip_check_min_records, self.recipe.check_batch)

  def __str__(self) -> str:
    return f"PipelineDataset(records={self.num_records}, batch_size={self.batch_size})"
