"""python -m hicmae_jax.predict: a fine-tuned checkpoint (tests/data/finetune_tiny.pth, converted)
on raw videos made by the synthetic generator, without and with the face step; per-window
probabilities, the per-video result, the timeline picture and the annotated video."""
import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from hicmae_jax.data.prepare import synthetic
from hicmae_jax.faces.options import FaceOptions
from hicmae_jax.prediction import runner, timeline
from hicmae_jax.tools import convert_checkpoint as cc
from tests.test_convert import FINETUNE_FLAGS

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAMES = ["anger", "calm", "joy", "fear", "surprise"]  # the tiny fixture has 5 classes


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, data_dir):
  out = str(tmp_path_factory.mktemp("predict") / "finetune_tiny")
  assert cc.main(["--input", str(data_dir / "finetune_tiny.pth"), "--output", out]
                 + FINETUNE_FLAGS) == 0
  return out


def _decode(path):
  """(frame count, stream kinds) of a video file."""
  import av
  with av.open(path) as container:
    kinds = sorted(s.type for s in container.streams)
    frames = sum(1 for _ in container.decode(video=0))
  return frames, kinds


def _check_result(result, num_windows):
  """One row per window, probabilities summing to 1, the per-video class = argmax of the mean
  of the windows' probabilities; the CSV holds the same rows."""
  rows = result["windows"]
  assert len(rows) == num_windows and [r["window"] for r in rows] == list(range(num_windows))
  probs = np.array([[r["scores"][n] for n in result["names"]] for r in rows])
  np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-12)
  mean = probs.mean(axis=0)
  video = result["video"]
  assert video["class"] == result["names"][int(np.argmax(mean))]
  assert video["probability"] == pytest.approx(mean.max(), abs=1e-12)
  assert [video["probabilities"][n] for n in result["names"]] == pytest.approx(mean, abs=1e-12)
  for r, p in zip(rows, probs):
    assert r["top"] == result["names"][int(np.argmax(p))]
  return probs


def test_video_without_face(checkpoint, tmp_path):
  rng = np.random.default_rng(0)
  frames, audio = synthetic.render_clip(1, 4, rng, frame_size=64, num_frames=100)  # 4 s
  video = str(tmp_path / "talk.mp4")
  synthetic.write_mp4(video, frames, audio)
  out = tmp_path / "out"
  summary = runner.predict_files(
      checkpoint=checkpoint, output_dir=str(out), videos=[video], class_names=NAMES,
      stride_seconds=1.0, batch_size=2, timeline=str(tmp_path / "timeline.png"),
      annotate=str(tmp_path / "annotated.mp4"))
  assert summary["window_seconds"] == pytest.approx(2.56)  # 16 frames x stride 4 / 25 fps
  result = json.load(open(out / "talk.json"))
  # Windows start at 0 and 1 s; the last one ends at the clip's end (4 s).
  assert [(w["start_seconds"], w["end_seconds"]) for w in result["windows"]] == [
      (0.0, 2.56), (1.0, 3.56), (1.44, 4.0)]
  probs = _check_result(result, 3)
  assert result["names"] == NAMES and result["names_source"] == "--class_names"
  assert result["face"] is None and result["num_frames"] == 100
  with open(out / "talk.csv", newline="") as f:
    rows = list(csv.DictReader(f))
  np.testing.assert_array_equal([[float(r[n]) for n in NAMES] for r in rows], probs)
  with open(out / "summary.csv", newline="") as f:
    (row,) = list(csv.DictReader(f))
  assert row["class"] == result["video"]["class"] and row["windows"] == "3"
  assert Image.open(tmp_path / "timeline.png").size[0] > 500
  assert _decode(str(tmp_path / "annotated.mp4")) == (100, ["audio", "video"])


