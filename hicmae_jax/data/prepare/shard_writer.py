"""Writing one split's shards, resumably: the plan (clip i -> shard i // clips_per_shard), one
shard's file and progress file, what a re-run keeps, and the skip report (skipped.txt).

Every shard is written to `<name>.tmp` and renamed when complete, with a small progress file
in `.prepare/` (record count, skipped clips, a fingerprint of its input lines and options,
byte size and SHA-256). A re-run keeps every shard whose file, progress file, fingerprint,
byte size and read-back record count agree, and redoes the rest, so an interrupted run can
simply be started again, and a deleted (e.g. damaged) shard is written anew.
"""
from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import os
import re
from typing import Callable, Sequence

from array_record.python import array_record_data_source
from array_record.python.array_record_module import ArrayRecordWriter

from hicmae_jax.data.format import integrity, schema
from hicmae_jax.data.prepare import clip_loader, video_io
from hicmae_jax.data.prepare.split_file import Skipped, SplitEntry

SKIPPED_FILENAME = "skipped.txt"
PROGRESS_DIRNAME = ".prepare"
_SHARD_RE = re.compile(r"^shard-\d{5}-of-\d{5}\.array_record(\.tmp)?$")


@dataclasses.dataclass
class ShardTask:
  """One shard to write: its clips and where it and its progress file go."""
  index: int
  path: str           # final shard path
  progress_path: str  # .prepare/<shard>.json
  entries: list[SplitEntry]
  fingerprint: str
  load_options: dict  # keyword arguments of load_clip_with_report


@dataclasses.dataclass
class ShardResult:
  """A written (or kept) shard: its record count, skipped clips, frame sizes, file size and hash."""
  index: int
  num_records: int
  skipped: list[Skipped]
  frame_sizes: dict[str, int]  # "HxW" -> clip count
  face_reports: dict[str, dict] = dataclasses.field(default_factory=dict)  # clip id -> report
  num_bytes: int = 0  # the shard file's size
  sha256: str = ""  # of the shard file's bytes


def fingerprint(entries: Sequence[SplitEntry], load_options: dict) -> str:
  """What a shard's content depends on: its lines, the reading options, the schema version."""
  options = {k: (v.to_dict() if hasattr(v, "to_dict") else v)
             for k, v in sorted(load_options.items()) if k != "verify_frames"}
  payload = json.dumps([schema.SCHEMA_VERSION, options,
                        [dataclasses.astuple(e) for e in entries]])
  return hashlib.sha256(payload.encode()).hexdigest()


def _shard_record_count(path: str) -> int:
  """Records in one shard, read back from the file (-1 when it cannot be read)."""
  try:
    with array_record_data_source.ArrayRecordDataSource([path]) as source:
      return len(source)
  except Exception:  # a damaged file counts as unfinished
    return -1


def load_progress(task: ShardTask) -> ShardResult | None:
  """The finished result of a shard, or None when the shard has to be (re)written."""
  if not (os.path.exists(task.path) and os.path.exists(task.progress_path)):
    return None
  try:
    with open(task.progress_path) as f:
      meta = json.load(f)
    if meta["fingerprint"] != task.fingerprint:
      return None
    num_bytes = os.path.getsize(task.path)
    if "num_bytes" in meta and num_bytes != meta["num_bytes"]:
      return None  # truncated or overwritten since it was written
    if _shard_record_count(task.path) != meta["num_records"]:
      return None
    # Progress files of older runs hold no checksum: take it from the shard kept.
    sha256 = meta.get("sha256") or integrity.sha256_of(task.path)
    return ShardResult(task.index, meta["num_records"],
                       [Skipped(**s) for s in meta["skipped"]], dict(meta["frame_sizes"]),
                       dict(meta.get("face_reports", {})), num_bytes, sha256)
  except (OSError, ValueError, KeyError, TypeError):
    return None


