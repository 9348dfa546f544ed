"""Offline shard writer: a split file of clips -> ArrayRecord shards of `schema.encode_clip` bytes.

  python -m hicmae_jax.data.prepare --split_file=split01/train.csv --output_dir=data/crema_d \
      --split=train --dataset=crema_d [--root=/data/CREMA-D] [--num_workers=16]

Input: the original's split format, one clip per line, space-separated:
  `<frames_dir_or_video> <audio_wav> <label>`      classification (int class index)
  `<frames_dir_or_video> <audio_wav> <t1> <t2> ..` regression (floats)
  `<video> [<audio_wav>]` or `<video> 0`          unlabeled (--label_type=none; VoxCeleb2 lists)
`<audio_wav>` may be `-`/`none` (or left out before a label) to take the video file's own audio
track. Relative paths resolve against --root. Blank lines and lines starting with `#` are ignored.

Output, in `<output_dir>/<split>/`: `shard-00000-of-00004.array_record` (clip i of the valid
lines goes to shard i // clips_per_shard, in input order), `skipped.txt` (every clip that was
not written, with its line number and the reason), and `dataset_info.json`, written last; it
records every shard's byte size and SHA-256, so readers catch a truncated copy at start-up and
`python -m hicmae_jax.data.verify --split_dir=<output_dir>/<split>` checks a copy completely.
Frames folders keep their source JPEG/PNG bytes (so decoded pixels equal the original's);
videos are decoded and each frame stored as JPEG. Audio is stored as 16 kHz mono int16.

Resuming: every shard is written to `<name>.tmp` and renamed when complete, with a small
progress file in `.prepare/` (record count, skipped clips, a fingerprint of its input lines and
options, byte size and SHA-256). A re-run keeps every shard whose file, progress file,
fingerprint, byte size and read-back record count agree, and redoes the rest, so an interrupted
run can simply be started again, and a deleted (e.g. damaged) shard is written anew. The output
folder is local: prepare there and copy the split to a bucket (BUILD.md, "Data on a bucket").
"""
from __future__ import annotations

import argparse
import collections
import concurrent.futures
import dataclasses
import hashlib
import json
import multiprocessing
import os
import re
import sys
import time
from typing import Callable, Iterator, Sequence

import numpy as np

from hicmae_jax.data import datasets
from hicmae_jax.data import integrity
from hicmae_jax.data import schema
from hicmae_jax.data import video_io
from hicmae_jax.faces import options as face_options
# Readers live in video_io; these names stay importable from here (tools and tests use them).
from hicmae_jax.data.video_io import (  # noqa: F401
    FRAME_EXTENSIONS, VERIFY_MODES, ClipError, read_frames_dir, read_video)

LABEL_TYPES = ("class", "regression", "none")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".flv", ".mpg", ".mpeg")
NO_AUDIO_FIELDS = ("-", "none", "null", "")
SKIPPED_FILENAME = "skipped.txt"
# Videos whose audio track and frames last longer apart than this are skipped: AAC padding and
# the last frame's duration account for < 0.1 s, a truncated or wrong track for far more.
MAX_AV_MISMATCH_SECONDS = 0.25
PROGRESS_DIRNAME = ".prepare"
_SHARD_RE = re.compile(r"^shard-\d{5}-of-\d{5}\.array_record(\.tmp)?$")


class PrepareError(ValueError):
  """The split cannot be prepared at all (no readable clip, bad options); message says why."""


@dataclasses.dataclass(frozen=True)
class SplitEntry:
  """One parsed split-file line. `audio` is "" when the audio comes from the video file."""
  line_no: int
  video: str
  audio: str = ""
  label: int = -1
  targets: tuple[float, ...] = ()
  clip_id: str = ""


@dataclasses.dataclass(frozen=True)
class Skipped:
  """A clip that was not written, why, and the kind of reason (ClipError.kind, "malformed")."""
  line_no: int
  video: str
  audio: str
  reason: str
  kind: str = "unreadable"

  def to_line(self) -> str:
    return f"line {self.line_no}\t{self.video or '-'}\t{self.audio or '-'}\t{self.reason}"


