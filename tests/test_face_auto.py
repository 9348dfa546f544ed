"""--face=auto and the --face=none warning (hicmae_jax/faces/auto.py) on videos made from a real
photograph (tests/data/face_portrait_640x360.jpg): a face-crop video is used as it is, a scene
with a small face is aligned, none on the scene warns once naming --face=dlib, and the choice
and its reason are recorded by prepare (dataset_info.json), predict's input path and the
feature export's raw clips."""
import json
import re

import numpy as np
import pytest
from PIL import Image

from hicmae_jax.faces import auto

pytest.importorskip("dlib")

FPS = 25
NUM_FRAMES = 20  # 0.8 s
# dlib's HOG box of the photograph's face at 640x360 (x0, y0, x1, y1), measured 2026-12-07.
FACE_BOX = (284, 42, 388, 146)


def _portrait() -> np.ndarray:
  from tests.conftest import DATA_DIR
  return np.asarray(Image.open(DATA_DIR / "face_portrait_640x360.jpg").convert("RGB"))


def _crop_frames() -> np.ndarray:
  """The face fills the frame: a 136 px square around it, scaled to 160, drifting by 1 px a
  frame (a face-crop video as VoxCeleb2 or an OpenFace export gives)."""
  photo = _portrait()
  cx, cy = (FACE_BOX[0] + FACE_BOX[2]) / 2, (FACE_BOX[1] + FACE_BOX[3]) / 2 + 6
  frames = []
  for t in range(NUM_FRAMES):
    x0, y0 = int(cx - 68 + t % 4), int(cy - 68)
    square = Image.fromarray(photo[y0:y0 + 136, x0:x0 + 136])
    frames.append(np.asarray(square.resize((160, 160), Image.Resampling.BILINEAR)))
  return np.stack(frames)


def _scene_frames() -> np.ndarray:
  """The whole 640x360 photograph (a face of ~100 px, above the centre), panning 2 px a frame."""
  photo = _portrait()
  return np.stack([np.roll(photo, 2 * (t % 5), axis=1) for t in range(NUM_FRAMES)])


def _write(path, frames):
  from hicmae_jax.data.prepare import synthetic
  t = np.arange(int(len(frames) / FPS * 16000)) / 16000
  synthetic.write_mp4(str(path), frames, (0.3 * np.sin(2 * np.pi * 330 * t)).astype(np.float32),
                      fps=FPS)
  return str(path)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
  folder = tmp_path_factory.mktemp("face_auto")
  return {"crop": _write(folder / "crop.mp4", _crop_frames()),
          "scene": _write(folder / "scene.mp4", _scene_frames())}


# ---------------------------------------------------------------------------------- the rule --

def test_sampled_frames_are_spread_over_the_clip():
  assert auto.sample_indices(75) == [7, 22, 37, 52, 67]
  assert auto.sample_indices(3) == [0, 1, 2]
  assert auto.sample_indices(0) == []


def test_the_rule_on_boxes():
  """Span: the smaller of the box's width and height fractions; offset: of its centre."""
  crop = auto.look(0, [[10, 14, 150, 154]], 160, 160)       # an aligned crop's box
  assert crop.span == pytest.approx(140 / 160) and crop.offset == pytest.approx(4 / 160)
  assert crop.crop_like
  small = auto.look(1, [[284, 42, 388, 146]], 360, 640)      # the scene's face
  assert small.span == pytest.approx(104 / 640) and not small.crop_like
  aside = auto.look(2, [[0, 0, 90, 90]], 160, 160)           # big but in a corner
  assert aside.span >= auto.MIN_FACE_SPAN and not aside.crop_like
  # The largest box is the main face, however many there are.
  two = auto.look(3, [[0, 0, 20, 20], [10, 10, 150, 150]], 160, 160)
  assert two.faces == 2 and two.crop_like
  # Thresholds: exactly at the span and offset limits still looks like a crop.
  edge = auto.look(4, [[72, 48, 136, 112]], 160, 160)
  assert (edge.span, edge.offset) == (auto.MIN_FACE_SPAN, auto.MAX_CENTRE_OFFSET)
  assert edge.crop_like
  none = auto.look(5, np.zeros((0, 4)), 160, 160)
  assert none.faces == 0 and not none.crop_like

  # More than half of the sampled frames must look like crops.
  assert auto.decide([crop, crop, crop, small, none]).choice == auto.AS_IS
  two_of_five = auto.decide([crop, crop, small, small, none])
  assert two_of_five.choice == auto.ALIGN
  assert "small or off-centre in 3 of 5" in two_of_five.reason
  assert "spans at most 0.88" in two_of_five.reason
  assert auto.decide([none] * 5).reason == "no face found in the 5 sampled frames"
  assert auto.decide([]).choice == auto.ALIGN
  record = auto.decide([crop, crop, small]).to_dict()
  assert record["choice"] == auto.AS_IS and record["rule"] == auto.RULE
  assert [s["crop_like"] for s in record["sampled"]] == [True, True, False]


