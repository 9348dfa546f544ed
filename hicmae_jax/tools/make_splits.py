r"""Split files of the datasets whose fold rule is public, from a folder listing.

  python -m hicmae_jax.tools.make_splits --dataset=crema_d \
      --video_dir=/data/CREMA-D/face_aligned --audio_dir=/data/CREMA-D/AudioWAV \
      --output_dir=splits/crema_d
  python -m hicmae_jax.tools.make_splits --dataset=ravdess \
      --video_dir=/data/RAVDESS/face_aligned --audio_dir=/data/RAVDESS/audio_16k \
      --output_dir=splits/ravdess

Writes <output_dir>/fold<k>/{train,test}.csv in the original's format (the lists of its
release, rebuilt; rules in hicmae_jax/crossval/splits.py), checks that no speaker is in both
lists of a fold, and prints the prepare commands that turn them into a --folds_root for
`python -m hicmae_jax.tools.cross_validate`. The original's own split files work as they are:
pass them to prepare the same way.
"""
from __future__ import annotations

import json
import shlex

from absl import flags

from hicmae_jax import cli, runtime

_DATASET = flags.DEFINE_enum("dataset", None, ["crema_d", "ravdess"], "Dataset rule.")
_VIDEO_DIR = flags.DEFINE_string("video_dir", None, "Folder of the clips (frame folders or "
                                 "videos; RAVDESS: of the Actor_XX folders).")
_AUDIO_DIR = flags.DEFINE_string("audio_dir", "", "Folder of the wavs (empty: each video's own "
                                 "audio track).")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Where fold<k>/{train,test}.csv go.")
_FOLDS_ROOT = flags.DEFINE_string("folds_root", "<folds_root>", "Used in the printed prepare "
                                  "commands only.")
flags.mark_flags_as_required(["dataset", "video_dir", "output_dir"])


def make_splits(dataset: str, video_dir: str, audio_dir: str, output_dir: str,
                folds_root: str = "<folds_root>") -> dict:
  """Writes the split files; -> a summary with the prepare commands."""
  from hicmae_jax.crossval import leakage, splits
  folds = splits.make_folds(dataset, video_dir, audio_dir)
  for k, parts in folds.items():
    leakage.check_entries(f"fold{k}", [e.video for e in parts["train"]],
                          [e.video for e in parts["test"]], leakage.SPEAKER_PATTERNS[dataset])
  paths = splits.write_split_files(output_dir, folds)
  commands = [" ".join(shlex.quote(a) for a in (
      "python", "-m", "hicmae_jax.data.prepare", f"--dataset={dataset}",
      f"--split_file={paths[k][s]}", f"--output_dir={folds_root}/fold{k}", f"--split={s}"))
      for k in sorted(paths) for s in ("train", "test")]
  return {"output_dir": output_dir,
          "folds": {f"fold{k}": {s: len(v) for s, v in parts.items()}
                    for k, parts in folds.items()},
          "prepare_commands": commands}


def main(argv):
  if len(argv) > 1:
    raise cli.BadInput(f"unexpected argument {argv[1]!r}: every input is a flag")
  cli.check_output_dir(_OUTPUT_DIR.value, "--output_dir")
  runtime.setup_logging(None)
  summary = make_splits(_DATASET.value, _VIDEO_DIR.value, _AUDIO_DIR.value, _OUTPUT_DIR.value,
                        _FOLDS_ROOT.value)
  print(json.dumps({k: v for k, v in summary.items() if k != "prepare_commands"}, indent=2))
  print("\n".join(summary["prepare_commands"]))


if __name__ == "__main__":
  cli.run(main)