# ----------------------------------------------------------------------------------------------
# Split-file parsing
# ----------------------------------------------------------------------------------------------

def _resolve(path: str, root: str) -> str:
  path = os.path.expanduser(path)
  if root and not os.path.isabs(path):
    path = os.path.join(root, path)
  return os.path.normpath(path)


def _is_number(text: str) -> bool:
  try:
    float(text)
  except ValueError:
    return False
  return True


def parse_split_file(split_file: str, *, root: str = "", label_type: str = "class",
                     num_classes: int = 0, num_targets: int = 0
                     ) -> tuple[list[SplitEntry], list[Skipped]]:
  """Parses a split file into entries (with unique clip ids) and malformed lines.

  num_classes > 0 range-checks class labels; num_targets > 0 fixes the regression target
  count (else the first valid line sets it). Returns (entries in file order, malformed lines).
  """
  if label_type not in LABEL_TYPES:
    raise PrepareError(f"label_type must be one of {LABEL_TYPES}, got {label_type!r}")
  if not os.path.isfile(split_file):
    raise PrepareError(f"split file {split_file!r} not found")
  entries: list[SplitEntry] = []
  bad: list[Skipped] = []
  with open(split_file) as f:
    lines = f.read().splitlines()
  for line_no, line in enumerate(lines, start=1):
    text = line.strip()
    if not text or text.startswith("#"):
      continue
    fields = text.split()
    try:
      video, audio, label, targets = _parse_fields(fields, label_type)
      if label_type == "class" and num_classes and not 0 <= label < num_classes:
        raise ValueError(f"label {label} is out of range for {num_classes} classes")
      if label_type == "regression":
        if num_targets and len(targets) != num_targets:
          raise ValueError(f"{len(targets)} regression targets, expected {num_targets}")
        num_targets = len(targets)
    except ValueError as e:
      bad.append(Skipped(line_no, fields[0] if fields else "",
                         fields[1] if len(fields) > 1 else "", f"malformed line: {e}",
                         "malformed"))
      continue
    entries.append(SplitEntry(
        line_no=line_no, video=_resolve(video, root),
        audio=_resolve(audio, root) if audio else "", label=label, targets=targets))
  return _assign_clip_ids(entries), bad


def _parse_fields(fields: list[str], label_type: str
                  ) -> tuple[str, str, int, tuple[float, ...]]:
  """-> (video, audio or "", label, targets); ValueError with a readable reason."""
  n = len(fields)
  audio_of = lambda s: "" if s.lower() in NO_AUDIO_FIELDS else s
  if label_type == "none":
    if n == 1:
      return fields[0], "", -1, ()
    if n == 2 and _is_number(fields[1]):  # VoxCeleb2 list of the original: `<mp4> 0`
      return fields[0], "", -1, ()
    return fields[0], audio_of(fields[1]), -1, ()  # any labels after the wav are ignored
  if label_type == "class":
    if n == 3:
      video, audio, label_text = fields
    elif n == 2:
      video, audio, label_text = fields[0], "-", fields[1]
    else:
      raise ValueError(f"expected 3 fields `<frames_dir_or_video> <audio_wav> <label>` "
                       f"(or 2 without the wav), got {n}")
    try:
      label = int(label_text)
    except ValueError:
      raise ValueError(f"label {label_text!r} is not an integer class index") from None
    if label < 0:
      raise ValueError(f"label {label} is negative")
    return video, audio_of(audio), label, ()
  # regression: `<video> <wav> <t...>`, or `<video> <t...>` when the second field is a number
  if n < 2:
    raise ValueError(f"expected `<frames_dir_or_video> <audio_wav> <target> ...`, got {n} field")
  if _is_number(fields[1]):
    video, audio, target_texts = fields[0], "-", fields[1:]
  else:
    video, audio, target_texts = fields[0], fields[1], fields[2:]
  if not target_texts:
    raise ValueError("no regression targets after the audio field")
  targets = []
  for t in target_texts:
    try:
      value = float(t)
    except ValueError:
      raise ValueError(f"target {t!r} is not a number") from None
    if not np.isfinite(value):
      raise ValueError(f"target {t!r} is not finite")
    targets.append(value)
  return video, audio_of(audio), -1, tuple(targets)


