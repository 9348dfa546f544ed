"""The face step on footage that is not a studio's: videos built from real photographs
(tests/data/faces, public domain; see FIXTURES.md) with hard cuts, covered frames, faces that
leave, two faces of different or similar sizes, and a squeezed face HOG misses. Checks the
shots, which face is chosen, that tracks stop at cuts, that faceless frames get no crop (and
faceless prediction windows no class: tests/test_predict.py), and the key-frame schedule.

The photos were made with (PIL, Lanczos, JPEG quality 90), from /work/shared/faces:
  obama_portrait.jpg crop (462, 34, 862, 434) x 0.61; biden_portrait.jpg crop
  (244, 128, 944, 828) x 0.354; two_people.jpg crop (180, 20, 1010, 330) x 0.6.
"""
import functools
import pathlib

import numpy as np
import pytest
from PIL import Image

from hicmae_jax import faces
from hicmae_jax.faces import shots as shots_lib, step as step_lib, track as track_lib
from hicmae_jax.tools import benchmark_faces

dlib = pytest.importorskip("dlib")

FACES = pathlib.Path(__file__).parent / "data" / "faces"
# Face centre (x, y) and HOG box side (px) in each stored photo.
PHOTOS = {"obama": ((129, 94), 104), "biden": ((117, 94), 104),
          "two_left": ((83, 71), 104), "two_right": ((417, 83), 104)}
H, W = 240, 320


@functools.lru_cache(maxsize=None)
def _photo(name: str) -> Image.Image:
  return Image.open(FACES / f"{name.split('_')[0] if name.startswith('two') else name}"
                            f"{'_people' if name.startswith('two') else ''}.jpg").convert("RGB")


def background(tint, seed=0, h=H, w=W) -> np.ndarray:
  """A smooth colour gradient with noise; tint (r, g, b) sets the scene's colours."""
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[0:h, 0:w]
  base = np.stack([tint[0] + 60 * xx / w, tint[1] + 40 * yy / h, tint[2] + 0 * xx], -1)
  return np.clip(base + rng.normal(0, 5, base.shape), 0, 255).astype(np.uint8)


def place(frame, name, face_px, x, y, squeeze=1.0) -> np.ndarray:
  """frame with the photo pasted so that its face (side face_px, width x squeeze) is at
  (x, y)."""
  centre, side = PHOTOS[name]
  return benchmark_faces.paste_face(frame, _photo(name), centre, side, face_px, x, y, squeeze)


def cover(frame, x, y, face_px) -> np.ndarray:
  """A grey square over the face at (x, y): a hand, a microphone."""
  out = frame.copy()
  half = int(0.8 * face_px)
  out[max(0, y - half):y + half, max(0, x - half):x + half] = 128
  return out


def talking(name, count, tint, face_px=100, covered=(), gone=(), seed=0, squeeze=1.0):
  """count frames of one face drifting right and down; covered frames hide it, gone frames
  show the background alone. -> frames [T, H, W, 3], face centres [T, 2]."""
  bg = background(tint, seed)
  frames, centres = [], []
  for t in range(count):
    x, y = 140 + 2 * t, 115 + t // 2
    frame = bg if t in gone else place(bg, name, face_px, x, y, squeeze)
    frames.append(cover(frame, x, y, face_px) if t in covered else frame)
    centres.append((x, y))
  return np.stack(frames), np.array(centres, np.float64)


def box_centres(result) -> np.ndarray:
  b = result.track.boxes
  return np.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2], -1)


# ----------------------------------------------------------------------------------- shots --

def test_cut_between_two_people_and_tracks_stop_there():
  first, c1 = talking("obama", 12, (40, 80, 140), covered=(4, 5))
  second, c2 = talking("biden", 12, (150, 70, 40), seed=1)
  frames = np.concatenate([first, second])
  dist = shots_lib.cut_distances(frames)
  assert dist[12] >= 0.4 and np.delete(dist, 12).max() < 0.4, dist.round(2)
  assert dist[4] > dist[3]  # the cover changes the colours, but far less than the cut
  result = faces.FaceAligner(faces.FaceOptions(face_size=64, max_hold_frames=3))(frames)
  rep = result.report
  assert rep.shots == [{"shot": 0, "start_frame": 0, "end_frame": 12},
                       {"shot": 1, "start_frame": 12, "end_frame": 24}]
  assert list(result.shots) == [0] * 12 + [1] * 12
  seg = result.track.segment
  assert set(seg[:12]).isdisjoint(seg[12:])  # no track crosses the cut
  assert rep.detected_frames == 22 and rep.held_frames == 2 and rep.missing_frames == 0
  centres = box_centres(result)
  truth = np.concatenate([c1, c2])
  assert np.abs(centres - truth).max() < 15  # each shot's own face
  assert [s["faces"] for s in rep.selection] == [1, 1]


