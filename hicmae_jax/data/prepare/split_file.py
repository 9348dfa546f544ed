"""A split file of clips, parsed: one SplitEntry per usable line (unique clip ids), a Skipped
for every malformed one.

The original's format, one clip per line, space-separated:
  `<frames_dir_or_video> <audio_wav> <label>`      classification (int class index)
  `<frames_dir_or_video> <audio_wav> <t1> <t2> ..` regression (floats)
  `<video> [<audio_wav>]` or `<video> 0`          unlabeled (label_type none; VoxCeleb2 lists)
`<audio_wav>` may be `-`/`none` (or left out before a label) to take the video file's own audio
track. Relative paths resolve against `root`. Blank lines and lines starting with `#` are
ignored. Read by prepare, the TFDS builders, predict and the feature export alike.
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np

LABEL_TYPES = ("class", "regression", "none")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".flv", ".mpg", ".mpeg")
NO_AUDIO_FIELDS = ("-", "none", "null", "")


class PrepareError(ValueError):
  """The split cannot be prepared at all (no split file, no readable clip, bad options); the
  message says why."""


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