def _assign_clip_ids(entries: list[SplitEntry]) -> list[SplitEntry]:
  """Clip id = folder/file stem; when stems collide (VoxCeleb2's 00001.mp4 ...) the path
  relative to the entries' common folder, so ids stay unique and readable."""
  def stem(path: str) -> str:
    base = os.path.basename(path)
    ext = os.path.splitext(base)[1].lower()
    return base[:-len(ext)] if ext in VIDEO_EXTENSIONS else base
  ids = [stem(e.video) for e in entries]
  if len(set(ids)) != len(ids):
    common = os.path.commonpath([os.path.dirname(e.video) or "." for e in entries])
    ids = [os.path.join(os.path.dirname(os.path.relpath(e.video, common)), i)
           for e, i in zip(entries, ids)]
  seen: set[str] = set()
  for n, (e, i) in enumerate(zip(entries, ids)):  # a clip listed twice: later copies get @line
    ids[n] = i if i not in seen else f"{i}@line{e.line_no}"
    seen.add(i)
  return [dataclasses.replace(e, clip_id=i) for e, i in zip(entries, ids)]


# ----------------------------------------------------------------------------------------------
# Loading one clip
# ----------------------------------------------------------------------------------------------

def read_audio(entry: SplitEntry, video_is_file: bool) -> np.ndarray:
  """The clip's audio as 16 kHz mono int16 [N], from its wav or else its video's track."""
  from hicmae_jax.data import audio as audio_lib
  sr = schema.AUDIO_SAMPLE_RATE
  try:
    if entry.audio:
      if not os.path.isfile(entry.audio):
        raise ClipError(f"audio file not found: {entry.audio}")
      wave = audio_lib.load_audio(entry.audio, target_sr=sr)
    elif video_is_file:
      wave = audio_lib.load_audio_from_video(entry.video, target_sr=sr)
    else:
      raise ClipError(f"no audio: no wav given and {entry.video} is a frames folder")
  except ClipError:
    raise
  except Exception as e:  # audio.AudioError, soundfile/av errors
    source = entry.audio or entry.video
    raise ClipError(f"audio of {source} cannot be read: {type(e).__name__}: {e}") from None
  wave = np.asarray(wave)
  if wave.ndim != 1 or wave.shape[0] < 1:
    raise ClipError(f"audio of {entry.audio or entry.video} is empty ({wave.shape} samples)")
  return audio_lib.to_int16(wave)


def load_clip_with_report(entry: SplitEntry, *, jpeg_quality: int = 95, max_side: int = 0,
                          verify_frames: str = "decode",
                          face: face_options.FaceOptions | None = None,
                          max_av_mismatch_seconds: float = 0.0
                          ) -> tuple[schema.Clip, dict | None]:
  """Reads one split entry into a Clip; raises ClipError (the skip reason) on bad input.

  face: a faces.FaceOptions to store aligned face crops (JPEG, face_size square) instead of
  the frames; the second value is then the clip's FaceReport as a dict, else None. A video
  whose audio and frames last more than max_av_mismatch_seconds apart (> 0) is rejected.
  """
  is_file = os.path.isfile(entry.video)
  if not is_file and not os.path.isdir(entry.video):
    raise ClipError(f"frames folder or video not found: {entry.video}")
  fps, pixels, report = 0.0, None, None
  if face is not None and is_file:
    pixels, fps = video_io.decode_video(entry.video)
  elif face is not None:  # decode_frames checks every frame fully; markers avoid a 2nd pass
    pixels = video_io.decode_frames(read_frames_dir(entry.video, verify="markers")[0],
                                    entry.video)
  elif is_file:
    frames, height, width, fps = read_video(entry.video, jpeg_quality=jpeg_quality,
                                            max_side=max_side)
    fmt = "jpeg"
  else:
    frames, fmt, height, width = read_frames_dir(entry.video, verify=verify_frames)
  pcm = read_audio(entry, is_file)
  video_io.check_av_durations(len(pixels) if pixels is not None else len(frames), fps,
                              len(pcm), schema.AUDIO_SAMPLE_RATE, max_av_mismatch_seconds,
                              entry.video)
  if face is not None:
    from hicmae_jax import faces
    result = faces.get_aligner(face)(pixels)
    report = result.report.to_dict()
    if result.crops is None:
      raise video_io.NoFaceError(f"no face: {result.report.skip_reason}", report)
    frames = [video_io.encode_jpeg(crop, jpeg_quality) for crop in result.crops]
    fmt, height, width = "jpeg", face.face_size, face.face_size
  clip = schema.Clip(
      clip_id=entry.clip_id, frames=frames, frame_format=fmt, height=height, width=width,
      audio=pcm, label=entry.label, targets=entry.targets, fps=fps,
      source_video=entry.video, source_audio=entry.audio)
  return clip, report


