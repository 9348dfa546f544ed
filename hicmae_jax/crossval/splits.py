"""Split files for the datasets whose fold rule is public, made from a folder listing.

Output: the original's split format (`<frames_dir_or_video> <audio_wav> <label>`, one clip a
line, in sorted path order), one train and one test list per fold, the same lists the original
release ships in saved/data/<dataset>/audio_visual/split0k/ (tests/test_crossval.py checks
excerpts of its CREMA-D files line by line, paths aside).

CREMA-D (preprocess/creamd_av.py of the original): entries
`<actor>_<sentence>_<emotion>_<level>` (frame folders or video files); label = index of the
emotion code in ANG DIS FEA HAP NEU SAD;
fold k (1..5) tests the actors with index actor - 1001 in [18 (k - 1), 18 k), the last fold
also the one left over (91 actors = 4 x 18 + 19); the four clips listed as broken upstream
are left out; an entry without its wav is left out with a warning, as there.
RAVDESS: entries
`Actor_XX/<modality>-<channel>-<emotion>-<intensity>-<statement>-<repetition>-<actor>`
(speech, channel 01; video-only 02 preferred over audio-visual 01 when both are there, as the
original's frames come from the video-only files); label = emotion code - 1; fold k (1..6)
tests actors 4 (k - 1) + 1 .. 4 k; the wav is
<audio_dir>/Actor_XX/03-<channel>-...-<actor>.wav (the audio-only file of the same take).
"""
from __future__ import annotations

import dataclasses
import logging
import os
import re
from typing import Callable

log = logging.getLogger(__name__)

CREMA_D_EMOTIONS = ("ANG", "DIS", "FEA", "HAP", "NEU", "SAD")
# Listed as broken in the CREMA-D repository (github CheyneyComputerScience/CREMA-D) and left
# out of the original's split files.
CREMA_D_BROKEN = ("1076_MTI_NEU_XX", "1076_MTI_SAD_XX", "1064_TIE_SAD_XX", "1064_IEO_DIS_MD")
CREMA_D_FIRST_ACTOR = 1001
CREMA_D_NUM_FOLDS = 5
CREMA_D_ACTORS_PER_FOLD = 18  # 91 // 5; the last fold takes the remaining 19
_CREMA_D_NAME = re.compile(r"^(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{2})$")

RAVDESS_NUM_FOLDS = 6
RAVDESS_ACTORS_PER_FOLD = 4
_RAVDESS_NAME = re.compile(r"^(0[12])-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)$")
_VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".flv")


@dataclasses.dataclass(frozen=True)
class Entry:
  """One clip of the listing: its split-file line's fields and its speaker id."""
  video: str
  audio: str
  label: int
  speaker: str

  def line(self) -> str:
    return f"{self.video} {self.audio} {self.label}"


def _stem(name: str) -> str:
  base, ext = os.path.splitext(name)
  return base if ext.lower() in _VIDEO_EXTENSIONS else name


def _listing(folder: str, what: str) -> list[str]:
  if not os.path.isdir(folder):
    raise FileNotFoundError(f"{what}={folder}: no such folder")
  return sorted(name for name in os.listdir(folder) if not name.startswith("."))


# --------------------------------------------------------------------------------- CREMA-D --

def crema_d_entries(video_dir: str, audio_dir: str) -> list[Entry]:
  """Every usable clip of a CREMA-D folder (frame folders or videos), in sorted order."""
  entries, missing_audio = [], []
  for name in _listing(video_dir, "--video_dir"):
    clip = _stem(name)
    m = _CREMA_D_NAME.match(clip)
    if not m or m.group(3) not in CREMA_D_EMOTIONS or clip in CREMA_D_BROKEN:
      continue
    audio = os.path.join(audio_dir, clip + ".wav") if audio_dir else "-"
    if audio_dir and not os.path.isfile(audio):
      missing_audio.append(audio)
      continue
    entries.append(Entry(os.path.join(video_dir, name), audio,
                         CREMA_D_EMOTIONS.index(m.group(3)), m.group(1)))
  for path in missing_audio:
    log.warning("no audio %s: its clip is left out", path)
  return entries


