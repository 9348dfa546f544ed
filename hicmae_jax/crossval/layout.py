"""Where the folds of a k-fold protocol live.

  <folds_root>/fold1/train/   prepared splits (dataset_info.json + shards), one folder each
  <folds_root>/fold1/val/     optional: model selection happens here when present
  <folds_root>/fold1/test/
  <folds_root>/fold2/...

`fold<k>` folders are numbered from 1 (gaps allowed); each needs train and test. The original's
split files map one to one: split0k/train.csv -> `prepare --split_file=split0k/train.csv
--output_dir=<folds_root>/fold<k> --split=train`, and the same for val.csv / test.csv.
"""
from __future__ import annotations

import dataclasses
import os
import re

from hicmae_jax.data.format import schema

FOLD_DIR_RE = re.compile(r"^fold(\d+)$")
SPLITS = ("train", "val", "test")


@dataclasses.dataclass(frozen=True)
class Fold:
  """One fold: its number and prepared split folders (val is "" when the fold has none)."""
  number: int
  train: str
  val: str
  test: str

  @property
  def name(self) -> str:
    return f"fold{self.number}"


def _prepared(path: str) -> bool:
  return os.path.isfile(os.path.join(path, schema.INFO_FILENAME))


def discover(folds_root: str, only: tuple[int, ...] = ()) -> list[Fold]:
  """The folds under folds_root in number order (only: these fold numbers).

  Raises FileNotFoundError naming the folder or split that is missing or not prepared."""
  if not os.path.isdir(folds_root):
    raise FileNotFoundError(f"--folds_root={folds_root}: no such folder; it holds "
                            f"fold1/{{train,test}} ... (prepared splits; see "
                            f"hicmae_jax/crossval/layout.py)")
  numbers = sorted(int(m.group(1)) for name in os.listdir(folds_root)
                   if (m := FOLD_DIR_RE.match(name))
                   and os.path.isdir(os.path.join(folds_root, name)))
  if not numbers:
    raise FileNotFoundError(f"--folds_root={folds_root} holds no fold<k> folder: expected "
                            f"fold1/train, fold1/test, fold2/... (prepared splits)")
  if only:
    unknown = sorted(set(only) - set(numbers))
    if unknown:
      raise FileNotFoundError(f"--folds={','.join(map(str, only))}: {folds_root} has no "
                              f"fold {unknown} (it has {numbers})")
    numbers = [n for n in numbers if n in only]
  folds = []
  for n in numbers:
    base = os.path.join(folds_root, f"fold{n}")
    dirs = {s: os.path.join(base, s) for s in SPLITS}
    for split in ("train", "test"):
      if not _prepared(dirs[split]):
        raise FileNotFoundError(
            f"{dirs[split]} is not a prepared split ({schema.INFO_FILENAME} missing): create "
            f"it with python -m hicmae_jax.data.prepare --split_file=<fold {n} {split} list> "
            f"--output_dir={base} --split={split}")
    val = dirs["val"] if _prepared(dirs["val"]) else ""
    if not val and os.path.isdir(dirs["val"]):
      raise FileNotFoundError(f"{dirs['val']} exists but is not a prepared split "
                              f"({schema.INFO_FILENAME} missing): finish preparing it or "
                              f"remove it")
    folds.append(Fold(n, dirs["train"], val, dirs["test"]))
  return folds