def load_clip(entry: SplitEntry, **options) -> schema.Clip:
  """load_clip_with_report without the report (same keyword options)."""
  return load_clip_with_report(entry, **options)[0]


# ----------------------------------------------------------------------------------------------
# Writing shards
# ----------------------------------------------------------------------------------------------

@dataclasses.dataclass
class ShardTask:
  index: int
  path: str           # final shard path
  progress_path: str  # .prepare/<shard>.json
  entries: list[SplitEntry]
  fingerprint: str
  load_options: dict  # keyword arguments of load_clip_with_report


@dataclasses.dataclass
class ShardResult:
  index: int
  num_records: int
  skipped: list[Skipped]
  frame_sizes: dict[str, int]  # "HxW" -> clip count
  face_reports: dict[str, dict] = dataclasses.field(default_factory=dict)  # clip id -> report
  num_bytes: int = 0  # the shard file's size
  sha256: str = ""  # of the shard file's bytes


def _fingerprint(entries: Sequence[SplitEntry], load_options: dict) -> str:
  """What a shard's content depends on: its lines, the reading options, the schema version."""
  options = {k: (v.to_dict() if hasattr(v, "to_dict") else v)
             for k, v in sorted(load_options.items()) if k != "verify_frames"}
  payload = json.dumps([schema.SCHEMA_VERSION, options,
                        [dataclasses.astuple(e) for e in entries]])
  return hashlib.sha256(payload.encode()).hexdigest()


def count_records(path: str) -> int:
  """Records in one shard, read back from the file (-1 when it cannot be read)."""
  from array_record.python import array_record_data_source
  try:
    with array_record_data_source.ArrayRecordDataSource([path]) as source:
      return len(source)
  except Exception:  # a damaged file counts as unfinished
    return -1


def _load_progress(task: ShardTask) -> ShardResult | None:
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
    if count_records(task.path) != meta["num_records"]:
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
  from array_record.python.array_record_module import ArrayRecordWriter
  tmp = task.path + ".tmp"
  skipped: list[Skipped] = []
  frame_sizes: collections.Counter = collections.Counter()
  face_reports: dict[str, dict] = {}
  num_records = 0
  writer = ArrayRecordWriter(tmp, "group_size:1")  # group_size 1: cheap random access
  try:
    for entry in task.entries:
      try:
        clip, report = load_clip_with_report(entry, **task.load_options)
        record = schema.encode_clip(clip)
      except (ClipError, schema.RecordError) as e:
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


_WORKER_COUNTER = None


def _init_worker(counter) -> None:
  global _WORKER_COUNTER
  _WORKER_COUNTER = counter


def _worker_tick() -> None:
  with _WORKER_COUNTER.get_lock():
    _WORKER_COUNTER.value += 1


def _pool_write_shard(task: ShardTask) -> ShardResult:
  return write_shard(task, tick=_worker_tick)