def test_frames_folder_with_wav_and_several_videos(checkpoint, tmp_path):
  import soundfile as sf
  rng = np.random.default_rng(1)
  frames, audio = synthetic.render_clip(2, 4, rng, frame_size=64, num_frames=40)
  (tmp_path / "clip").mkdir()
  for i, frame in enumerate(frames):
    Image.fromarray(frame).save(tmp_path / "clip" / f"{i:05d}.jpg", quality=95)
  sf.write(str(tmp_path / "clip.wav"), audio, 16000, subtype="PCM_16")
  summary = runner.predict_files(
      checkpoint=checkpoint, output_dir=str(tmp_path / "a"), frames_dir=str(tmp_path / "clip"),
      wav=str(tmp_path / "clip.wav"), batch_size=4,
      annotate=str(tmp_path / "clip.mp4"))
  result = json.load(open(tmp_path / "a" / "clip.json"))
  _check_result(result, 1)  # 1.6 s: one window, the whole clip
  assert result["names"] == [f"class_{i}" for i in range(5)]
  assert _decode(str(tmp_path / "clip.mp4")) == (40, ["audio", "video"])
  assert summary["results"][0]["files"]["annotated"] == str(tmp_path / "clip.mp4")

  # A folder of videos: one result each, the pictures named after each input.
  (tmp_path / "videos").mkdir()
  for k in range(2):
    synthetic.write_mp4(str(tmp_path / "videos" / f"v{k}.mp4"), frames, audio)
  summary = runner.predict_files(checkpoint=checkpoint, output_dir=str(tmp_path / "b"),
                                 videos=[str(tmp_path / "videos")], batch_size=4,
                                 timeline=str(tmp_path / "t.png"))
  assert [r["name"] for r in summary["results"]] == ["v0", "v1"]
  assert os.path.exists(tmp_path / "t_v0.png") and os.path.exists(tmp_path / "t_v1.png")
  assert json.load(open(tmp_path / "b" / "summary.json"))["inputs"][1]["name"] == "v1"


def test_video_with_face(checkpoint, tmp_path):
  pytest.importorskip("dlib")
  from tests import test_faces
  frames, photo_params = test_faces._moving_clip(num_frames=70, covered=())  # 2.8 s, 320x240
  video = str(tmp_path / "face.mp4")
  test_faces._write_clip(video, frames, 70 / 25)
  out = tmp_path / "out"
  runner.predict_files(checkpoint=checkpoint, output_dir=str(out), videos=[video],
                       face=FaceOptions(face_size=64), batch_size=4,
                       timeline=str(tmp_path / "face.png"),
                       annotate=str(tmp_path / "face_annotated.mp4"))
  result = json.load(open(out / "face.json"))
  _check_result(result, 2)
  assert result["face"]["detected_frames"] == 70 and result["face_options"]["face_size"] == 64
  assert Image.open(tmp_path / "face.png").size[0] > 500
  assert _decode(str(tmp_path / "face_annotated.mp4")) == (70, ["audio", "video"])
  # The aligned crop's outline is drawn in green around the face (the photo's face centre).
  import av
  with av.open(str(tmp_path / "face_annotated.mp4")) as container:
    frame = next(iter(container.decode(video=0))).to_ndarray(format="rgb24").astype(int)
  green = (frame[..., 1] > 170) & (frame[..., 0] < 120) & (frame[..., 2] < 160)
  ys, xs = np.nonzero(green)
  from hicmae_jax.faces import align
  cx, cy = align.apply(photo_params[0], [[222.0, 125.0]])[0]
  assert len(xs) > 100 and xs.min() < cx < xs.max() and ys.min() < cy < ys.max()


def test_thumbnail_frames_spread_over_the_clip():
  assert timeline.thumbnail_frames(100) == [6, 18, 31, 43, 56, 68, 81, 93]
  assert timeline.thumbnail_frames(3) == [0, 1, 2]


@pytest.mark.slow
def test_bad_input_is_one_line(checkpoint, tmp_path):
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=REPO)
  cases = [
      ([f"--checkpoint={checkpoint}", f"--output_dir={tmp_path}/o", "--video=nope.mp4"],
       "error: --video=nope.mp4: no such file or folder"),
      ([f"--checkpoint={checkpoint}", f"--output_dir={tmp_path}/o", f"--video={tmp_path}",
        "--class_names=a,b"], f"error: --video={tmp_path} is a folder without video files"),
  ]
  for args, expected in cases:
    done = subprocess.run([sys.executable, "-m", "hicmae_jax.predict", *args], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=120)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2 and lines[-1].startswith(expected), done.stderr[-2000:]
  rng = np.random.default_rng(2)
  synthetic.write_mp4(str(tmp_path / "v.mp4"), *synthetic.render_clip(0, 4, rng, frame_size=32,
                                                                       num_frames=30))
  with pytest.raises(ValueError, match=r"--class_names gives 2 classes \(a, b\) but the model "
                                       r"has 5"):
    runner.predict_files(checkpoint=checkpoint, output_dir=str(tmp_path / "o"),
                         videos=[str(tmp_path / "v.mp4")], class_names=["a", "b"])


