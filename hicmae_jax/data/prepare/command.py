"""Offline shard writer: a split file of clips -> ArrayRecord shards of `schema.encode_clip` bytes.

  python -m hicmae_jax.data.prepare --split_file=split01/train.csv --output_dir=data/crema_d \
      --split=train --dataset=crema_d [--root=/data/CREMA-D] [--num_workers=16]

Input: the original's split format (data/prepare/split_file.py), one clip per line, space-separated:
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
videos are decoded and each frame stored as JPEG (data/prepare/clip_loader.py). Audio is stored as
16 kHz mono int16.

Resuming (data/prepare/shard_writer.py): every shard is written to `<name>.tmp` and renamed when
complete, with a small progress file in `.prepare/`; a re-run keeps every shard whose file,
progress file, fingerprint, byte size and read-back record count agree, and redoes the rest,
so an interrupted run can simply be started again, and a deleted (e.g. damaged) shard is
written anew. Shards are written in parallel by data/prepare/worker_pool.py. The output folder is
local: prepare there and copy the split to a bucket (BUILD.md, "Data on a bucket").

This module holds the steps of one split (labels from the dataset preset, options checked,
the split file read, shards planned, written and summarised into dataset_info.json) and the
command line.
"""
from __future__ import annotations

import collections
import dataclasses
import os
import sys
import time
from typing import Callable, Sequence

from absl import flags

from hicmae_jax import cli, faces, paths
from hicmae_jax.data.format import datasets, schema, split_reader
from hicmae_jax.data.prepare import clip_loader, shard_writer, video_io, worker_pool
from hicmae_jax.data.prepare.split_file import (
  LABEL_TYPES,
  PrepareError,
  Skipped,
  SplitEntry,
  parse_split_file,
)
from hicmae_jax.faces import (
  auto as face_auto,
  options as face_options,
  preview,
  report as face_report,
)

Log = Callable[..., None]
NONE_CHECK_CLIPS = 3  # --face=none: clips whose sampled frames are looked at (one warning)


@dataclasses.dataclass(frozen=True)
class Labels:
  """What a split's labels are: from the arguments, else from the dataset's preset."""
  label_type: str              # one of LABEL_TYPES
  class_names: list[str]       # label index -> name ("class" only)
  target_names: list[str]      # regression target names (from the preset; may be empty)
  sampling_stride: int         # the preset's temporal stride (4 without a preset)


def labels_for(dataset_name: str, label_type: str | None, class_names: Sequence[str]) -> Labels:
  """label_type None takes the preset's (dataset_name names one in datasets.PRESETS) or else
  "class"; empty class_names take the preset's when its label type is the same."""
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
  return Labels(label_type, class_names, target_names,
                preset.sampling_stride if preset else 4)


def _check_options(output_dir: str, split: str, verify_frames: str, jpeg_quality: int,
                   face: face_options.FaceOptions | None,
                   crop: Sequence[int] | None = None, frame_size: int = 0,
                   face_mode: str = "") -> None:
  """Raises PrepareError for options no clip could be written with, before any work."""
  if face_mode == face_options.AUTO and face is None:
    raise PrepareError("face_mode auto needs the face options of its align step")
  aligns_all = face is not None and face_mode != face_options.AUTO
  if frame_size < 0:
    raise PrepareError(f"frame_size must be >= 0 (0: keep the size), got {frame_size}")
  if frame_size and aligns_all:
    raise PrepareError("frame_size and face do not combine: the face crops are face_size "
                       "square; set --face_size instead")
  if crop is not None:
    if len(crop) != 4 or not (0 <= crop[0] < crop[1] and 0 <= crop[2] < crop[3]):
      raise PrepareError(f"crop must be rows r0:r1 and cols c0:c1 with 0 <= r0 < r1 and "
                         f"0 <= c0 < c1 (e.g. 0,160,32,192), got {tuple(crop)}")
    if aligns_all:
      raise PrepareError("crop and face do not combine: the face step stores its own "
                         "face_size crops; drop --crop")
  if verify_frames not in video_io.VERIFY_MODES:
    raise PrepareError(f"verify_frames must be one of {video_io.VERIFY_MODES}, "
                       f"got {verify_frames!r}")
  if not 1 <= jpeg_quality <= 100:
    raise PrepareError(f"jpeg_quality must be in [1, 100], got {jpeg_quality}")
  if paths.is_remote(output_dir):
    raise PrepareError(
        f"output_dir={output_dir}: prepare writes a local folder (it resumes by renaming "
        f"files). Prepare into a local folder, copy it (`gcloud storage cp -r <folder>/{split} "
        f"{output_dir.rstrip('/')}/`), then check the copy with `python -m "
        f"hicmae_jax.data.verify --split_dir={output_dir.rstrip('/')}/{split}`")
  if aligns_all:  # auto's step is loaded once the clips show videos (_face_plan)
    _load_face_step(face)