def crema_d_fold_of(actor: str, num_folds: int = CREMA_D_NUM_FOLDS,
                    per_fold: int = CREMA_D_ACTORS_PER_FOLD) -> int:
  """The fold (1-based) whose test split holds this actor; the last fold takes the rest."""
  index = int(actor) - CREMA_D_FIRST_ACTOR
  return min(index // per_fold, num_folds - 1) + 1


# --------------------------------------------------------------------------------- RAVDESS --

def ravdess_entries(video_dir: str, audio_dir: str) -> list[Entry]:
  """Every speech clip under <video_dir>/Actor_XX/, in sorted order."""
  chosen: dict[tuple[str, str], tuple[str, str]] = {}  # (actor folder, take) -> (modality, name)
  for actor_dir in _listing(video_dir, "--video_dir"):
    folder = os.path.join(video_dir, actor_dir)
    if not (actor_dir.startswith("Actor_") and os.path.isdir(folder)):
      continue
    for name in _listing(folder, "actor folder"):
      m = _RAVDESS_NAME.match(_stem(name))
      if not m or m.group(2) != "01":  # speech only
        continue
      take = _stem(name)[3:]
      modality = m.group(1)
      if (actor_dir, take) not in chosen or modality == "02":
        chosen[(actor_dir, take)] = (modality, name)
  entries = []
  for (actor_dir, take), (_, name) in sorted(chosen.items(), key=lambda kv: (kv[0][0],
                                                                              kv[1][1])):
    fields = take.split("-")  # channel, emotion, intensity, statement, repetition, actor
    audio = (os.path.join(audio_dir, actor_dir, f"03-{take}.wav") if audio_dir else "-")
    if audio_dir and not os.path.isfile(audio):
      log.warning("no audio %s: its clip is left out", audio)
      continue
    entries.append(Entry(os.path.join(video_dir, actor_dir, name), audio,
                         int(fields[1]) - 1, fields[5]))
  return entries


def ravdess_fold_of(actor: str, num_folds: int = RAVDESS_NUM_FOLDS,
                    per_fold: int = RAVDESS_ACTORS_PER_FOLD) -> int:
  return min((int(actor) - 1) // per_fold, num_folds - 1) + 1


# ------------------------------------------------------------------------------------ folds --

@dataclasses.dataclass(frozen=True)
class Rule:
  """A dataset's fold rule: its listing reader, the fold of a speaker, the fold count."""
  entries: Callable[[str, str], list[Entry]]
  fold_of: Callable[[str], int]
  num_folds: int


RULES = {
    "crema_d": Rule(crema_d_entries, crema_d_fold_of, CREMA_D_NUM_FOLDS),
    "ravdess": Rule(ravdess_entries, ravdess_fold_of, RAVDESS_NUM_FOLDS),
}


def make_folds(dataset: str, video_dir: str, audio_dir: str = ""
               ) -> dict[int, dict[str, list[Entry]]]:
  """{fold: {"train": entries, "test": entries}} by the dataset's rule, each in sorted order."""
  key = dataset.lower().replace("-", "_")
  if key not in RULES:
    raise ValueError(f"--dataset={dataset}: no public fold rule here; known: "
                     f"{', '.join(sorted(RULES))} (other datasets: use the original's split "
                     f"files)")
  rule = RULES[key]
  entries = rule.entries(video_dir, audio_dir)
  if not entries:
    example = "1001_DFA_ANG_XX" if key == "crema_d" else "Actor_01/02-01-01-01-01-01-01"
    raise ValueError(f"--video_dir={video_dir} holds no {dataset} clip (names such as "
                     f"{example})")
  folds = {}
  for k in range(1, rule.num_folds + 1):
    folds[k] = {"train": [e for e in entries if rule.fold_of(e.speaker) != k],
                "test": [e for e in entries if rule.fold_of(e.speaker) == k]}
  return folds


def write_split_files(output_dir: str, folds: dict[int, dict[str, list[Entry]]]
                      ) -> dict[int, dict[str, str]]:
  """<output_dir>/fold<k>/<split>.csv for every fold; -> {fold: {split: path}}."""
  paths: dict[int, dict[str, str]] = {}
  for k, splits in folds.items():
    for split, entries in splits.items():
      path = os.path.join(output_dir, f"fold{k}", f"{split}.csv")
      os.makedirs(os.path.dirname(path), exist_ok=True)
      with open(path + ".tmp", "w") as f:
        f.write("".join(e.line() + "\n" for e in entries))
      os.replace(path + ".tmp", path)
      paths.setdefault(k, {})[split] = path
  return paths
