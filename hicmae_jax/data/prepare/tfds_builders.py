"""TFDS builders (manual download) for the preset datasets, so `tfds.data_source(...)` works.

Optional: needs `pip install tensorflow-datasets==4.9.10` (no TensorFlow). The main data path
is `python -m hicmae_jax.data.prepare`; these builders read the same split files with the
same readers (clip_loader.load_clip) and store the same fields, as TFDS ArrayRecord files.

  python -m hicmae_jax.data.tfds_builders --dataset=crema_d --config=split01 \
      --manual_dir=saved/data/crema-d/audio_visual --data_dir=~/tensorflow_datasets

  import tensorflow_datasets as tfds
  from hicmae_jax.data.prepare import tfds_builders  # registers hicmae_crema_d, hicmae_mafw, ...
  source = tfds.data_source("hicmae_crema_d/split01", split="test", data_dir=...)
  source[0]  # {"clip_id": b"...", "frames": [jpeg bytes, ...], "audio": int16 [N], ...}

Manual folder: the original's split folders, `<manual_dir>/split01/train.csv` ... (`.txt` also
read); datasets without folds (voxceleb2, synthetic) keep their split files directly in
`<manual_dir>`. Relative paths in split files resolve against `<manual_dir>`.
Features are plain tensors and bytes: `tfds.features.Image/Video/Audio` need TensorFlow.
Frames stay encoded (source bytes for frames folders, JPEG for videos). Clips that cannot be
read are logged and left out (prepare also lists them in skipped.txt). Generation runs in
one process: for large sets (VoxCeleb2) prefer prepare, which is parallel and resumable.
"""
from __future__ import annotations

import os
import sys
from typing import Sequence

import numpy as np
import tensorflow_datasets as tfds
from absl import flags
from etils import epath

from hicmae_jax import cli
from hicmae_jax.data.format import datasets
from hicmae_jax.data.prepare import clip_loader, video_io
from hicmae_jax.data.prepare.split_file import parse_split_file

_CITATION = """@article{sun2024hicmae,
  title={HiCMAE: Hierarchical Contrastive Masked Autoencoder for Self-Supervised
         Audio-Visual Emotion Recognition},
  author={Sun, Licai and Lian, Zheng and Liu, Bin and Tao, Jianhua},
  journal={Information Fusion}, year={2024}}"""


