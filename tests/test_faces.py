"""The face step (hicmae_jax/faces): alignment maths, tracking, and real faces without a
download -- scikit-image's astronaut photograph moved, scaled and rotated over a background --
through the dlib detector; then raw mp4 files -> prepare --face=dlib -> a short fine-tuning."""
import json
import os
import re

import numpy as np
import pytest
from PIL import Image

from hicmae_jax import faces
from hicmae_jax.faces import (
  align,
  detector as detector_lib,
  step as step_lib,
  track as track_lib,
)

skimage_data = pytest.importorskip("skimage.data")
dlib = pytest.importorskip("dlib")

FRAME_H, FRAME_W = 240, 320


# ----------------------------------------------------------------------------- test videos --

def _astronaut() -> np.ndarray:
  return skimage_data.astronaut()  # [512, 512, 3] uint8, one frontal face near (222, 125)


def _background(seed: int) -> np.ndarray:
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[0:FRAME_H, 0:FRAME_W]
  base = np.stack([60 + 80 * xx / FRAME_W, 90 + 60 * yy / FRAME_H, 120 + 0 * xx], -1)
  return np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)


def _photo_params(angle_deg: float, scale: float, cx: float, cy: float) -> np.ndarray:
  """Similarity photo -> frame that puts the photo's face centre (222, 125) at (cx, cy)."""
  th = np.deg2rad(angle_deg)
  a, b = scale * np.cos(th), scale * np.sin(th)
  fx, fy = 222.0, 125.0
  return np.array([a, b, cx - (a * fx - b * fy), cy - (b * fx + a * fy)])


def _render(params: np.ndarray, background: np.ndarray, cover: bool = False) -> np.ndarray:
  """The astronaut photo warped by params over the background; cover hides the face."""
  photo = _astronaut()
  inv = tuple(align.to_matrix(align.invert(params)).reshape(-1))
  warp = lambda img: np.asarray(Image.fromarray(img).transform(
      (FRAME_W, FRAME_H), Image.Transform.AFFINE, inv, resample=Image.Resampling.BILINEAR))
  inside = warp(np.full(photo.shape[:2], 255, np.uint8))[..., None] > 127
  frame = np.where(inside, warp(photo), background)
  if cover:
    cx, cy = align.apply(params, [[222.0, 125.0]])[0]
    half = 70 * np.hypot(params[0], params[1])
    frame[max(0, int(cy - half)):int(cy + half), max(0, int(cx - half)):int(cx + half)] = 128
  return frame


def _moving_clip(num_frames=16, covered=(6, 7, 8), seed=0):
  """frames [T, H, W, 3] and the per-frame photo->frame params: the face turns from -8 to +8
  degrees, grows from 1.0 to 1.25 and drifts 40 px right; `covered` frames hide it."""
  bg = _background(seed)
  u = np.linspace(0, 1, num_frames)
  params = [_photo_params(-8 + 16 * v, 1.0 + 0.25 * v, 140 + 40 * v, 110 + 10 * v) for v in u]
  frames = np.stack([_render(p, bg, cover=t in covered) for t, p in enumerate(params)])
  return frames, np.stack(params)


@pytest.fixture(scope="module")
def photo_landmarks():
  """The 5 alignment points of the astronaut photo itself (dlib, on the unwarped photo)."""
  det = detector_lib.make_detector("dlib")
  photo = _astronaut()
  boxes, scores = det.detect(photo)
  assert len(boxes) == 1 and scores[0] > 0.5
  return detector_lib.alignment_points(det.landmarks(photo, boxes[0]), det.layout)


# ------------------------------------------------------------------------------- the maths --

def test_umeyama_recovers_a_known_similarity():
  rng = np.random.default_rng(0)
  for _ in range(20):
    truth = np.array([*rng.uniform(-3, 3, 2), *rng.uniform(-500, 500, 2)])
    src = rng.uniform(-200, 800, size=(int(rng.integers(2, 70)), 2))
    np.testing.assert_allclose(align.umeyama(src, align.apply(truth, src)), truth,
                               rtol=0, atol=1e-6)
  # Least squares, not interpolation: with noise the fit beats the true transform's residual.
  src = rng.uniform(0, 100, (5, 2))
  dst = align.apply(truth, src) + rng.normal(0, 2, (5, 2))
  fit = align.umeyama(src, dst)
  residual = lambda p: ((align.apply(p, src) - dst) ** 2).sum()
  assert residual(fit) <= residual(truth)
  # A mirrored point set gets the best rotation, never a reflection (a > 0 -> det > 0).
  p = align.umeyama(src, src * [-1, 1])
  assert np.linalg.det(align.to_matrix(p)[:, :2]) > 0
  with pytest.raises(ValueError, match="coincide"):
    align.umeyama(np.ones((3, 2)), rng.normal(size=(3, 2)))


