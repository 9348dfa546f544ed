"""Dataset presets: class names, folds, split files and temporal stride of the original's datasets.

`python -m hicmae_jax.data.prepare --dataset=crema_d ...` reads this table to fill the class
names (in the order of the original's label indices) and the label type. Only plain Python
here: configs and data tools import it without pulling anything heavy.

Class orders come from the original release (github sunlicai/HiCMAE, `preprocess/*.py`,
`datasets_av.py` and its split CSVs) where it shows them; where it does not, the order is the
dataset's own label numbering and the entry says so in `notes`.
"""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class DatasetPreset:
  """What the prepare tool and the configs need to know about one dataset.

  label_type: "class" (one int per clip), "regression" (`target_names` floats per clip) or
  "none" (unlabeled pretraining data). `splits` are the split-file names the original reads in
  each fold folder (`split01/train.csv` ...); `num_folds` is 0 for datasets without folds.
  `sampling_stride` is the original's temporal sampling rate (`--sampling_rate`).
  """
  name: str
  display_name: str
  label_type: str
  class_names: tuple[str, ...] = ()
  target_names: tuple[str, ...] = ()
  num_folds: int = 0
  splits: tuple[str, ...] = ("train", "test")
  sampling_stride: int = 4
  frame_ext: str = "jpg"
  notes: str = ""

  @property
  def num_classes(self) -> int:
    return len(self.class_names)

  @property
  def num_targets(self) -> int:
    return len(self.target_names)


def _compound(n: int) -> tuple[str, ...]:
  return tuple(f"compound_{i:02d}" for i in range(n))


PRESETS: dict[str, DatasetPreset] = {p.name: p for p in (
    DatasetPreset(
        "crema_d", "CREMA-D", "class",
        # The original's codes, same order: ANG DIS FEA HAP NEU SAD (preprocess/creamd_av.py).
        ("anger", "disgust", "fear", "happiness", "neutral", "sadness"),
        num_folds=5, splits=("train", "test"),
        notes="5 subject-independent folds; the original validates on test.csv. 4 clips listed "
              "as broken upstream are left out of the original's split files."),
    DatasetPreset(
        "mafw", "MAFW", "class",
        # preprocess/mafw_av.py, same order.
        ("anger", "disgust", "fear", "happiness", "neutral", "sadness", "surprise", "contempt",
         "anxiety", "helplessness", "disappointment"),
        num_folds=5, splits=("train", "test"), frame_ext="png",
        notes="single-label set; frames are png; the original validates on test.csv."),
    DatasetPreset(
        "mafw_43", "MAFW (43 compound)", "class", _compound(43),
        num_folds=5, splits=("train", "test"), frame_ext="png",
        notes="43 compound expressions; names are placeholders in MAFW's own label-index order "
              "(the original release does not list them). Pass --class_names to name them."),
    DatasetPreset(
        "dfew", "DFEW", "class",
        # DFEW's own label numbering 1..7, shifted to 0..6 (not shown in the original release).
        ("happiness", "sadness", "neutral", "anger", "surprise", "disgust", "fear"),
        num_folds=5, splits=("train", "val", "test"),
        notes="order is DFEW's label numbering (1 happy .. 7 fear) minus one; the original "
              "reads val.csv for validation."),
    DatasetPreset(
        "ravdess", "RAVDESS", "class",
        # Label = RAVDESS emotion code - 1 (checked against the original's split CSVs).
        ("neutral", "calm", "happiness", "sadness", "anger", "fear", "disgust", "surprise"),
        num_folds=6, splits=("train", "test"),
        notes="6 actor-independent folds; label = RAVDESS emotion code - 1."),
    DatasetPreset(
        "msp_improv", "MSP-IMPROV", "class",
        # The original prints ('A', 'H', 'N', 'S').
        ("anger", "happiness", "neutral", "sadness"),
        num_folds=6, splits=("train", "val", "test"),
        notes="6 session folds; the original reads val.csv for validation."),
    DatasetPreset(
        "iemocap", "IEMOCAP", "class",
        ("anger", "happiness", "neutral", "sadness"),
        num_folds=5, splits=("train", "val", "test"),
        notes="5 session folds; order assumed (the usual 4-class setup, excited merged into "
              "happiness); the original release does not show it."),
    DatasetPreset(
        "werewolf_xl", "Werewolf-XL", "regression",
        target_names=("arousal", "valence", "dominance"),
        num_folds=5, splits=("train", "test"), sampling_stride=3,
        notes="3 float targets per clip in the split-file order (assumed arousal, valence, "
              "dominance); temporal stride 3 as in the original's script."),
    DatasetPreset(
        "voxceleb2", "VoxCeleb2 dev", "none",
        splits=("pretrain",),
        notes="unlabeled pre-training set: one mp4 per line (the original writes "
              "`<mp4> 0` with a dummy label, also accepted); audio from the mp4 or a wav."),
    DatasetPreset(
        "synthetic", "Synthetic audio-visual", "class",
        ("class_0", "class_1", "class_2", "class_3"),
        splits=("train", "val", "test", "pretrain"),
        notes="generated by hicmae_jax.data.synthetic; the class count is a generator option "
              "(these names are for the default of 4)."),
)}


def get_preset(name: str) -> DatasetPreset:
  """Looks a preset up by name ("crema_d", "CREMA-D" and "crema-d" all work)."""
  key = name.strip().lower().replace("-", "_")
  if key not in PRESETS:
    raise KeyError(f"unknown dataset {name!r}; known: {', '.join(sorted(PRESETS))} "
                   f"(or use --dataset=custom with --class_names)")
  return PRESETS[key]