def _read_entries(split_file: str, root: str, labels: Labels, split_dir: str, log: Log
                  ) -> tuple[list[SplitEntry], list[Skipped], Labels]:
  """-> (usable entries, malformed lines, labels with class names inferred if none given).

  Creates split_dir; raises PrepareError (after writing skipped.txt) when no line is usable."""
  entries, malformed = parse_split_file(
      split_file, root=root, label_type=labels.label_type,
      num_classes=len(labels.class_names) if labels.label_type == "class" else 0,
      num_targets=len(labels.target_names))
  for s in malformed[:10]:
    log(f"{split_file}:{s.line_no}: {s.reason}")
  if len(malformed) > 10:
    log(f"... and {len(malformed) - 10} more malformed lines (all listed in "
        f"{shard_writer.SKIPPED_FILENAME})")
  os.makedirs(os.path.join(split_dir, shard_writer.PROGRESS_DIRNAME), exist_ok=True)
  if not entries:
    shard_writer.write_skipped(split_dir, malformed)
    raise PrepareError(f"{split_file}: no usable line ({len(malformed)} malformed); nothing "
                       f"to prepare. See {os.path.join(split_dir, shard_writer.SKIPPED_FILENAME)}")
  if labels.label_type == "class" and not labels.class_names:
    num_classes = max(e.label for e in entries) + 1
    labels = dataclasses.replace(labels, class_names=[f"class_{i}" for i in range(num_classes)])
    log(f"warning: no class names given; assuming {num_classes} classes from the labels in "
        f"this split (pass --class_names or --dataset to be sure)")
  return entries, malformed, labels