def test_invert_apply_and_warp_conventions():
  p = np.array([1.3, -0.4, 12.0, -7.5])
  pts = np.array([[3.0, 4.0], [100.0, -20.0]])
  np.testing.assert_allclose(align.apply(align.invert(p), align.apply(p, pts)), pts, atol=1e-12)
  frame = np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)
  np.testing.assert_array_equal(align.warp(frame, np.array([1.0, 0, 0, 0]), 32), frame)
  shifted = align.warp(frame, np.array([1.0, 0, -5, -3]), 16)  # crop (x, y) = frame (x+5, y+3)
  np.testing.assert_array_equal(shifted, frame[3:19, 5:21])
  # The template: eyes level and symmetric, nose below their midpoint, centred horizontally.
  t = align.template_points(256, 0.7)
  assert t[0, 1] == t[2, 1] and t[0, 0] + t[2, 0] == pytest.approx(256)
  assert t[0, 0] - t[2, 0] == pytest.approx(1.4 * 0.4 * 256)  # outer corners, 0.7 scale
  assert t[4, 0] == pytest.approx(128) and t[4, 1] > t[0, 1]


def test_smoothing_keeps_constants_and_lines_and_never_blends_tracks():
  line = np.outer(np.arange(10.0), [0.1, -0.2, 3.0, 1.0]) + [1.0, 0.0, 5.0, 5.0]
  seg = np.zeros(10, np.int32)
  for method in ("centred", "ema"):
    out = align.smooth(line, seg, method, window=5, alpha=0.5)
    np.testing.assert_allclose(out[3:7], line[3:7], atol=0.5)  # interior follows the motion
    const = align.smooth(np.tile(line[:1], (10, 1)), seg, method)
    np.testing.assert_allclose(const, np.tile(line[:1], (10, 1)), atol=1e-12)
  centred = align.smooth(line, seg, "centred", window=5)
  np.testing.assert_allclose(centred[2:8], line[2:8], atol=1e-12)  # exact on a line
  jitter = line + np.random.default_rng(0).normal(0, 1, line.shape)
  assert (np.abs(np.diff(align.smooth(jitter, seg, "centred", 5), axis=0)).mean()
          < 0.6 * np.abs(np.diff(jitter, axis=0)).mean())
  two = np.concatenate([np.zeros((5, 4)), np.ones((5, 4))])
  out = align.smooth(two, np.repeat([0, 1], 5), "centred", window=5)
  np.testing.assert_array_equal(out, two)
  np.testing.assert_array_equal(align.smooth(jitter, seg, "none"), jitter)


def test_tracking_prefers_continuity_and_holds_only_between_detections():
  from hicmae_jax.faces import tracks as tracks_lib
  a = np.array([[10, 10, 50, 50.0]])
  b = np.array([[200, 10, 240, 50.0]])
  none = (np.zeros((0, 4)), np.zeros(0))
  dets = [(a, [1.0]),                                # starts on the only face
          (np.concatenate([a + 2, b]), [0.5, 2.0]),  # a stronger face elsewhere: its own track
          none, none,                                # missed twice
          (a + 4, [1.0]),                            # back: frames 2-3 are held
          none, none]                                # gone: nothing held after frame 4
  found = tracks_lib.build(dets, np.zeros(7, np.int32), max_hold_frames=3, track_iou=0.3)
  assert [list(t.frames) for t in found] == [[0, 1, 4], [1]]
  np.testing.assert_array_equal(found[0].box_at(3), a[0] + 2)  # the last box is held
  # A cut ends every track: the same box after it starts a new one.
  found = tracks_lib.build([(a, [1.0])] * 4, np.array([0, 0, 1, 1]), max_hold_frames=3,
                           track_iou=0.3)
  assert [(t.shot, list(t.frames)) for t in found] == [(0, [0, 1]), (1, [2, 3])]
  # The clip's track from the chosen tracks: detected, held between, missing after.
  from hicmae_jax.faces import select
  found = tracks_lib.build(dets, np.zeros(7, np.int32), max_hold_frames=3, track_iou=0.3)
  trk = select.choose(found, np.zeros(7, np.int32), 240, 320, "main").track
  D, H, M = track_lib.DETECTED, track_lib.HELD, track_lib.MISSING
  assert list(trk.status) == [D, D, H, H, D, M, M]
  assert list(trk.segment) == [0, 0, 0, 0, 0, -1, -1] and np.isnan(trk.boxes[5:]).all()