def test_no_cut_threshold_above_one_and_spans_with_seconds():
  frames, _ = talking("obama", 4, (40, 80, 140))
  frames = np.concatenate([frames, 255 - frames])
  assert list(shots_lib.shot_ids(frames, 1.01)) == [0] * 8
  assert shots_lib.shot_spans(np.array([0, 0, 1]), fps=2.0) == [
      {"shot": 0, "start_frame": 0, "end_frame": 2, "start_seconds": 0.0, "end_seconds": 1.0},
      {"shot": 1, "start_frame": 2, "end_frame": 3, "start_seconds": 1.0, "end_seconds": 1.5}]


# ------------------------------------------------------------------------ no face, no crop --

def test_frames_without_a_face_get_no_crop_and_no_borrowed_box():
  """Visible 0-9, covered 10-19 (longer than the hold), visible 20-25, gone 26-29; a short
  cover (3-4) is bridged by holding."""
  covered = tuple(range(10, 20)) + (3, 4)
  gone = tuple(range(26, 30))
  frames, _ = talking("obama", 30, (40, 80, 140), covered=covered, gone=gone)
  opts = faces.FaceOptions(face_size=48, max_hold_frames=4, min_face_fraction=0.3)
  result = faces.FaceAligner(opts)(frames)
  faceless = np.array(sorted(set(range(10, 20)) | set(gone)))
  assert not result.has_face[faceless].any()
  assert result.has_face[np.setdiff1d(np.arange(30), faceless)].all()
  assert list(result.track.status[[3, 4]]) == [track_lib.HELD] * 2
  assert np.isnan(result.params[faceless]).all() and np.isnan(result.track.boxes[faceless]).all()
  assert (result.crops[faceless] == step_lib.PAD_COLOUR).all()
  assert not (result.crops[0] == step_lib.PAD_COLOUR).all(axis=-1).all()
  rep = result.report
  assert rep.missing_frames == 14 and rep.held_frames == 2 and rep.detected_frames == 14
  # Nothing is held after the face is last seen (frames 26-29), whatever the hold budget.
  long_hold = faces.FaceAligner(faces.FaceOptions(face_size=48, max_hold_frames=12,
                                                  min_face_fraction=0.3))(frames)
  assert not long_hold.has_face[26:].any() and long_hold.has_face[10:20].all()


# ------------------------------------------------------------------------------ right face --

def test_the_large_central_face_wins_over_an_earlier_small_one_at_the_edge():
  """A 72 px face at the edge, seen from frame 0; a 110 px face in the centre, covered in
  frames 0-1 (the old tracker stayed on the first face it saw)."""
  bg = background((60, 90, 120))
  frame = place(place(bg, "obama", 110, 150, 130), "biden", 72, 280, 60)
  frames = [cover(frame, 150, 130, 110) if t < 2 else frame for t in range(10)]
  result = faces.FaceAligner(faces.FaceOptions(face_size=48))(np.stack(frames))
  centres = box_centres(result)
  assert np.abs(centres[2:] - [150, 130]).max() < 15
  assert not result.has_face[:2].any()  # the small face is not the clip's: no crop there
  (shot,) = result.report.selection
  assert shot["faces"] == 2 and shot["chosen"] is not None and not shot["note"]
  chosen = shot["tracks"][shot["chosen"]]
  assert chosen["size"] == 1.0 and chosen["main"] == max(t["main"] for t in shot["tracks"])


def test_face_select_largest_and_center():
  bg = background((60, 90, 120))
  frame = place(place(bg, "obama", 120, 75, 120), "biden", 80, 200, 120)
  frames = np.stack([frame] * 4)
  got = {}
  for rule in ("largest", "center"):
    result = faces.FaceAligner(faces.FaceOptions(face_size=48, face_select=rule))(frames)
    got[rule] = box_centres(result)[0]
  assert abs(got["largest"][0] - 75) < 15 and abs(got["center"][0] - 200) < 15


