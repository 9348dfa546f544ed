"""Checks a prepared split's shards against its dataset_info.json: byte sizes and SHA-256 sums.

  python -m hicmae_jax.data.verify --split_dir=/data/crema_d/fold1/train [--split_dir=...]
  python -m hicmae_jax.data.verify --split_dir=/data/old_split --record

Every binary already compares the shard sizes when it opens a split (a truncated copy); this
reads every byte, so it also finds a shard damaged in the middle. Exit code 0: every shard
matches; 1: damaged shards, each named with the fix; 2: not a prepared split. Progress
(shards, bytes, MB/s, ETA) goes to stderr. Split folders may be local or gs:// URLs.

Splits prepared before sizes and checksums were recorded: it reads and decodes every record
instead; --record then writes the sizes and SHA-256 sums into dataset_info.json, but only when
every record decodes and their count is the recorded num_clips (a damaged shard is never
recorded as good).
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import sys
import threading
import time
from typing import Callable, Sequence

from absl import flags

from hicmae_jax import cli
from hicmae_jax.data.format import integrity, schema

EXIT_OK, EXIT_DAMAGED, EXIT_BAD_INPUT = 0, 1, 2
_READ_BATCH = 64  # records per array-record read call when reading every record


@dataclasses.dataclass
class Report:
  """What a check found: `bad` maps shard path -> reason (empty when the split is sound)."""
  split_dir: str
  num_shards: int
  num_bytes: int
  bad: dict[str, str]
  mode: str  # "checksums" (sizes and SHA-256 recorded) or "records" (read every record)
  recorded: bool = False  # --record wrote sizes and checksums into dataset_info.json


class _Progress:
  """`[verify train] 3/10 shards  1.20 GB of 4.00 GB  350.0 MB/s  ETA 00:00:08` on stderr,
  rate-limited; counters are updated from several threads."""

  def __init__(self, label: str, num_shards: int, total_bytes: int, enabled: bool):
    self.label, self.num_shards, self.total, self.enabled = label, num_shards, total_bytes, enabled
    self.done_shards = self.done_bytes = 0
    self.start = time.time()
    self.last_print = 0.0
    self.tty = sys.stderr.isatty()
    self.lock = threading.Lock()

  def add(self, num_bytes: int = 0, shards: int = 0) -> None:
    with self.lock:
      self.done_bytes += num_bytes
      self.done_shards += shards
      self._print(force=False)

  def _print(self, force: bool) -> None:
    now = time.time()
    if not self.enabled or (not force and now - self.last_print < (0.5 if self.tty else 10.0)):
      return
    self.last_print = now
    rate = self.done_bytes / max(now - self.start, 1e-9)
    left = (self.total - self.done_bytes) / rate if rate > 0 else None
    eta = time.strftime("%H:%M:%S", time.gmtime(left)) if left is not None else "?"
    line = (f"[verify {self.label}] {self.done_shards}/{self.num_shards} shards  "
            f"{_size(self.done_bytes)} of {_size(self.total)}  {rate / 1e6:.1f} MB/s  ETA {eta}")
    sys.stderr.write(("\r" + line + "\033[K") if self.tty else line + "\n")
    sys.stderr.flush()

  def finish(self) -> float:
    with self.lock:
      self._print(force=True)
    if self.enabled and self.tty:
      sys.stderr.write("\n")
    return time.time() - self.start


def _size(num_bytes: int) -> str:
  return f"{num_bytes / 1e9:.2f} GB" if num_bytes >= 1e9 else f"{num_bytes / 1e6:.1f} MB"


def _map_shards(fn: Callable[[str, int], str | None], paths: Sequence[str],
                num_threads: int) -> dict[str, str]:
  """{path: problem} over the shards, `num_threads` at a time (hashing and array-record reads
  release the GIL). fn(path, index) returns the problem or None."""
  with concurrent.futures.ThreadPoolExecutor(max(1, min(num_threads, len(paths)))) as pool:
    problems = list(pool.map(fn, paths, range(len(paths))))
  return {p: r for p, r in zip(paths, problems) if r is not None}


def _one_line(error: BaseException) -> str:
  return f"{type(error).__name__}: {' '.join(str(error).split())}"


def _decode_error(data: bytes) -> str | None:
  try:
    schema.decode_clip(data)
  except schema.RecordError as e:
    return str(e)
  return None


def _check_checksums(info: schema.DatasetInfo, paths: Sequence[str], sizes: Sequence[int | None],
                     progress: _Progress, num_threads: int) -> dict[str, str]:
  def check(path: str, i: int) -> str | None:
    size, want = sizes[i], info.shard_bytes[i]
    try:
      if size is None:
        return "missing"
      if size != want:
        kind = "truncated" if size < want else "longer than written"
        return f"{size} bytes, dataset_info.json records {want} ({kind})"
      try:
        digest = integrity.sha256_of(path, on_bytes=progress.add)
      except OSError as e:
        return f"cannot be read ({_one_line(e)})"
      if digest != info.shard_sha256[i]:
        return ("SHA-256 differs from dataset_info.json (right size, changed content: damaged "
                "in the middle)")
      return None
    finally:
      progress.add(shards=1)
  return _map_shards(check, paths, num_threads)


def _check_records(paths: Sequence[str], sizes: Sequence[int | None], progress: _Progress,
                   num_threads: int, counts: list[int]) -> dict[str, str]:
  """Reads and decodes every record (array-record checks its chunk hashes on the way);
  counts[i] gets shard i's record count."""
  def read_all(path: str, i: int) -> str | None:
    try:
      reader = integrity.open_reader(path)
    except integrity.ShardError as e:
      return f"cannot be opened ({_one_line(e.__cause__ or e)})"
    problem = None
    n = reader.num_records()
    for start in range(0, n, _READ_BATCH):
      end = min(n, start + _READ_BATCH)
      try:
        batch = reader.read(start, end)
      except Exception as e:  # noqa: BLE001 - array-record raises RuntimeError/...
        problem = f"records {start}-{end - 1} unreadable ({_one_line(e)})"
        break
      bad = next((k for k, data in enumerate(batch) if _decode_error(data)), None)
      if bad is not None:
        problem = f"record {start + bad} does not decode ({_decode_error(batch[bad])})"
        break
    integrity.close_reader(reader, path, quiet=True)  # a read failure is reported above
    counts[i] = n
    return problem

  def check(path: str, i: int) -> str | None:
    try:
      return "missing" if sizes[i] is None else read_all(path, i)
    finally:
      progress.add(num_bytes=sizes[i] or 0, shards=1)
  return _map_shards(check, paths, num_threads)