def _clips_per_shard(num_clips: int, num_shards: int | None, clips_per_shard: int,
                     log: Log) -> int:
  """num_shards, when given, overrides clips_per_shard: ceil(num_clips / num_shards)."""
  if num_shards:
    clips_per_shard = -(-num_clips // max(1, num_shards))
  if clips_per_shard < 1:
    raise PrepareError(f"clips_per_shard must be >= 1, got {clips_per_shard}")
  count = -(-num_clips // clips_per_shard)
  if num_shards and count != num_shards:
    log(f"note: {num_clips} clips at {clips_per_shard} per shard make {count} shards, "
        f"not {num_shards}")
  return clips_per_shard


def _write_shards(tasks: list[shard_writer.ShardTask], split_dir: str, split: str,
                  num_workers: int, verbose: bool, log: Log
                  ) -> tuple[list[shard_writer.ShardResult], int]:
  """Keeps the shards an earlier run finished, writes the rest; -> (every shard's result in
  shard order, how many were written now)."""
  results, todo = shard_writer.resume(split_dir, tasks)
  n = sum(len(t.entries) for t in tasks)
  done_before = sum(len(t.entries) for t in tasks if t.index in results)
  workers = worker_pool.worker_count(num_workers, len(todo), n - done_before)
  log(f"[prepare {split}] {n} clips in {len(tasks)} shards: {len(results)} already done, "
      f"{len(todo)} to write with {workers} worker(s)")
  progress = worker_pool.ProgressLine(split, n, verbose and bool(todo), done_before)
  for result in worker_pool.run_tasks(todo, workers, progress, done_before):
    results[result.index] = result
  progress.finish(n)
  return [results[t.index] for t in tasks], len(todo)


def _info_extra(results: Sequence[shard_writer.ShardResult], skipped: Sequence[Skipped],
                labels: Labels, settings: dict, face: face_options.FaceOptions | None,
                log: Log, split: str, face_choice: dict | None = None
                ) -> tuple[dict, tuple[int, int]]:
  """-> (DatasetInfo.extra: how the split was made, frame sizes, skips by kind, the face
  summary, the --face choice (face_choice; with --face=auto each clip's from its report);
  the most common frame size (height, width))."""
  sizes: collections.Counter = collections.Counter()
  for r in results:
    sizes.update(r.frame_sizes)
  common_size = max(sorted(sizes), key=lambda k: sizes[k])  # most clips; ties: smallest key
  height, width = (int(v) for v in common_size.split("x"))
  extra = {"label_type": labels.label_type, "target_names": labels.target_names,
           "sampling_stride": labels.sampling_stride, **settings}
  if len(sizes) > 1:  # frames keep their source size; the online pipeline resizes anyway
    extra["frame_sizes"] = dict(sorted(sizes.items()))
  kinds = collections.Counter(s.kind for s in skipped)
  extra["skipped_by_kind"] = dict(sorted(kinds.items()))
  reports = {k: v for r in results for k, v in r.face_reports.items()}
  decisions = {k: v["auto"] for k, v in reports.items() if "auto" in v}
  aligned = {k: {f: x for f, x in v.items() if f != "auto"} for k, v in reports.items()
             if "num_frames" in v}
  if face is not None and (aligned or not decisions):
    extra["face"] = face_report.summarise(aligned, face.to_dict())
    log(f"[prepare {split}] {face_report.summary_text(extra['face'])}")
  if decisions:
    face_choice = face_auto.summarise(decisions, face_options.AUTO)
    log(f"[prepare {split}] --face=auto: {face_choice['clips_as_is']} clip(s) used as they "
        f"are, {face_choice['clips_aligned']} aligned ({face_auto.RULE})")
  if face_choice is not None:
    extra["face_choice"] = face_choice
  return extra, (height, width)


def _face_plan(face: face_options.FaceOptions | None, face_mode: str,
               entries: Sequence[SplitEntry], split_file: str, log: Log
               ) -> tuple[face_options.FaceOptions | None, str, dict | None]:
  """-> (face options, face mode, the face_choice record; None when it comes from the clips'
  reports, as with --face=auto on videos)."""
  if face_mode == "none":
    return face, face_mode, _check_face_none(entries, split_file, log)
  if face_mode == face_options.AUTO and not any(os.path.isfile(e.video) for e in entries):
    # Frames folders only: read as without --face (no detector needed, same fingerprints).
    return None, "", dict(face_auto.summarise({}, face_options.AUTO),
                          clips_as_is=len(entries), reason=face_auto.frames_folder().reason)
  if face_mode == face_options.AUTO:
    _load_face_step(face)
  if face_mode in ("", face_options.AUTO):
    return face, face_mode, None
  return face, face_mode, {"mode": face_mode, "reason": f"--face={face_mode}: every clip "
                                                        f"aligned"}


def _load_face_step(face: face_options.FaceOptions) -> None:
  """Fails fast on a missing package or model; forked workers inherit the loaded ones."""
  try:
    faces.get_aligner(face)
  except (ImportError, OSError, ValueError) as e:
    raise PrepareError(f"face step {face.detector!r}: {e}") from None


def _check_face_none(entries: Sequence[SplitEntry], split_file: str, log: Log) -> dict:
  """--face=none: the sampled frames of the first NONE_CHECK_CLIPS clips are looked at as
  --face=auto would; one warning line when they are not face crops. -> the record."""
  record = {"mode": "none", "rule": face_auto.RULE, "checked": {}, "warning": None}
  try:
    detect = faces.get_aligner(face_options.for_inspection()).detect
  except (ImportError, OSError) as e:
    record["warning"] = f"not checked: {e}"
    return record
  for entry in entries[:NONE_CHECK_CLIPS]:
    try:
      frames = video_io.clip_frames(entry.video)
    except (video_io.ClipError, OSError, ValueError):
      continue  # the shard writer reports an unreadable clip
    record["checked"][entry.clip_id] = face_auto.inspect(frames, detect).to_dict()
  scenes = {k: d for k, d in record["checked"].items() if d["choice"] == face_auto.ALIGN}
  if scenes:
    first = next(iter(scenes))
    record["warning"] = face_auto.none_warning(face_auto.Decision(face_auto.ALIGN, (
        f"{len(scenes)} of the first {len(record['checked'])} clips are not face crops "
        f"({first}: {scenes[first]['reason']})")), split_file)
    log(f"warning: {record['warning']}")
  return record


def prepare_split(split_file: str, output_dir: str, split: str, *, root: str = "",
                  label_type: str | None = None, class_names: Sequence[str] = (),
                  num_shards: int | None = None, clips_per_shard: int = 256,
                  num_workers: int = 1, jpeg_quality: int = 95, max_side: int = 0,
                  dataset_name: str = "custom", extra: dict | None = None,
                  verify_frames: str = "decode", face: face_options.FaceOptions | None = None,
                  max_av_mismatch_seconds: float = clip_loader.MAX_AV_MISMATCH_SECONDS,
                  crop: Sequence[int] | None = None, frame_size: int = 0,
                  face_mode: str = "", verbose: bool = True) -> schema.DatasetInfo:
  """Prepares one split into `<output_dir>/<split>/` and returns its DatasetInfo.

  label_type: "class" | "regression" | "none"; None takes the preset's (dataset_name names a
  preset in datasets.PRESETS) or else "class". class_names: empty takes the preset's, else
  they are inferred as class_0..class_{max label} with a warning. num_shards, when given,
  overrides clips_per_shard (clips_per_shard = ceil(clips / num_shards)). extra: merged into
  DatasetInfo.extra. verify_frames: "decode" (every frame of a frames folder is decoded
  once) or "markers" (see video_io.read_frames_dir). face: a faces.FaceOptions to store
  aligned face crops (None keeps the frames). max_av_mismatch_seconds: videos whose audio and
  frames last longer apart are skipped (0: no check). crop: (r0, r1, c0, c1) stores only
  those rows and columns (re-encoded JPEG; e.g. VoxCeleb2's pre-training fixed crop
  0,160,32,192, which the pipeline then skips: half the decoding per step). frame_size > 0:
  every frame resized to that square with PIL bilinear (the fine-tuning pipeline's resize,
  done once; re-encoded JPEG, so one more JPEG generation). face_mode: the --face value.
  "auto" (face: the options of its align step) aligns only the videos whose sampled frames
  are not face crops (faces/auto.py; with crop / frame_size such videos are skipped instead),
  "none" (face None) warns once when the first clips are not face crops, "dlib" or ""
  (library default) does as `face` says; the choice goes to extra["face_choice"]. Raises
  PrepareError when no clip at all can be written.
  """
  t0 = time.time()
  labels = labels_for(dataset_name, label_type, class_names)
  crop = tuple(int(v) for v in crop) if crop else None
  _check_options(output_dir, split, verify_frames, jpeg_quality, face, crop, frame_size,
                 face_mode)
  log = (lambda *a: print(*a, file=sys.stderr, flush=True)) if verbose else (lambda *a: None)
  split_dir = os.path.join(output_dir, split)
  entries, malformed, labels = _read_entries(split_file, root, labels, split_dir, log)
  clips_per_shard = _clips_per_shard(len(entries), num_shards, clips_per_shard, log)
  face, face_mode, face_choice = _face_plan(face, face_mode, entries, split_file, log)
  load_options = dict(jpeg_quality=jpeg_quality, max_side=max_side,
                      verify_frames=verify_frames, face=face,
                      max_av_mismatch_seconds=max_av_mismatch_seconds)
  # Each only when set: older splits' shard fingerprints stay valid.
  load_options.update({k: v for k, v in (("crop", crop), ("frame_size", int(frame_size)),
                                         ("face_auto", face_mode == face_options.AUTO)) if v})
  tasks = shard_writer.plan_shards(entries, split_dir, clips_per_shard, load_options)
  results, num_written = _write_shards(tasks, split_dir, split, num_workers, verbose, log)

  skipped = sorted(malformed + [s for r in results for s in r.skipped], key=lambda s: s.line_no)
  shard_writer.write_skipped(split_dir, skipped)
  skipped_file = os.path.join(split_dir, shard_writer.SKIPPED_FILENAME)
  num_clips = sum(r.num_records for r in results)
  if num_clips == 0:
    raise PrepareError(f"every clip of {split_file} failed ({len(skipped)} skipped); reasons "
                       f"in {skipped_file}, e.g. {skipped[0].reason}")
  settings = {"clips_per_shard": clips_per_shard, "jpeg_quality": jpeg_quality,
              "max_side": max_side, "source_split_file": os.path.abspath(split_file),
              "max_av_mismatch_seconds": max_av_mismatch_seconds,
              **({"crop": list(crop)} if crop else {}),
              **({"frame_size": int(frame_size)} if frame_size else {})}
  info_extra, (height, width) = _info_extra(results, skipped, labels, settings, face, log, split,
                                            face_choice)
  info_extra.update(extra or {})
  info = schema.DatasetInfo(
      name=dataset_name, split=split, num_clips=num_clips,
      shards=[os.path.basename(t.path) for t in tasks],
      class_names=labels.class_names if labels.label_type == "class" else [],
      num_targets=len(entries[0].targets) if labels.label_type == "regression" else 0,
      frame_height=height, frame_width=width, num_skipped=len(skipped), extra=info_extra,
      shard_bytes=[r.num_bytes for r in results], shard_sha256=[r.sha256 for r in results])
  info.save(split_dir)  # last: its presence marks a complete split
  kinds = info_extra["skipped_by_kind"]
  where = (" (" + ", ".join(f"{v} {k}" for k, v in kinds.items()) + f"; see {skipped_file})"
           if skipped else "")
  log(f"[prepare {split}] wrote {num_clips} clips, skipped {len(skipped)}{where}, "
      f"{len(tasks)} shards ({num_written} written now) in {time.time() - t0:.1f} s "
      f"-> {split_dir}")
  return info


def _define_flags(values: flags.FlagValues) -> None:
  def string(name, default, text, **kw):
    flags.DEFINE_string(name, default, text, flag_values=values, **kw)

  def integer(name, default, text, **kw):
    flags.DEFINE_integer(name, default, text, flag_values=values, **kw)

  string("split_file", None, "`<frames_dir_or_video> <audio_wav|-> <label...>` per line",
         required=True)
  string("output_dir", None, "shards go to <output_dir>/<split>/", required=True)
  string("split", "", "split name (default: the split file's name without extension)")
  string("root", "", "folder that relative paths resolve against")
  string("dataset", "custom", f"preset for class names / label type: "
                              f"{', '.join(datasets.PRESETS)}, or custom")
  flags.DEFINE_enum("label_type", None, list(LABEL_TYPES), "default: the preset's, else class",
                    flag_values=values)
  string("class_names", "", "comma-separated, in label-index order")
  integer("num_shards", None, "number of shards (overrides --clips_per_shard)")
  integer("clips_per_shard", 256, "clips written into one shard")
  integer("num_workers", os.cpu_count() or 1,
          "processes, one shard each at a time (default: all CPUs)")
  integer("jpeg_quality", 95, "JPEG quality for frames decoded from video files")
  integer("max_side", 0, "shrink video frames so the longer side is at most this (0: keep); "
                         "frames folders always keep their source bytes; with --face the "
                         "crops are --face_size")
  string("crop", "", "r0,r1,c0,c1: store only these rows and columns of every frame "
                     "(re-encoded JPEG). Pre-training on VoxCeleb2: 0,160,32,192, the config's "
                     "fixed_crop, done once here instead of every step")
  integer("frame_size", 0, "resize every frame to this square (PIL bilinear, re-encoded JPEG "
                           "at --jpeg_quality), the pipelines' resize done once: for "
                           "fine-tuning train splits, 160. Keep 0 for splits you evaluate "
                           "against the original's numbers: their source bytes decode to its "
                           "very pixels")
  flags.DEFINE_enum("verify_frames", "decode", list(video_io.VERIFY_MODES),
                    "decode: decode every source frame once to catch corrupt files; markers: "
                    "decode the first, check the rest for complete start/end markers (faster)",
                    flag_values=values)
  flags.DEFINE_float("max_av_mismatch_seconds", clip_loader.MAX_AV_MISMATCH_SECONDS,
                     "skip videos whose audio and frames last this much apart (0: no check)",
                     flag_values=values)
  face_options.define_flags(values)
  integer("preview", 0, "with --face: contact sheet PNG of this many clips (frame with box "
                        "and landmarks, aligned crop)")
  string("preview_file", "", "where the contact sheet goes (default <output_dir>/<split>/"
                             "face_preview.png)")


def main(argv: Sequence[str] | None = None) -> int:
  """The command line (argv without the program name; None: sys.argv[1:]) -> the exit code:
  0, 1 when no clip could be written, 2 for bad input."""
  return cli.run_own(_define_flags, _main, argv, doc=__doc__)


def _crop_flag(text: str) -> tuple[int, ...] | None:
  """--crop's r0,r1,c0,c1 (None when empty); BadInput names the flag."""
  try:
    crop = tuple(int(v) for v in text.split(",")) if text.strip() else None
    if crop is not None and len(crop) != 4:
      raise ValueError
  except ValueError:
    raise cli.BadInput(f"--crop={text}: expected four integers r0,r1,c0,c1 "
                       f"(e.g. 0,160,32,192)") from None
  return crop


def _main(args: flags.FlagValues) -> int:
  if args.dataset != "custom":
    try:
      datasets.get_preset(args.dataset)
    except KeyError as e:
      raise cli.BadInput(e.args[0]) from None
  split = args.split or os.path.splitext(os.path.basename(args.split_file))[0]
  class_names = [c.strip() for c in args.class_names.split(",") if c.strip()]
  face = face_options.from_flags(args)
  if args.preview and face is None:
    raise cli.BadInput("--preview shows face crops: add --face=dlib (or leave --face=auto)")
  crop = _crop_flag(args.crop)
  try:
    prepare_split(
        args.split_file, args.output_dir, split, root=args.root, label_type=args.label_type,
        class_names=class_names, num_shards=args.num_shards,
        clips_per_shard=args.clips_per_shard, num_workers=args.num_workers,
        jpeg_quality=args.jpeg_quality, max_side=args.max_side,
        dataset_name=args.dataset.lower().replace("-", "_"),
        verify_frames=args.verify_frames, face=face,
        max_av_mismatch_seconds=args.max_av_mismatch_seconds, crop=crop,
        frame_size=args.frame_size, face_mode=args.face)
  except PrepareError as e:  # the input was read: no clip could be written (exit 1)
    print(f"error: {e}", file=sys.stderr)
    return 1
  if args.preview:
    split_dir = os.path.join(args.output_dir, split)
    path = args.preview_file or os.path.join(split_dir, preview.PREVIEW_FILENAME)
    clips = split_reader.iterate_clips(split_dir)
    sources = [c.source_video for _, c in zip(range(args.preview), clips)]
    preview.write_contact_sheet(sources, face, path, video_io.clip_frames)
    print(f"[prepare {split}] face preview of {len(sources)} clips -> {path}", file=sys.stderr)
  return 0


if __name__ == "__main__":
  sys.exit(main())