class _Progress:
  """`[prepare train] 1200/5000 clips  85.3 clips/s  ETA 0:00:44` on stderr, rate-limited."""

  def __init__(self, label: str, total: int, enabled: bool, already_done: int = 0):
    self.label, self.total, self.enabled = label, total, enabled
    self.already_done = already_done  # kept from an earlier run: not part of the rate
    self.start = time.time()
    self.last_print = 0.0
    self.tty = sys.stderr.isatty()

  def update(self, done: int, force: bool = False) -> None:
    now = time.time()
    if not self.enabled or (not force and (done <= self.already_done or now - self.last_print
                                           < (0.5 if self.tty else 10.0))):
      return
    self.last_print = now
    elapsed = max(now - self.start, 1e-9)
    rate = (done - self.already_done) / elapsed
    eta = (self.total - done) / rate if rate > 0 else float("inf")
    eta_text = time.strftime("%H:%M:%S", time.gmtime(eta)) if np.isfinite(eta) else "?"
    line = (f"[prepare {self.label}] {done}/{self.total} clips  {rate:.1f} clips/s  "
            f"ETA {eta_text}")
    sys.stderr.write(("\r" + line + "\033[K") if self.tty else line + "\n")
    sys.stderr.flush()

  def finish(self, done: int) -> None:
    self.update(done, force=True)
    if self.enabled and self.tty:
      sys.stderr.write("\n")


def mp_context():
  """fork when it is safe (one thread, no JAX in the process): workers start at once with
  the modules already imported (scipy, PIL and av take seconds to import). Otherwise spawn,
  because fork would copy other threads' locks mid-state (JAX, grain, a caller's pool)."""
  import threading
  if ("fork" in multiprocessing.get_all_start_methods() and threading.active_count() == 1
      and "jax" not in sys.modules):
    from hicmae_jax.data import audio  # noqa: F401  imported once here, inherited by workers
    from PIL import Image  # noqa: F401
    return multiprocessing.get_context("fork")
  return multiprocessing.get_context("spawn")


# A spawned worker re-imports numpy, scipy, PIL and av (seconds on a small machine);
# below this many clips one process finishes sooner.
_SPAWN_MIN_CLIPS = 200


def worker_count(num_workers: int, num_tasks: int, num_clips: int) -> int:
  """Processes worth starting for num_tasks tasks holding num_clips clips in all."""
  workers = max(1, min(num_workers, num_tasks))
  if (workers > 1 and num_clips < _SPAWN_MIN_CLIPS
      and mp_context().get_start_method() == "spawn"):
    return 1
  return workers


def _run_tasks(tasks: list[ShardTask], num_workers: int, progress: _Progress,
               done_before: int) -> list[ShardResult]:
  if num_workers <= 1:
    done = [done_before]

    def tick():
      done[0] += 1
      progress.update(done[0])
    return [write_shard(t, tick=tick) for t in tasks]
  ctx = mp_context()
  counter = ctx.Value("q", 0)
  results = []
  with concurrent.futures.ProcessPoolExecutor(
      max_workers=num_workers, mp_context=ctx,
      initializer=_init_worker, initargs=(counter,)) as pool:
    pending = {pool.submit(_pool_write_shard, t) for t in tasks}
    try:
      while pending:
        finished, pending = concurrent.futures.wait(
            pending, timeout=0.5, return_when=concurrent.futures.FIRST_COMPLETED)
        for future in finished:
          results.append(future.result())  # re-raises a worker's unexpected error
        progress.update(done_before + counter.value)
    except BaseException:
      for future in pending:
        future.cancel()
      raise
  return sorted(results, key=lambda r: r.index)


# ----------------------------------------------------------------------------------------------
# The split
# ----------------------------------------------------------------------------------------------