def test_options_reject_bad_values():
  with pytest.raises(ValueError, match="smoothing_window"):
    faces.FaceOptions(smoothing_window=4)
  with pytest.raises(ValueError, match="detector"):
    faces.FaceOptions(detector="openface")
  with pytest.raises(ValueError, match="unknown face detector"):
    detector_lib.make_detector("nope")


# ------------------------------------------------------------------------------ real faces --

def test_moving_face_is_found_held_and_aligned_upright(photo_landmarks):
  frames, truth = _moving_clip()
  opts = faces.FaceOptions(face_size=128)
  result = faces.get_aligner(opts)(frames)
  rep = result.report
  visible = [t for t in range(16) if t not in (6, 7, 8)]
  assert rep.detected_frames == 13 and rep.held_frames == 3 and rep.missing_frames == 0
  assert list(np.flatnonzero(result.track.status == track_lib.DETECTED)) == visible
  assert rep.tracks == 1 and rep.mean_score > 0.3 and not rep.skip_reason
  assert result.crops.shape == (16, 128, 128, 3) and result.crops.dtype == np.uint8

  template = align.template_points(128, 0.7)
  for t in visible:
    # Where the true alignment points (photo landmarks carried into the frame) land in the crop.
    in_frame = align.apply(truth[t], photo_landmarks + 0.5)
    in_crop = align.apply(result.params[t], in_frame)
    right, left = in_crop[:2].mean(0), in_crop[2:4].mean(0)  # eye centres
    tilt = np.degrees(np.arctan2(right[1] - left[1], right[0] - left[0]))
    assert abs(tilt) < 3.0, (t, tilt)  # eyes level
    mid = (right + left) / 2
    np.testing.assert_allclose(mid, template[:4].mean(0), atol=0.04 * 128, err_msg=str(t))
    iod = np.linalg.norm(right - left)
    assert iod == pytest.approx(np.linalg.norm(template[0] - template[2]) * 0.5 * 2 / 1.4,
                                rel=0.1)
  # A fresh detection on a crop finds the face there too, centred and with level eyes (the
  # crop gets a grey margin: HOG windows need some context around a face that fills it).
  det = detector_lib.make_detector("dlib")
  aligner = faces.FaceAligner(faces.FaceOptions(face_size=256), det)
  for t in (0, 15):
    crop = aligner(frames[t:t + 1]).crops[0]
    crop = np.pad(crop, ((32, 32), (32, 32), (0, 0)), constant_values=128)
    boxes, _ = det.detect(crop)
    assert len(boxes) == 1
    five = detector_lib.alignment_points(det.landmarks(crop, boxes[0]), det.layout) - 32
    right, left = five[:2].mean(0), five[2:4].mean(0)
    assert abs(np.degrees(np.arctan2(right[1] - left[1], right[0] - left[0]))) < 3.0
    assert abs((right[0] + left[0]) / 2 + 0.5 - 128) < 0.03 * 256


def test_clip_without_a_face_is_skipped_with_its_reason():
  frames = np.stack([_background(s) for s in range(6)])
  result = faces.get_aligner(faces.FaceOptions(face_size=64))(frames)
  assert result.crops is None and result.report.detected_frames == 0
  assert "face found in 0 of 6 frames" in result.report.skip_reason
  assert result.report.to_dict()["mean_score"] is None
  # min_face_fraction 0 keeps it, but no face, no crop: every frame is padding.
  kept = faces.FaceAligner(faces.FaceOptions(face_size=64, min_face_fraction=0.0))(frames)
  assert kept.crops.shape == (6, 64, 64, 3) and not kept.report.skip_reason
  assert not kept.has_face.any() and (kept.crops == step_lib.PAD_COLOUR).all()


