"""synthetic.py: the generated set decodes, is learnable from both modalities, and is idempotent."""
import io
import os

import numpy as np
import pytest
from PIL import Image

from hicmae_jax.data.format import schema, split_reader
from hicmae_jax.data.prepare import synthetic

NUM_CLASSES = 3


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
  out = tmp_path_factory.mktemp("synth")
  infos = synthetic.generate(str(out), num_train=12, num_val=3, num_test=3,
                             num_classes=NUM_CLASSES, frame_size=32, num_frames=48, seed=0,
                             num_workers=2, verbose=False)
  return out, infos


def _features(clip):
  """-> (audio peak frequency Hz, video rhythm Hz, corr(frame brightness, audio loudness))."""
  wave = schema.audio_to_float(clip.audio)
  audio_hz = np.argmax(np.abs(np.fft.rfft(wave))) * 16000 / wave.shape[0]
  brightness = np.array([np.asarray(Image.open(io.BytesIO(f)).convert("L"), np.float32).mean()
                         for f in clip.frames])  # [T]; the open mouth is darker than skin
  spectrum = np.abs(np.fft.rfft(brightness - brightness.mean(), n=1024))
  video_hz = np.argmax(spectrum) * synthetic.FPS / 1024
  loudness = np.sqrt((wave[:640 * clip.num_frames].reshape(clip.num_frames, 640) ** 2).mean(1))
  return audio_hz, video_hz, np.corrcoef(brightness, loudness)[0, 1]


def test_splits_and_records(tiny):
  out, infos = tiny
  assert {k: v.num_clips for k, v in infos.items()} == {
      "train": 12, "val": 3, "test": 3, "pretrain": 12}
  assert infos["train"].class_names == [f"class_{i}" for i in range(NUM_CLASSES)]
  assert infos["pretrain"].class_names == [] and infos["pretrain"].extra["label_type"] == "none"
  for split in ("train", "val", "test"):
    assert (out / "raw" / f"{split}.txt").exists()
  train = list(split_reader.iterate_clips(str(out / "train")))
  assert sorted(c.label for c in train) == [0] * 4 + [1] * 4 + [2] * 4  # balanced
  for clip in train:
    assert clip.num_frames == 48 and clip.frame_format == "jpeg"
    assert (clip.height, clip.width) == (32, 32) and clip.num_samples == 48 * 640
  assert all(c.label == -1 for c in split_reader.iterate_clips(str(out / "pretrain")))


def test_classes_separate_in_both_modalities(tiny):
  out, infos = tiny
  feats = {k: [] for k in range(NUM_CLASSES)}
  for clip in split_reader.iterate_clips(str(out / "train")):
    feats[clip.label].append(_features(clip))
  feats = {k: np.array(v) for k, v in feats.items()}  # [clips, 3]
  pitch = np.array(infos["train"].extra["pitch_hz"])
  rhythm = np.array(infos["train"].extra["rhythm_hz"])
  for k in range(NUM_CLASSES):
    audio_hz, video_hz, corr = feats[k].T
    # Audio: the tone's pitch (+-3 % jitter) identifies the class.
    np.testing.assert_allclose(audio_hz, pitch[k], rtol=0.05)
    # Video: the mouth rhythm, read off the frame brightness, identifies the class too.
    np.testing.assert_allclose(video_hz, rhythm[k], atol=0.3)
    # The modalities correspond: louder when the mouth is open (darker frame).
    assert np.all(corr < -0.5), corr
  # Class means are ordered and far apart relative to the spread within a class.
  for j in (0, 1):
    means = np.array([feats[k][:, j].mean() for k in range(NUM_CLASSES)])
    spread = max(feats[k][:, j].std() for k in range(NUM_CLASSES))
    assert np.all(np.diff(means) > 4 * spread + 1e-6), (j, means, spread)


def test_generate_is_idempotent(tiny):
  out, infos = tiny
  shards = [out / "train" / s for s in infos["train"].shards]
  before = [p.stat().st_mtime_ns for p in shards]
  again = synthetic.generate(str(out), num_train=12, num_val=3, num_test=3,
                             num_classes=NUM_CLASSES, frame_size=32, num_frames=48, seed=0,
                             verbose=False)
  assert again == infos
  assert [p.stat().st_mtime_ns for p in shards] == before


def test_as_video_goes_through_the_video_path(tmp_path):
  infos = synthetic.generate(str(tmp_path), num_train=2, num_val=0, num_test=0,
                             num_classes=2, frame_size=32, num_frames=24, num_workers=1,
                             as_video=True, verbose=False)
  assert set(infos) == {"train", "pretrain"}
  assert os.path.exists(tmp_path / "raw" / "video" / "train" / "train_00000.mp4")
  assert open(tmp_path / "raw" / "pretrain.txt").read().split("\n")[0].endswith(".mp4")
  for split in ("train", "pretrain"):
    for clip in split_reader.iterate_clips(str(tmp_path / split)):
      assert clip.fps == 25.0 and clip.num_frames == 24 and clip.source_audio == ""
      assert abs(clip.num_samples - 24 * 640) <= 1024
      _, _, corr = _features(clip)
      assert corr < -0.3  # survives H.264 + AAC

  # Other options in the same folder: everything is regenerated, not mixed with the old run.
  infos = synthetic.generate(str(tmp_path), num_train=2, num_val=0, num_test=0,
                             num_classes=2, frame_size=32, num_frames=20, num_workers=1,
                             verbose=False)
  assert not os.path.exists(tmp_path / "raw" / "video")
  for clip in split_reader.iterate_clips(str(tmp_path / "train")):
    assert clip.fps == 0.0 and clip.num_frames == 20 and clip.source_audio.endswith(".wav")