def write_shard(task: ShardTask, tick: Callable[[], None] | None = None) -> ShardResult:
  """Writes one shard (tmp file, then rename) and its progress file; bad clips are skipped."""
  tmp = task.path + ".tmp"
  skipped: list[Skipped] = []
  frame_sizes: collections.Counter = collections.Counter()
  face_reports: dict[str, dict] = {}
  num_records = 0
  writer = ArrayRecordWriter(tmp, "group_size:1")  # group_size 1: cheap random access
  try:
    for entry in task.entries:
      try:
        clip, report = clip_loader.load_clip_with_report(entry, **task.load_options)
        record = schema.encode_clip(clip)
      except (video_io.ClipError, schema.RecordError) as e:
        if isinstance(e, video_io.NoFaceError):
          face_reports[entry.clip_id] = e.report
        skipped.append(Skipped(entry.line_no, entry.video, entry.audio, str(e),
                               getattr(e, "kind", "unreadable")))
      except Exception as e:  # an input no reader anticipated must not stop the whole split
        skipped.append(Skipped(entry.line_no, entry.video, entry.audio,
                               f"unexpected {type(e).__name__}: {e}"))
      else:
        writer.write(record)
        num_records += 1
        frame_sizes[f"{clip.height}x{clip.width}"] += 1
        if report is not None:
          face_reports[entry.clip_id] = report
      if tick is not None:
        tick()
  finally:
    writer.close()
  # Read back once (from the page cache): the checksum readers compare a copy against.
  result = ShardResult(task.index, num_records, skipped, dict(frame_sizes), face_reports,
                       os.path.getsize(tmp), integrity.sha256_of(tmp))
  meta = {"fingerprint": task.fingerprint, "num_records": num_records,
          "skipped": [dataclasses.asdict(s) for s in skipped], "frame_sizes": result.frame_sizes,
          "face_reports": face_reports, "num_bytes": result.num_bytes, "sha256": result.sha256}
  with open(task.progress_path + ".tmp", "w") as f:
    json.dump(meta, f)
  # Shard first, progress file second: a crash in between leaves a shard without a matching
  # progress file, which the next run redoes.
  os.replace(tmp, task.path)
  os.replace(task.progress_path + ".tmp", task.progress_path)
  return result


def plan_shards(entries: Sequence[SplitEntry], split_dir: str, clips_per_shard: int,
                load_options: dict) -> list[ShardTask]:
  """Clip i of `entries` -> shard i // clips_per_shard, in input order; load_options are the
  keyword arguments of clip_loader.load_clip_with_report (part of every shard's fingerprint)."""
  count = -(-len(entries) // clips_per_shard)
  tasks = []
  for index in range(count):
    chunk = list(entries[index * clips_per_shard:(index + 1) * clips_per_shard])
    name = schema.SHARD_PATTERN.format(index=index, count=count)
    tasks.append(ShardTask(
        index=index, path=os.path.join(split_dir, name),
        progress_path=os.path.join(split_dir, PROGRESS_DIRNAME, name + ".json"),
        entries=chunk, fingerprint=fingerprint(chunk, load_options),
        load_options=load_options))
  return tasks


def resume(split_dir: str, tasks: Sequence[ShardTask]
           ) -> tuple[dict[int, ShardResult], list[ShardTask]]:
  """-> (results of the shards already finished, by index; the tasks still to write).

  Leaves the folder ready for the writers: files of other plans removed, and, when anything
  is to be written, dataset_info.json too (it must not claim a split that is being changed is
  complete)."""
  results: dict[int, ShardResult] = {}
  todo = []
  for task in tasks:
    finished = load_progress(task)
    if finished is None:
      todo.append(task)
    else:
      results[task.index] = finished
  if todo:
    info_path = os.path.join(split_dir, schema.INFO_FILENAME)
    if os.path.exists(info_path):
      os.remove(info_path)
  _remove_stale_files(split_dir, {os.path.basename(t.path) for t in tasks})
  return results, todo


def write_skipped(split_dir: str, skipped: Sequence[Skipped]) -> None:
  tmp = os.path.join(split_dir, SKIPPED_FILENAME + ".tmp")
  with open(tmp, "w") as f:
    f.write(f"# {len(skipped)} skipped clips: line <n> <video> <audio> <reason> (tab-separated)\n")
    for s in skipped:
      f.write(s.to_line() + "\n")
  os.replace(tmp, os.path.join(split_dir, SKIPPED_FILENAME))


def _remove_stale_files(split_dir: str, keep: set[str]) -> None:
  """Removes shards (and .tmp leftovers) that are not part of this plan, e.g. from a run with
  another shard count, so the folder holds exactly the shards dataset_info.json lists."""
  progress_dir = os.path.join(split_dir, PROGRESS_DIRNAME)
  for name in os.listdir(split_dir):
    if _SHARD_RE.match(name) and (name.endswith(".tmp") or name not in keep):
      os.remove(os.path.join(split_dir, name))
  for name in os.listdir(progress_dir):
    if name.endswith(".tmp") or name[:-len(".json")] not in keep:
      os.remove(os.path.join(progress_dir, name))