def verify_split(split_dir: str, *, record: bool = False, num_threads: int = 4,
                 verbose: bool = True) -> Report:
  """Checks one split (see the module docstring); with `record`, writes sizes and checksums
  into a split that has none once every record has decoded. Raises FileNotFoundError /
  schema.RecordError when `split_dir` is not a prepared split."""
  info = schema.DatasetInfo.load(split_dir, check_shards=False)
  paths = [integrity.join(split_dir, name) for name in info.shards]
  sizes = integrity.file_sizes(paths)
  total = sum(s or 0 for s in sizes)
  label = info.split or os.path.basename(split_dir.rstrip("/"))
  say = (lambda m: print(f"[verify {label}] {m}", file=sys.stderr, flush=True)) if verbose \
      else (lambda m: None)
  have_sums = bool(info.shard_sha256) and len(info.shard_sha256) == len(paths) == len(
      info.shard_bytes)
  mode = "checksums" if have_sums else "records"
  say(f"{split_dir}: {len(paths)} shards, {_size(total)}; "
      + ("checking sizes and SHA-256 sums" if have_sums else
         "no checksums recorded: reading and decoding every record"))
  progress = _Progress(label, len(paths), total, verbose)
  counts = [0] * len(paths)
  if have_sums:
    bad = _check_checksums(info, paths, sizes, progress, num_threads)
  else:
    bad = _check_records(paths, sizes, progress, num_threads, counts)
    if not bad and sum(counts) != info.num_clips:
      bad[integrity.join(split_dir, schema.INFO_FILENAME)] = (
          f"the shards hold {sum(counts)} records, num_clips says {info.num_clips}")
  seconds = progress.finish()
  report = Report(split_dir, len(paths), total, bad, mode)
  for path, reason in bad.items():
    say(f"BAD {path}: {reason}")
  if bad:
    return report
  rate = f"{total / 1e6 / max(seconds, 1e-9):.1f} MB/s"
  if not have_sums and record:
    info.shard_bytes = [int(s) for s in sizes]
    info.shard_sha256 = [integrity.sha256_of(p) for p in paths]
    info.save(split_dir)
    report.recorded = True
    say(f"OK: every record of {len(paths)} shards decodes; sizes and SHA-256 sums written to "
        f"{integrity.join(split_dir, schema.INFO_FILENAME)} ({seconds:.1f} s, {rate})")
  elif not have_sums:
    say(f"OK: every record of {len(paths)} shards decodes ({seconds:.1f} s, {rate}). No sizes "
        f"or checksums are recorded: add them with --record, so that start-up catches a "
        f"truncated shard")
  else:
    say(f"OK: {len(paths)} shards match dataset_info.json ({seconds:.1f} s, {rate})"
        + ("; sizes and checksums were already recorded" if record else ""))
  return report


def error_line(report: Report) -> str:
  """One line naming the damaged shards of a report and the fix."""
  items = [f"{p} ({r})" for p, r in report.bad.items()]
  shown = "; ".join(items[:5]) + (f"; and {len(items) - 5} more" if len(items) > 5 else "")
  return (f"error: {len(report.bad)} of {report.num_shards} shards of {report.split_dir} are "
          f"damaged: {shown}. Fix: {integrity.FIX}")


def _define_flags(values: flags.FlagValues) -> None:
  flags.DEFINE_multi_string("split_dir", None, "a prepared split folder (local or gs://); "
                            "repeat for several", flag_values=values, required=True)
  flags.DEFINE_bool("record", False, "for a split without recorded sizes/checksums: after every "
                    "record decodes, write them into its dataset_info.json", flag_values=values)
  flags.DEFINE_integer("num_threads", min(8, os.cpu_count() or 1), "shards checked at a time "
                       "(default: CPUs, at most 8)", lower_bound=1, flag_values=values)


def main(argv: Sequence[str] | None = None) -> int:
  """The command line (argv without the program name; None: sys.argv[1:]) -> the exit code."""
  return cli.run_own(_define_flags, _main, argv, doc=__doc__)


def _main(values: flags.FlagValues) -> int:
  code = EXIT_OK
  for split_dir in values.split_dir:
    try:
      report = verify_split(split_dir, record=values.record, num_threads=values.num_threads)
    except (FileNotFoundError, ValueError) as e:  # not a split, unreadable dataset_info.json
      print(f"error: {e}", file=sys.stderr)
      code = max(code, EXIT_BAD_INPUT)
      continue
    if report.bad:
      print(error_line(report), file=sys.stderr)
      code = max(code, EXIT_DAMAGED)
  return code


if __name__ == "__main__":
  sys.exit(main())