def test_default_auto_records_the_choice_and_restores_quietly(checkpoint, tmp_path, caplog,
                                                              monkeypatch):
  """A scene video (a real photograph, the face ~100 px of 640x360) under --face=auto, as the
  binary passes it: aligned, and the JSON and summary say so and why. Opening the checkpoint
  read-only logs none of Orbax's expected notes, even without the binary's start-up; other
  Orbax warnings still show."""
  pytest.importorskip("dlib")
  import logging

  from hicmae_jax import log_noise
  from tests import test_face_auto
  video = test_face_auto._write(tmp_path / "stage.mp4", test_face_auto._scene_frames())
  absl_logger = logging.getLogger("absl")  # Orbax logs through absl.logging
  monkeypatch.setattr(absl_logger, "filters", [])  # as in a fresh process, before any restore
  with caplog.at_level(logging.INFO):
    summary = runner.predict_files(checkpoint=checkpoint, output_dir=str(tmp_path / "out"),
                                   videos=[video], face=FaceOptions(face_size=64),
                                   face_mode="auto", batch_size=2)
    absl_logger.warning("Checkpoint step 4 is incomplete")
  messages = [r.getMessage() for r in caplog.records]
  noise = [m for m in messages if m.startswith(log_noise.BENIGN_WARNINGS)]
  assert not noise and "Checkpoint step 4 is incomplete" in messages
  result = json.load(open(tmp_path / "out" / "stage.json"))
  choice = result["face_choice"]
  assert choice["mode"] == "auto" and choice["choice"] == "align"
  assert choice["reason"].startswith("the main face is small or off-centre in 5 of 5")
  assert result["face"]["detected_frames"] == test_face_auto.NUM_FRAMES
  row = json.load(open(tmp_path / "out" / "summary.json"))["inputs"][0]
  assert row["face_choice"] == {k: choice[k] for k in ("mode", "choice", "reason")}
  assert summary["results"][0]["name"] == "stage"
  assert any("--face=auto: align (the main face is small" in m for m in messages)


@pytest.mark.slow
def test_windows_without_a_face_get_no_class(checkpoint, tmp_path):
  """A real face for 2 s, then the empty background for 2 s: the windows mostly without the
  face are no_face (no scores, out of the mean, counted), the annotated video has no face
  box there; a video without any face gets no result at all."""
  pytest.importorskip("dlib")
  from tests import test_faces, test_faces_wild
  frames, _ = test_faces_wild.talking("obama", 100, (40, 80, 140), gone=range(50, 100))
  video = str(tmp_path / "half.mp4")
  test_faces._write_clip(video, frames, 100 / 25)
  out = tmp_path / "out"
  summary = runner.predict_files(
      checkpoint=checkpoint, output_dir=str(out), videos=[video],
      face=FaceOptions(face_size=64), batch_size=4, stride_seconds=1.0,
      timeline=str(tmp_path / "half.png"), annotate=str(tmp_path / "half_annotated.mp4"))
  result = json.load(open(out / "half.json"))
  rows = result["windows"]
  # Windows [0, 2.56), [1, 3.56), [1.44, 4): the face is in frames 0-49.
  assert [r["face_fraction"] for r in rows] == pytest.approx([50 / 64, 25 / 64, 14 / 64],
                                                              abs=1e-4)
  assert [r["status"] for r in rows] == ["ok", "no_face", "no_face"]
  assert rows[1]["scores"] is None and rows[2]["top"] is None
  video_result = result["video"]
  assert video_result["windows_used"] == 1 and video_result["windows_no_face"] == 2
  names = result["names"]
  assert [video_result["probabilities"][n] for n in names] == pytest.approx(
      [rows[0]["scores"][n] for n in names], abs=1e-12)
  # The photo leaving changes most colours of the frame: a cut, listed with its seconds.
  assert result["face"]["missing_frames"] == 50 and [s["start_seconds"] for s in
                                                     result["shots"]] == [0.0, 2.0]
  with open(out / "half.csv", newline="") as f:
    csv_rows = list(csv.DictReader(f))
  assert [r["status"] for r in csv_rows] == ["ok", "no_face", "no_face"]
  assert csv_rows[2]["top"] == "" and csv_rows[2][names[0]] == ""
  assert summary["results"][0]["windows_no_face"] == 2
  import av
  with av.open(str(tmp_path / "half_annotated.mp4")) as container:
    decoded = [f.to_ndarray(format="rgb24").astype(int) for f in container.decode(video=0)]
  green = lambda f: ((f[..., 1] > 170) & (f[..., 0] < 120) & (f[..., 2] < 160)).sum()
  assert green(decoded[10]) > 100 and green(decoded[80]) == 0

  empty = str(tmp_path / "empty.mp4")
  test_faces._write_clip(empty, frames[50:], 50 / 25)
  summary = runner.predict_files(checkpoint=checkpoint, output_dir=str(tmp_path / "e"),
                                 videos=[empty], face=FaceOptions(face_size=64), batch_size=4)
  (res,) = summary["results"]
  assert res["status"] == "no_face" and res["class"] is None and res["windows_used"] == 0
  with open(tmp_path / "e" / "summary.csv", newline="") as f:
    (row,) = list(csv.DictReader(f))
  assert row["class"] == "" and row["windows_no_face"] == "1"
