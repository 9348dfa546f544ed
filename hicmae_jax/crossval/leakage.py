"""No speaker in both train and test of a fold: the check run before any fold trains.

A speaker (subject) id is read from each clip's file name by a pattern per dataset (the
prepared split's dataset_info name): CREMA-D `1001_DFA_ANG_XX` -> 1001, RAVDESS
`02-01-06-01-02-01-12` -> 12. Other datasets carry no id the code can trust and are not
checked unless a pattern is given (a regular expression whose first group is the id, searched
in the clip's file name without its extension).

A split's clips are taken from its source split file (dataset_info.json records it), else
from its records (clip id and source path only; nothing is decoded).
"""
from __future__ import annotations

import dataclasses
import os
import re
from typing import Iterable

from hicmae_jax.data.format import record_index, schema
from hicmae_jax.data.prepare.split_file import VIDEO_EXTENSIONS

SPEAKER_PATTERNS = {
    "crema_d": r"^(\d{4})_[A-Z]{3}_[A-Z]{3}_[A-Z]{2}$",
    "ravdess": r"^\d\d-\d\d-\d\d-\d\d-\d\d-\d\d-(\d\d)$",
}


class LeakageError(ValueError):
  """Speakers in both train and test of a fold; the message names them."""


@dataclasses.dataclass(frozen=True)
class SplitSpeakers:
  """speakers: {speaker id: clip count}; unmatched: clips whose name the pattern misses."""
  split_dir: str
  speakers: dict[str, int]
  unmatched: int


def _name(path: str) -> str:
  base = os.path.basename(os.path.normpath(path))
  stem, ext = os.path.splitext(base)
  return stem if ext.lower() in VIDEO_EXTENSIONS else base


def clip_paths(split_dir: str) -> list[str]:
  """The source paths of a split's clips: from its split file when that is still there, else
  from its records (source_video, or the clip id)."""
  info = schema.DatasetInfo.load(split_dir)
  split_file = info.extra.get("source_split_file", "")
  if split_file and os.path.isfile(split_file):
    with open(split_file) as f:
      return [line.split()[0] for line in f
              if line.strip() and not line.lstrip().startswith("#")]
  rows = record_index.read_fields(split_dir, ("clip_id", "source_video"))
  return [str(r["source_video"] or r["clip_id"]) for r in rows]


def speakers_of(paths: Iterable[str], pattern: str) -> tuple[dict[str, int], int]:
  """({speaker id: clip count}, clips the pattern does not match)."""
  regex = re.compile(pattern)
  counts: dict[str, int] = {}
  unmatched = 0
  for path in paths:
    m = regex.search(_name(path))
    if not m:
      unmatched += 1
      continue
    speaker = m.group(1) if regex.groups else m.group(0)
    counts[speaker] = counts.get(speaker, 0) + 1
  return counts, unmatched


def pattern_for(split_dir: str, pattern: str = "") -> str:
  """The given pattern, else the dataset's (by its dataset_info name), else ""."""
  if pattern:
    return pattern
  name = schema.DatasetInfo.load(split_dir).name.lower().replace("-", "_")
  return SPEAKER_PATTERNS.get(name, "")


def split_speakers(split_dir: str, pattern: str) -> SplitSpeakers:
  counts, unmatched = speakers_of(clip_paths(split_dir), pattern)
  return SplitSpeakers(split_dir, counts, unmatched)


def check_fold(name: str, train_dir: str, test_dir: str, pattern: str = "") -> dict:
  """Raises LeakageError when a speaker id is in both splits; returns what was checked
  ({"checked": False} when no pattern applies)."""
  pattern = pattern_for(train_dir, pattern)
  if not pattern:
    return {"checked": False, "reason": "no speaker pattern for this dataset"}
  train = split_speakers(train_dir, pattern)
  test = split_speakers(test_dir, pattern)
  both = sorted(set(train.speakers) & set(test.speakers))
  if both:
    shown = ", ".join(f"{s} (train {train.speakers[s]} clips, test {test.speakers[s]})"
                      for s in both[:20])
    raise LeakageError(
        f"{name}: {len(both)} speaker id(s) in both train ({train_dir}) and test ({test_dir}): "
        f"{shown}{' ...' if len(both) > 20 else ''}. A speaker-independent protocol needs "
        f"every speaker's clips in one split: regenerate the split files (python -m "
        f"hicmae_jax.tools.make_splits) or fix them by hand, and prepare again")
  return {"checked": True, "pattern": pattern, "train_speakers": len(train.speakers),
          "test_speakers": len(test.speakers),
          "unmatched_clips": train.unmatched + test.unmatched}


def check_entries(name: str, train: Iterable[str], test: Iterable[str], pattern: str) -> None:
  """The same check on two lists of paths (split files before they are prepared)."""
  a, _ = speakers_of(train, pattern)
  b, _ = speakers_of(test, pattern)
  both = sorted(set(a) & set(b))
  if both:
    raise LeakageError(f"{name}: speaker id(s) in both train and test: {', '.join(both[:20])}"
                       f"{' ...' if len(both) > 20 else ''}")