def test_contact_sheet(tmp_path):
  from hicmae_jax.data.prepare import synthetic, video_io
  from hicmae_jax.faces import preview
  frames, _ = _moving_clip(num_frames=6, covered=())
  synthetic.write_mp4(str(tmp_path / "a.mp4"), frames)
  path = preview.write_contact_sheet([str(tmp_path / "a.mp4")],
                                     faces.FaceOptions(face_size=64), str(tmp_path / "s.png"),
                                     video_io.clip_frames, row_height=96)
  sheet = np.asarray(Image.open(path))
  assert sheet.shape[0] == 96 + 16 and sheet.shape[1] == round(96 * FRAME_W / FRAME_H) + 96
  assert (sheet[..., 1] > 200).any() and ((sheet[..., 0] > 200) & (sheet[..., 1] < 60)).any()


# ----------------------------------------------------------------------------- end to end --

def _write_clip(path, frames, seconds, sr=44100, freq=440.0):
  from hicmae_jax.data.prepare import synthetic
  t = np.arange(int(seconds * sr)) / sr
  synthetic.write_mp4(path, frames, (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32),
                      sample_rate=sr)


@pytest.mark.slow
def test_raw_videos_to_face_shards_to_finetuning(tmp_path):
  """Raw mp4 files with their own 44.1 kHz audio -> prepare --face=dlib -> a 2-step
  fine-tuning on the crops and its test evaluation."""
  from configs import test_pretrain
  from hicmae_jax import train
  from hicmae_jax.data.format import schema, split_reader
  from hicmae_jax.data.prepare import command as prepare, shard_writer
  raw = tmp_path / "raw"
  raw.mkdir()
  lines = {"train": [], "test": []}
  for i in range(6):
    frames, _ = _moving_clip(num_frames=16, covered=(5,) if i % 2 else (), seed=i)
    _write_clip(str(raw / f"c{i}.mp4"), frames, 16 / 25, freq=300 + 100 * i)
    lines["train" if i < 4 else "test"].append(f"c{i}.mp4 - {i % 3}")
  no_face = np.stack([_background(9)] * 16)
  _write_clip(str(raw / "empty.mp4"), no_face, 16 / 25)
  frames, _ = _moving_clip(num_frames=16, covered=())
  _write_clip(str(raw / "short_audio.mp4"), frames, 0.2)  # 0.2 s of sound, 0.64 s of video
  lines["train"] += ["empty.mp4 - 0", "short_audio.mp4 - 1"]
  out = tmp_path / "shards"
  for split, rows in lines.items():
    (tmp_path / f"{split}.txt").write_text("\n".join(rows) + "\n")
    rc = prepare.main([f"--split_file={tmp_path / f'{split}.txt'}", f"--output_dir={out}",
                       f"--root={raw}", "--class_names=a,b,c", "--num_workers=1",
                       "--face=dlib", "--face_size=64"]
                      + (["--preview=2"] if split == "train" else []))
    assert rc == 0
  info = schema.DatasetInfo.load(str(out / "train"))
  assert info.num_clips == 4 and info.num_skipped == 2
  assert (info.frame_height, info.frame_width) == (64, 64)
  assert info.extra["skipped_by_kind"] == {"av_mismatch": 1, "no_face": 1}
  summary = info.extra["face"]
  assert summary["clips"] == 5 and summary["skipped_no_face"] == 1  # av_mismatch: no face run
  assert summary["held_frames"] == 2 and summary["options"]["face_size"] == 64
  assert summary["per_clip"]["c1"]["detected_frames"] == 15
  assert summary["per_clip"]["empty"]["skip_reason"].startswith("face found in 0 of 16")
  skipped = (out / "train" / shard_writer.SKIPPED_FILENAME).read_text()
  assert "no face: face found in 0 of 16 frames" in skipped
  assert re.search(r"short_audio.mp4 differ by 0\.4\d s \(> max_av_mismatch_seconds 0.25\)",
                   skipped)
  assert (out / "train" / "face_preview.png").stat().st_size > 0
  clip = next(split_reader.iterate_clips(str(out / "train")))
  assert clip.num_frames == 16 and (clip.height, clip.width) == (64, 64)
  assert abs(clip.num_samples - 16 / 25 * 16000) <= 1024  # resampled from 44.1 kHz; AAC pad
  json.dumps(info.extra)  # JSON-ready

  config = test_pretrain.get_config("finetune")
  config.data.synthetic_dir = ""
  config.data.train_dir = str(out / "train")
  config.data.test_dir = str(out / "test")
  config.num_train_steps = 2
  config.eval_every_epochs = 100
  results = train.run(config, str(tmp_path / "ft"))
  assert results["test"]["num_clips"] == 2
  assert os.path.exists(tmp_path / "ft" / "results.json")