def test_real_frames_decide_as_expected():
  from hicmae_jax import faces
  detect = faces.get_aligner(faces.FaceOptions()).detect
  crop = auto.inspect(_crop_frames(), detect)
  assert crop.choice == auto.AS_IS, crop
  assert all(k.span > 0.6 for k in crop.looks)
  scene = auto.inspect(_scene_frames(), detect)
  assert scene.choice == auto.ALIGN, scene
  assert all(k.faces == 1 and 0.1 < k.span < 0.25 for k in scene.looks)
  assert "small or off-centre in 5 of 5" in scene.reason
  warning = auto.none_warning(scene, "scene.mp4")
  assert warning.startswith("--face=none on scene.mp4:") and "--face=dlib" in warning
  assert auto.none_warning(crop, "crop.mp4") is None


# ------------------------------------------------------------------------------------ prepare --

def _prepare(tmp_path, lines, *flags):
  from hicmae_jax.data.format import schema
  from hicmae_jax.data.prepare import command as prepare
  (tmp_path / "split.txt").write_text("\n".join(lines) + "\n")
  out = tmp_path / "out"
  rc = prepare.main([f"--split_file={tmp_path / 'split.txt'}", f"--output_dir={out}",
                     "--split=test", "--class_names=a,b", "--num_workers=1",
                     "--face_size=64", *flags])
  assert rc == 0
  return schema.DatasetInfo.load(str(out / "test")), out / "test"


def test_prepare_default_auto_keeps_crops_and_aligns_the_scene(tmp_path, videos, capsys):
  from hicmae_jax.data.format import split_reader
  from hicmae_jax.data.prepare import video_io
  info, split_dir = _prepare(tmp_path, [f"{videos['crop']} - 0", f"{videos['scene']} - 1"])
  choice = info.extra["face_choice"]
  assert choice["mode"] == "auto" and choice["rule"] == auto.RULE
  assert (choice["clips_as_is"], choice["clips_aligned"]) == (1, 1)
  assert choice["per_clip"]["crop"]["choice"] == "as_is"
  assert "fills the frame like an aligned crop in 5 of 5" in choice["per_clip"]["crop"]["reason"]
  assert choice["per_clip"]["scene"]["choice"] == "align"
  assert "small or off-centre" in choice["per_clip"]["scene"]["reason"]
  # The face step's summary covers the aligned clip only.
  assert info.extra["face"]["clips"] == 1 and "scene" in info.extra["face"]["per_clip"]
  assert info.extra["frame_sizes"] == {"160x160": 1, "64x64": 1}
  clips = {c.clip_id: c for c in split_reader.iterate_clips(str(split_dir))}
  # The crop video is stored exactly as --face=none stores it; the scene as 64 px face crops.
  assert clips["crop"].frames == video_io.read_video(videos["crop"])[0]
  assert (clips["scene"].height, clips["scene"].width) == (64, 64)
  err = capsys.readouterr().err
  assert "--face=auto: 1 clip(s) used as they are, 1 aligned" in err
  assert "warning" not in err.lower()


def test_prepare_none_on_the_scene_warns_once(tmp_path, videos, capsys):
  info, _ = _prepare(tmp_path, [f"{videos['scene']} - 1", f"{videos['crop']} - 0"],
                     "--face=none")
  lines = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
  assert len(lines) == 1, lines
  assert lines[0].startswith(f"warning: --face=none on {tmp_path / 'split.txt'}: 1 of the "
                             f"first 2 clips are not face crops (scene: the main face is small")
  assert "--face=dlib" in lines[0]
  choice = info.extra["face_choice"]
  assert choice["mode"] == "none" and choice["warning"] in lines[0]
  assert choice["checked"]["crop"]["choice"] == "as_is"
  assert info.extra["frame_sizes"] == {"160x160": 1, "360x640": 1}  # both kept as they are
  # Crops only: nothing to say.
  (tmp_path / "crops_only").mkdir()
  _prepare(tmp_path / "crops_only", [f"{videos['crop']} - 0"], "--face=none")
  assert "warning" not in capsys.readouterr().err.lower()