def prepare_split(split_file: str, output_dir: str, split: str, *, root: str = "",
                  label_type: str | None = None, class_names: Sequence[str] = (),
                  num_shards: int | None = None, clips_per_shard: int = 256,
                  num_workers: int = 1, jpeg_quality: int = 95, max_side: int = 0,
                  dataset_name: str = "custom", extra: dict | None = None,
                  verify_frames: str = "decode", face: face_options.FaceOptions | None = None,
                  max_av_mismatch_seconds: float = MAX_AV_MISMATCH_SECONDS,
                  verbose: bool = True) -> schema.DatasetInfo:
  """Prepares one split into `<output_dir>/<split>/` and returns its DatasetInfo.

  label_type: "class" | "regression" | "none"; None takes the preset's (dataset_name names a
  preset in datasets.PRESETS) or else "class". class_names: empty takes the preset's, else
  they are inferred as class_0..class_{max label} with a warning. num_shards, when given,
  overrides clips_per_shard (clips_per_shard = ceil(clips / num_shards)). extra: merged into
  DatasetInfo.extra. verify_frames: "decode" (every frame of a frames folder is decoded
  once) or "markers" (see read_frames_dir). face: a faces.FaceOptions to store aligned
  face crops (None keeps the frames). max_av_mismatch_seconds: videos whose audio and frames
  last longer apart are skipped (0: no check). Raises PrepareError when no clip at all can
  be written.
  """
  t0 = time.time()
  preset = datasets.PRESETS.get(dataset_name.lower().replace("-", "_"))
  if label_type is None:
    label_type = preset.label_type if preset else "class"
  if label_type not in LABEL_TYPES:
    raise PrepareError(f"label_type must be one of {LABEL_TYPES}, got {label_type!r}")
  class_names = list(class_names)
  target_names: list[str] = []
  if preset and preset.label_type == label_type:
    if not class_names and label_type == "class":
      class_names = list(preset.class_names)
    target_names = list(preset.target_names)
  if verify_frames not in VERIFY_MODES:
    raise PrepareError(f"verify_frames must be one of {VERIFY_MODES}, got {verify_frames!r}")
  if not 1 <= jpeg_quality <= 100:
    raise PrepareError(f"jpeg_quality must be in [1, 100], got {jpeg_quality}")
  if integrity.is_remote(output_dir):
    raise PrepareError(
        f"output_dir={output_dir}: prepare writes a local folder (it resumes by renaming "
        f"files). Prepare into a local folder, copy it (`gcloud storage cp -r <folder>/{split} "
        f"{output_dir.rstrip('/')}/`), then check the copy with `python -m "
        f"hicmae_jax.data.verify --split_dir={output_dir.rstrip('/')}/{split}`")
  log = (lambda *a: print(*a, file=sys.stderr, flush=True)) if verbose else (lambda *a: None)
  if face is not None:
    from hicmae_jax import faces
    try:  # fails fast on a missing package or model; forked workers inherit the loaded ones
      faces.get_aligner(face)
    except (ImportError, OSError, ValueError) as e:
      raise PrepareError(f"face step {face.detector!r}: {e}") from None

  entries, malformed = parse_split_file(
      split_file, root=root, label_type=label_type,
      num_classes=len(class_names) if label_type == "class" else 0,
      num_targets=len(target_names))
  for s in malformed[:10]:
    log(f"{split_file}:{s.line_no}: {s.reason}")
  if len(malformed) > 10:
    log(f"... and {len(malformed) - 10} more malformed lines (all listed in {SKIPPED_FILENAME})")
  split_dir = os.path.join(output_dir, split)
  os.makedirs(os.path.join(split_dir, PROGRESS_DIRNAME), exist_ok=True)
  if not entries:
    _write_skipped(split_dir, malformed)
    raise PrepareError(f"{split_file}: no usable line ({len(malformed)} malformed); nothing "
                       f"to prepare. See {os.path.join(split_dir, SKIPPED_FILENAME)}")
  if label_type == "class" and not class_names:
    num_classes = max(e.label for e in entries) + 1
    class_names = [f"class_{i}" for i in range(num_classes)]
    log(f"warning: no class names given; assuming {num_classes} classes from the labels in "
        f"this split (pass --class_names or --dataset to be sure)")
  num_targets = len(entries[0].targets) if label_type == "regression" else 0

  # Plan: clip i -> shard i // clips_per_shard.
  n = len(entries)
  if num_shards:
    clips_per_shard = -(-n // max(1, num_shards))
  if clips_per_shard < 1:
    raise PrepareError(f"clips_per_shard must be >= 1, got {clips_per_shard}")
  count = -(-n // clips_per_shard)
  if num_shards and count != num_shards:
    log(f"note: {n} clips at {clips_per_shard} per shard make {count} shards, not {num_shards}")
  load_options = dict(jpeg_quality=jpeg_quality, max_side=max_side,
                      verify_frames=verify_frames, face=face,
                      max_av_mismatch_seconds=max_av_mismatch_seconds)
  tasks = []
  for index in range(count):
    chunk = entries[index * clips_per_shard:(index + 1) * clips_per_shard]
    name = schema.SHARD_PATTERN.format(index=index, count=count)
    tasks.append(ShardTask(
        index=index, path=os.path.join(split_dir, name),
        progress_path=os.path.join(split_dir, PROGRESS_DIRNAME, name + ".json"),
        entries=chunk, fingerprint=_fingerprint(chunk, load_options),
        load_options=load_options))

  results: dict[int, ShardResult] = {}
  todo = []
  for task in tasks:
    finished = _load_progress(task)
    if finished is None:
      todo.append(task)
    else:
      results[task.index] = finished
  if todo:
    # The split is being changed: an old dataset_info.json must not claim it is complete.
    info_path = os.path.join(split_dir, schema.INFO_FILENAME)
    if os.path.exists(info_path):
      os.remove(info_path)
  _remove_stale_files(split_dir, {os.path.basename(t.path) for t in tasks})
  done_before = sum(len(t.entries) for t in tasks if t.index in results)
  workers = worker_count(num_workers, len(todo), n - done_before)
  log(f"[prepare {split}] {n} clips in {count} shards: {len(results)} already done, "
      f"{len(todo)} to write with {workers} worker(s)")
  progress = _Progress(split, n, verbose and bool(todo), done_before)
  for result in _run_tasks(todo, workers, progress, done_before):
    results[result.index] = result
  progress.finish(n)

  skipped = sorted(malformed + [s for r in results.values() for s in r.skipped],
                   key=lambda s: s.line_no)
  _write_skipped(split_dir, skipped)
  num_clips = sum(r.num_records for r in results.values())
  if num_clips == 0:
    raise PrepareError(
        f"every clip of {split_file} failed ({len(skipped)} skipped); reasons in "
        f"{os.path.join(split_dir, SKIPPED_FILENAME)}, e.g. {skipped[0].reason}")

  sizes: collections.Counter = collections.Counter()
  for r in results.values():
    sizes.update(r.frame_sizes)
  common_size = max(sorted(sizes), key=lambda k: sizes[k])  # most clips; ties: smallest key
  height, width = (int(v) for v in common_size.split("x"))
  info_extra = {
      "label_type": label_type,
      "target_names": target_names,
      "sampling_stride": preset.sampling_stride if preset else 4,
      "clips_per_shard": clips_per_shard,
      "jpeg_quality": jpeg_quality,
      "max_side": max_side,
      "source_split_file": os.path.abspath(split_file),
  }
  if len(sizes) > 1:  # frames keep their source size; the online pipeline resizes anyway
    info_extra["frame_sizes"] = dict(sorted(sizes.items()))
  kinds = collections.Counter(s.kind for s in skipped)
  info_extra["skipped_by_kind"] = dict(sorted(kinds.items()))
  info_extra["max_av_mismatch_seconds"] = max_av_mismatch_seconds
  if face is not None:
    from hicmae_jax.faces import report as face_report
    info_extra["face"] = face_report.summarise(
        {k: v for r in results.values() for k, v in r.face_reports.items()}, face.to_dict())
    log(f"[prepare {split}] {face_report.summary_text(info_extra['face'])}")
  info_extra.update(extra or {})
  info = schema.DatasetInfo(
      name=dataset_name, split=split, num_clips=num_clips,
      shards=[os.path.basename(t.path) for t in tasks],
      class_names=class_names if label_type == "class" else [],
      num_targets=num_targets, frame_height=height, frame_width=width,
      num_skipped=len(skipped), extra=info_extra,
      shard_bytes=[results[t.index].num_bytes for t in tasks],
      shard_sha256=[results[t.index].sha256 for t in tasks])
  info.save(split_dir)  # last: its presence marks a complete split
  where = (" (" + ", ".join(f"{v} {k}" for k, v in sorted(kinds.items())) + "; see "
           + os.path.join(split_dir, SKIPPED_FILENAME) + ")") if skipped else ""
  log(f"[prepare {split}] wrote {num_clips} clips, skipped {len(skipped)}{where}, "
      f"{count} shards ({len(todo)} written now) in {time.time() - t0:.1f} s -> {split_dir}")
  return info


def _write_skipped(split_dir: str, skipped: Sequence[Skipped]) -> None:
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


# ----------------------------------------------------------------------------------------------
# Reading a prepared split (tools and tests; training reads through the grain pipeline)
# ----------------------------------------------------------------------------------------------

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


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------

def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
  p = argparse.ArgumentParser(
      prog="python -m hicmae_jax.data.prepare",
      description="Write ArrayRecord shards of audio-visual clips from a split file.")
  p.add_argument("--split_file", required=True,
                 help="`<frames_dir_or_video> <audio_wav|-> <label...>` per line")
  p.add_argument("--output_dir", required=True, help="shards go to <output_dir>/<split>/")
  p.add_argument("--split", default="",
                 help="split name (default: the split file's name without extension)")
  p.add_argument("--root", default="", help="folder that relative paths resolve against")
  p.add_argument("--dataset", default="custom",
                 help=f"preset for class names / label type: {', '.join(datasets.PRESETS)}, "
                      f"or custom")
  p.add_argument("--label_type", default=None, choices=LABEL_TYPES,
                 help="default: the preset's, else class")
  p.add_argument("--class_names", default="", help="comma-separated, in label-index order")
  p.add_argument("--num_shards", type=int, default=None,
                 help="number of shards (overrides --clips_per_shard)")
  p.add_argument("--clips_per_shard", type=int, default=256)
  p.add_argument("--num_workers", type=int, default=os.cpu_count() or 1,
                 help="processes, one shard each at a time (default: all CPUs)")
  p.add_argument("--jpeg_quality", type=int, default=95,
                 help="JPEG quality for frames decoded from video files")
  p.add_argument("--max_side", type=int, default=0,
                 help="shrink video frames so the longer side is at most this (0: keep); "
                      "frames folders always keep their source bytes; with --face the crops "
                      "are --face_size")
  p.add_argument("--verify_frames", default="decode", choices=VERIFY_MODES,
                 help="decode: decode every source frame once to catch corrupt files; "
                      "markers: decode the first, check the rest for complete start/end "
                      "markers (faster)")
  p.add_argument("--max_av_mismatch_seconds", type=float, default=MAX_AV_MISMATCH_SECONDS,
                 help="skip videos whose audio and frames last this much apart (0: no check)")
  face_options.add_arguments(p)
  p.add_argument("--preview", type=int, default=0,
                 help="with --face: contact sheet PNG of this many clips (frame with box and "
                      "landmarks, aligned crop)")
  p.add_argument("--preview_file", default="",
                 help="where the contact sheet goes (default <output_dir>/<split>/"
                      "face_preview.png)")
  return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
  args = _parse_args(argv)
  if args.dataset != "custom":
    try:
      datasets.get_preset(args.dataset)
    except KeyError as e:
      print(f"error: {e.args[0]}", file=sys.stderr)
      return 2
  split = args.split or os.path.splitext(os.path.basename(args.split_file))[0]
  class_names = [c.strip() for c in args.class_names.split(",") if c.strip()]
  try:
    face = face_options.from_arguments(args)
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  if args.preview and face is None:
    print("error: --preview shows face crops: add --face=dlib", file=sys.stderr)
    return 2
  try:
    prepare_split(
        args.split_file, args.output_dir, split, root=args.root, label_type=args.label_type,
        class_names=class_names, num_shards=args.num_shards,
        clips_per_shard=args.clips_per_shard, num_workers=args.num_workers,
        jpeg_quality=args.jpeg_quality, max_side=args.max_side,
        dataset_name=args.dataset.lower().replace("-", "_"),
        verify_frames=args.verify_frames, face=face,
        max_av_mismatch_seconds=args.max_av_mismatch_seconds)
  except PrepareError as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  if args.preview:
    from hicmae_jax.faces import preview
    split_dir = os.path.join(args.output_dir, split)
    path = args.preview_file or os.path.join(split_dir, preview.PREVIEW_FILENAME)
    sources = [c.source_video for _, c in zip(range(args.preview), iterate_clips(split_dir))]
    preview.write_contact_sheet(sources, face, path, video_io.clip_frames)
    print(f"[prepare {split}] face preview of {len(sources)} clips -> {path}", file=sys.stderr)
  return 0


if __name__ == "__main__":
  sys.exit(main())