class _HiCMAEBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Shared builder: one config per fold (`split01` ...), one TFDS split per split file."""

  PRESET: datasets.DatasetPreset
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Record fields of hicmae_jax.data.format.schema version 1."}

  def __init__(self, *, file_format=None, **kwargs):
    # ArrayRecord (random access) is what tfds.data_source and grain read.
    super().__init__(file_format=file_format or "array_record", **kwargs)

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:
    # TFDS 4.9.10 finds a package module's file through the `importlib_resources` backport,
    # which it does not install on Python >= 3.9; this file is the answer it looks for.
    return epath.Path(__file__)

  @classmethod
  def _configs(cls, preset: datasets.DatasetPreset) -> list[tfds.core.BuilderConfig]:
    if preset.num_folds:
      return [tfds.core.BuilderConfig(name=f"split{k:02d}", description=f"fold {k}")
              for k in range(1, preset.num_folds + 1)]
    return [tfds.core.BuilderConfig(name="default")]

  @property
  def MANUAL_DOWNLOAD_INSTRUCTIONS(self) -> str:  # noqa: N802  (TFDS's attribute name)
    where = "<manual_dir>/split01/" if self.PRESET.num_folds else "<manual_dir>/"
    return (f"Put the {self.PRESET.display_name} split files ({', '.join(self.PRESET.splits)}"
            f" .csv or .txt, one clip per line: `<frames_dir_or_video> <audio_wav|-> "
            f"<label...>`) in {where}; relative paths resolve against <manual_dir>. "
            f"{self.PRESET.notes}")

  def _info(self) -> tfds.core.DatasetInfo:
    preset = self.PRESET
    text = lambda doc: tfds.features.Tensor(shape=(), dtype=np.object_, doc=doc)
    features = {
        "clip_id": text("unique id within the split (frames folder or video name)"),
        "frames": tfds.features.Sequence(
            tfds.features.Tensor(shape=(), dtype=np.object_), doc="encoded frames, in order"),
        "frame_format": text("jpeg or png"),
        "height": tfds.features.Scalar(dtype=np.int32),
        "width": tfds.features.Scalar(dtype=np.int32),
        "fps": tfds.features.Scalar(dtype=np.float32, doc="0 when unknown (frames folders)"),
        "audio": tfds.features.Tensor(shape=(None,), dtype=np.int16,
                                      doc="16 kHz mono PCM; / 32768 for [-1, 1)"),
        "source_video": text("the frames folder or video file"),
        "source_audio": text("the wav file, empty when taken from the video"),
    }
    if preset.label_type == "class":
      features["label"] = tfds.features.ClassLabel(names=list(preset.class_names))
    elif preset.label_type == "regression":
      features["targets"] = tfds.features.Tensor(
          shape=(preset.num_targets,), dtype=np.float32,
          doc=", ".join(preset.target_names))
    return tfds.core.DatasetInfo(
        builder=self, description=f"{preset.display_name} for HiCMAE. {preset.notes}",
        features=tfds.features.FeaturesDict(features),
        citation=_CITATION, homepage="https://github.com/sunlicai/HiCMAE")

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    manual_dir = os.fspath(dl_manager.manual_dir)
    folder = (os.path.join(manual_dir, self.builder_config.name) if self.PRESET.num_folds
              else manual_dir)
    generators = {}
    for split in self.PRESET.splits:
      if split == "pretrain" and self.PRESET.label_type != "none":
        continue  # unlabeled lines; pre-training reads hicmae_voxceleb2 or prepare's split
      for ext in (".csv", ".txt"):
        path = os.path.join(folder, split + ext)
        if os.path.isfile(path):
          generators[split] = self._generate_examples(path, manual_dir)
          break
    if not generators:
      raise FileNotFoundError(f"no split file ({'/'.join(self.PRESET.splits)}.csv|.txt) in "
                              f"{folder}. {self.MANUAL_DOWNLOAD_INSTRUCTIONS}")
    return generators

  def _generate_examples(self, split_file: str, manual_dir: str):
    preset = self.PRESET
    entries, malformed = parse_split_file(
        split_file, root=manual_dir, label_type=preset.label_type,
        num_classes=preset.num_classes, num_targets=preset.num_targets)
    for bad in malformed:
      print(f"warning: {split_file}:{bad.line_no}: {bad.reason}", file=sys.stderr)
    for entry in entries:
      try:
        clip = clip_loader.load_clip(entry)
      except video_io.ClipError as e:
        print(f"warning: {split_file}:{entry.line_no}: skipped: {e}", file=sys.stderr)
        continue
      example = {
          "clip_id": clip.clip_id, "frames": clip.frames, "frame_format": clip.frame_format,
          "height": clip.height, "width": clip.width, "fps": clip.fps, "audio": clip.audio,
          "source_video": clip.source_video, "source_audio": clip.source_audio,
      }
      if preset.label_type == "class":
        example["label"] = clip.label
      elif preset.label_type == "regression":
        example["targets"] = np.asarray(clip.targets, np.float32)
      yield clip.clip_id, example


def _make_builder(class_name: str, preset_name: str) -> type:
  preset = datasets.PRESETS[preset_name]
  cls = type(class_name, (_HiCMAEBuilder,), {
      "PRESET": preset,
      "BUILDER_CONFIGS": _HiCMAEBuilder._configs(preset),
      "__doc__": f"{preset.display_name} (manual download). {preset.notes}",
      "__module__": __name__,
  })
  return cls


# Registered as hicmae_<preset> (a plain `crema_d` already exists in the TFDS catalog).
HicmaeCremaD = _make_builder("HicmaeCremaD", "crema_d")
HicmaeMafw = _make_builder("HicmaeMafw", "mafw")
HicmaeMafw43 = _make_builder("HicmaeMafw43", "mafw_43")
HicmaeDfew = _make_builder("HicmaeDfew", "dfew")
HicmaeRavdess = _make_builder("HicmaeRavdess", "ravdess")
HicmaeMspImprov = _make_builder("HicmaeMspImprov", "msp_improv")
HicmaeIemocap = _make_builder("HicmaeIemocap", "iemocap")
HicmaeWerewolfXl = _make_builder("HicmaeWerewolfXl", "werewolf_xl")
HicmaeVoxceleb2 = _make_builder("HicmaeVoxceleb2", "voxceleb2")
HicmaeSynthetic = _make_builder("HicmaeSynthetic", "synthetic")

BUILDERS: dict[str, type] = {
    cls.PRESET.name: cls for cls in (
        HicmaeCremaD, HicmaeMafw, HicmaeMafw43, HicmaeDfew, HicmaeRavdess, HicmaeMspImprov,
        HicmaeIemocap, HicmaeWerewolfXl, HicmaeVoxceleb2, HicmaeSynthetic)}


def build(dataset: str, *, manual_dir: str, data_dir: str, config: str | None = None
          ) -> tfds.core.DatasetBuilder:
  """Generates (or reuses) one dataset/config under data_dir; -> the prepared builder."""
  cls = BUILDERS[datasets.get_preset(dataset).name]
  builder = cls(config=config or cls.BUILDER_CONFIGS[0].name, data_dir=data_dir)
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
  return builder


def _define_flags(values: flags.FlagValues) -> None:
  flags.DEFINE_string("dataset", None, ", ".join(BUILDERS), flag_values=values, required=True)
  flags.DEFINE_string("config", None, "fold, e.g. split01 (default: the first)",
                      flag_values=values)
  flags.DEFINE_string("manual_dir", None, "folder holding the split files", flag_values=values,
                      required=True)
  flags.DEFINE_string("data_dir", os.path.expanduser("~/tensorflow_datasets"),
                      "where TFDS writes the dataset", flag_values=values)


def main(argv: Sequence[str] | None = None) -> int:
  """Generate a HiCMAE TFDS dataset from split files: the command line (argv without the
  program name; None: sys.argv[1:]) -> the exit code."""
  return cli.run_own(_define_flags, _main, argv, doc=__doc__)


def _main(values: flags.FlagValues) -> int:
  builder = build(values.dataset, manual_dir=values.manual_dir, data_dir=values.data_dir,
                  config=values.config)
  print(f"{builder.info.full_name}: " + ", ".join(
      f"{name} {split.num_examples}" for name, split in builder.info.splits.items()))
  return 0


if __name__ == "__main__":
  sys.exit(main())
