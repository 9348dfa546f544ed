"""tfds_builders.py: a TFDS builder reads the same split files into the same clips as prepare."""
import numpy as np
import pytest

tfds = pytest.importorskip("tensorflow_datasets")

from hicmae_jax.data.format import split_reader  # noqa: E402
from hicmae_jax.data.prepare import synthetic, tfds_builders  # noqa: E402


def test_synthetic_builder_matches_prepare(tmp_path):
  out = tmp_path / "synth"
  synthetic.generate(str(out), num_train=4, num_val=2, num_test=0, num_classes=2,
                     frame_size=32, num_frames=12, num_workers=1, verbose=False)
  builder = tfds_builders.build("synthetic", manual_dir=str(out / "raw"),
                                data_dir=str(tmp_path / "tfds"))
  assert {k: v.num_examples for k, v in builder.info.splits.items()} == {"train": 4, "val": 2}
  source = tfds.data_source("hicmae_synthetic", split="train", data_dir=str(tmp_path / "tfds"))
  by_id = {ex["clip_id"].decode(): ex for ex in (source[i] for i in range(len(source)))}
  for clip in split_reader.iterate_clips(str(out / "train")):
    ex = by_id[clip.clip_id]
    assert ex["frames"] == clip.frames and ex["label"] == clip.label
    np.testing.assert_array_equal(ex["audio"], clip.audio)
    assert (ex["height"], ex["width"], ex["frame_format"]) == (32, 32, b"jpeg")


def test_builders_are_registered():
  assert set(tfds_builders.BUILDERS) >= {"crema_d", "mafw", "werewolf_xl", "voxceleb2"}
  assert "hicmae_crema_d" in tfds.list_builders(with_community_datasets=False)
  configs = [c.name for c in tfds_builders.HicmaeRavdess.BUILDER_CONFIGS]
  assert configs == [f"split{k:02d}" for k in range(1, 7)]


def test_unlabeled_and_regression_builders(tmp_path):
  out = tmp_path / "synth"
  synthetic.generate(str(out), num_train=2, num_val=0, num_test=0, num_classes=2,
                     frame_size=32, num_frames=8, num_workers=1, as_video=True, verbose=False)
  raw = out / "raw"  # pretrain.txt: one mp4 per line, as a VoxCeleb2 list
  data_dir = str(tmp_path / "tfds")
  builder = tfds_builders.build("voxceleb2", manual_dir=str(raw), data_dir=data_dir)
  assert builder.info.splits["pretrain"].num_examples == 2
  ex = tfds.data_source("hicmae_voxceleb2", split="pretrain", data_dir=data_dir)[0]
  assert "label" not in ex and len(ex["frames"]) == 8 and ex["fps"] == 25.0

  (raw / "split02").mkdir()
  (raw / "split02" / "test.csv").write_text(
      "video/train/train_00000.mp4 - 1.0 0.5 0.25\nvideo/train/train_00001.mp4 - 0 1 0.5\n")
  builder = tfds_builders.build("werewolf_xl", manual_dir=str(raw), data_dir=data_dir,
                                config="split02")
  assert list(builder.info.splits) == ["test"]
  source = tfds.data_source("hicmae_werewolf_xl/split02", split="test", data_dir=data_dir)
  targets = sorted(tuple(source[i]["targets"].tolist()) for i in range(len(source)))
  assert targets == [(0.0, 1.0, 0.5), (1.0, 0.5, 0.25)]