def test_prepare_frames_folders_keep_todays_bytes_and_fingerprints(tmp_path, videos):
  """A frames folder under the default auto is read as before (no detector, the same shard
  fingerprint as --face=none, so an existing split is not redone)."""
  import soundfile as sf

  from hicmae_jax.data.prepare import shard_writer
  folder = tmp_path / "clip01"
  folder.mkdir()
  for i, frame in enumerate(_crop_frames()[:8]):
    Image.fromarray(frame).save(folder / f"{i:05d}.jpg", quality=95)
  sf.write(str(tmp_path / "clip01.wav"), np.zeros(8 * 640, np.float32), 16000)
  line = f"{folder} {tmp_path / 'clip01.wav'} 0"
  info, split_dir = _prepare(tmp_path, [line])
  assert info.extra["face_choice"]["reason"].startswith("a frames folder")
  assert "face" not in info.extra
  progress = json.loads(next((split_dir / shard_writer.PROGRESS_DIRNAME).glob("*")).read_text())
  (tmp_path / "none").mkdir()
  info_none, split_none = _prepare(tmp_path / "none", [line], "--face=none")
  progress_none = json.loads(
      next((split_none / shard_writer.PROGRESS_DIRNAME).glob("*")).read_text())
  assert progress["fingerprint"] == progress_none["fingerprint"]
  assert info.shard_sha256 == info_none.shard_sha256


def test_prepare_auto_with_crop_skips_scenes_with_the_reason(tmp_path, videos):
  info, split_dir = _prepare(tmp_path, [f"{videos['crop']} - 0", f"{videos['scene']} - 1"],
                             "--crop=0,128,16,144")
  assert info.num_clips == 1 and info.extra["skipped_by_kind"] == {"not_face_crop": 1}
  skipped = (split_dir / "skipped.txt").read_text()
  assert re.search(r"not face crops \(the main face is small.*--crop / --frame_size apply to "
                   r"face crops only", skipped)


# ------------------------------------------------------------------- predict and export inputs --

def test_predict_inputs_record_the_choice(videos, caplog):
  from hicmae_jax.faces.options import FaceOptions
  from hicmae_jax.prediction import inputs
  sources = {s.name: s for s in inputs.expand([videos["crop"], videos["scene"]])}
  options = FaceOptions(face_size=64)
  crop = inputs.load(sources["crop"], options, 25.0, "auto")
  assert crop.face is None and (crop.clip.height, crop.clip.width) == (160, 160)
  assert crop.face_choice["mode"] == "auto" and crop.face_choice["choice"] == "as_is"
  scene = inputs.load(sources["scene"], options, 25.0, "auto")
  assert scene.face is not None and scene.face.report["detected_frames"] == NUM_FRAMES
  assert (scene.clip.height, scene.clip.width) == (64, 64)
  assert scene.face_choice["choice"] == "align" and len(scene.face_choice["sampled"]) == 5
  with caplog.at_level("WARNING"):
    kept = inputs.load(sources["scene"], None, 25.0, "none")
  assert kept.face is None and (kept.clip.height, kept.clip.width) == (360, 640)
  assert kept.face_choice["mode"] == "none" and kept.face_choice["choice"] == "align"
  warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
  assert len(warnings) == 1 and warnings[0].startswith("--face=none on ")
  assert "--face=dlib" in warnings[0]


def test_feature_export_raw_clip_records_the_choice(videos):
  from hicmae_jax.data.prepare import clip_loader
  from hicmae_jax.faces.options import FaceOptions
  clip, choice = clip_loader.raw_clip_with_face(video=videos["scene"],
                                                face=FaceOptions(face_size=64), face_mode="auto")
  assert (clip.height, clip.width) == (64, 64)
  assert choice["mode"] == "auto" and choice["choice"] == "align"
  assert choice["face"]["detected_frames"] == NUM_FRAMES
  clip, choice = clip_loader.raw_clip_with_face(video=videos["crop"],
                                                face=FaceOptions(face_size=64), face_mode="auto")
  assert (clip.height, clip.width) == (160, 160) and choice["choice"] == "as_is"
  assert choice["face"] is None
  assert clip_loader.raw_clip_with_face(video=videos["crop"])[1] is None  # library default


def test_auto_looks_with_hog_and_aligns_with_the_cnn(monkeypatch, videos):
  """auto's rule was measured with HOG boxes, so its look at frames uses HOG; the face step it
  then runs is dlib's CNN (run by JAX) on key frames, which finds faces HOG misses."""
  from absl import flags

  from hicmae_jax import faces
  from hicmae_jax.data.prepare import clip_loader
  from hicmae_jax.faces import options
  values = flags.FlagValues()
  options.define_flags(values)
  values(["prog"])
  assert values.face == options.AUTO
  assert options.from_flags(values).detector == options.AUTO_DETECTOR == "dlib_cnn"
  used = []
  real = faces.get_aligner
  monkeypatch.setattr(faces, "get_aligner",
                      lambda face: used.append(face.detector) or real(face))
  aligning, *_ = clip_loader._auto_choice(videos["scene"], True, options.from_flags(values),
                                         False)
  assert aligning.detector == "dlib_cnn"
  assert used[0] == options.INSPECT_DETECTOR == "dlib"  # the look
  assert options.for_inspection().detector == "dlib"     # --face=none's check