def test_faces_of_similar_size_keep_the_one_tracked_longest():
  """Two ~80 px faces equally far from the centre; the left one is covered at first."""
  bg = background((70, 100, 90), h=270, w=480)
  frames = []
  for t in range(12):
    frame = place(bg, "two_left", 80, 110, 130)
    frames.append(cover(frame, 110, 130, 80) if t < 5 else frame)
  result = faces.FaceAligner(faces.FaceOptions(face_size=48))(np.stack(frames))
  (shot,) = result.report.selection
  assert shot["faces"] == 2 and "similar size" in shot["note"] and "tracked longest" in \
      shot["note"]
  assert box_centres(result)[0][0] > 240  # the right-hand face, seen in every frame
  assert result.has_face.all()


def test_small_faces_need_upsampling():
  """A 50 px face: HOG at its default (upsample 0) finds it in no frame, so the clip is
  skipped; --face_upsample=1 finds it in every frame."""
  frames, truth = talking("obama", 6, (40, 80, 140), face_px=50)
  plain = faces.FaceAligner(faces.FaceOptions(face_size=48))(frames)
  assert plain.report.detected_frames == 0 and plain.crops is None
  up = faces.FaceAligner(faces.FaceOptions(face_size=48, upsample=1))(frames)
  assert up.report.detected_frames == 6 and up.has_face.all()
  assert np.abs(box_centres(up) - truth).max() < 8


# ------------------------------------------------------------------------------ key frames --

def test_key_frames_follow_between_and_bisect_where_the_face_goes():
  """HOG on key frames every 8 frames (the dlib_cnn schedule, with the fast detector): the
  tracker fills the frames between, the covered frames (12-17) get no face, and the
  detector runs on far fewer frames."""
  covered = tuple(range(12, 18))
  frames, truth = talking("obama", 32, (40, 80, 140), covered=covered)
  every = faces.FaceAligner(faces.FaceOptions(face_size=48, max_hold_frames=2))(frames)
  keyed = faces.FaceAligner(faces.FaceOptions(face_size=48, max_hold_frames=2,
                                              keyframe_interval=8))(frames)
  visible = np.setdiff1d(np.arange(32), covered)
  assert every.has_face[visible].all() and not every.has_face[list(covered)].any()
  rep = keyed.report
  assert keyed.has_face[visible].mean() >= 0.9 and not keyed.has_face[list(covered)].any()
  assert rep.detector_frames <= 16 and rep.tracked_frames >= 10, rep
  assert np.nanmax(np.abs(box_centres(keyed)[visible] - truth[visible])) < 15


def test_key_frames_look_again_soon_after_a_loss():
  """Two covers between key frames 32 apart: after each loss the whole frame is searched a
  quarter interval later, so the face between the covers (frames 12-19) is found."""
  covered = tuple(range(8, 12)) + tuple(range(20, 24))
  frames, _ = talking("obama", 40, (40, 80, 140), covered=covered)
  keyed = faces.FaceAligner(faces.FaceOptions(face_size=48, max_hold_frames=2,
                                              keyframe_interval=32))(frames)
  visible = np.setdiff1d(np.arange(40), covered)
  assert keyed.has_face[visible].all() and not keyed.has_face[list(covered)].any()
  assert keyed.report.detector_frames < 20


@pytest.mark.slow
def test_cnn_finds_the_squeezed_face_that_hog_misses():
  """A face squeezed to 0.6 of its width (a profile-like view): HOG finds it in no frame,
  dlib's CNN on key frames in every one."""
  frames, truth = talking("biden", 16, (40, 80, 140), face_px=100, squeeze=0.6)
  hog = faces.FaceAligner(faces.FaceOptions(face_size=48, min_face_fraction=0.0))(frames)
  cnn = faces.FaceAligner(faces.FaceOptions(detector="dlib_cnn_reference", face_size=48,
                                            keyframe_interval=8))(frames)
  assert hog.report.detection_rate < 0.25
  assert cnn.report.detection_rate >= 0.9 and cnn.report.detector_frames <= 4
  assert np.abs(box_centres(cnn)[cnn.has_face] - truth[cnn.has_face]).max() < 20
  assert step_lib.KEYFRAME_DEFAULTS["dlib_cnn_reference"] > 1


@pytest.mark.slow
def test_benchmark_faces_prints_its_rows(capsys):
  from hicmae_jax.tools import benchmark_faces
  assert benchmark_faces.main(["--shot_frames=4", "--intervals=4",
                               "--skip_cnn_every_frame"]) == 0
  out = capsys.readouterr().out
  assert "hog every frame" in out and "cnn key frames /4" in out and '"host"' in out
  assert "cpu_ms_per_frame" in out and "found" in out
