r"""Face detectors side by side on in-the-wild-like test videos: dlib's HOG on every frame,
dlib's CNN (MMOD) on every frame, and the CNN on key frames with the faces followed between
them (--face=dlib_cnn_reference); the same CNN run by JAX (--face=dlib_cnn) every frame and on
key frames, and the time its first call at a frame size takes (compilation). Prints ms per frame
(the whole face step: detection, tracking, landmarks, alignment, warp), in CPU time of this
process and in wall time (which other jobs on the machine inflate), and how often
the face was found, with the machine and the date.

  taskset -c 0 python -m hicmae_jax.tools.benchmark_faces            # one core, built clips
  python -m hicmae_jax.tools.benchmark_faces --video=a.mp4,b.mp4 --intervals=15,30,60

Without --video it builds a 640x360 clip at 30 fps from the photos in --photos
(tests/data/faces): three shots of --shot_frames frames each -- a ~70 px face moving
hand-held with a microphone over it at times, a face squeezed to 0.6 of its width (a
profile-like view), and a two-person shot of ~75 px faces -- with hard cuts between them.
There the frames that show a face are known: "found" is the share of those with a face
crop, "false" the frames without a face that got a crop anyway. On --video files only the
face step's own detection rate is known.
"""
from __future__ import annotations

import datetime
import json
import os
import sys
import time

import numpy as np
from absl import flags

from hicmae_jax import cli, faces, host_info

_PHOTOS = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "data", "faces")
# Face centre (x, y) and HOG box side in each photo (tests/data/FIXTURES.md).
_FACES = {"obama.jpg": ((129, 94), 104), "biden.jpg": ((117, 94), 104),
          "two_people.jpg": ((250, 77), 104)}


def _place(frame, photo, face_px, x, y, squeeze=1.0):
  centre, side = _FACES[os.path.basename(photo.filename)]
  return paste_face(frame, photo, centre, side, face_px, x, y, squeeze)


def paste_face(frame, photo, centre, side, face_px, x, y, squeeze=1.0) -> np.ndarray:
  """frame [H, W, 3] uint8 with the PIL `photo` pasted, scaled so that its face (centred at
  `centre`, `side` px wide in the photo) is face_px wide (x squeeze) and centred at (x, y)."""
  from PIL import Image
  cx, cy = centre
  k = face_px / side
  img = photo.resize((round(photo.width * k * squeeze), round(photo.height * k)),
                     Image.Resampling.BILINEAR)
  canvas = Image.fromarray(frame)
  canvas.paste(img, (round(x - cx * k * squeeze), round(y - cy * k)))
  return np.asarray(canvas)


def build_clip(photos: str, shot_frames: int) -> tuple[np.ndarray, np.ndarray]:
  """-> frames [3 x shot_frames, 360, 640, 3] uint8 and visible [T] bool (module
  docstring)."""
  from PIL import Image
  load = lambda n: Image.open(os.path.join(photos, n))
  rng = np.random.default_rng(0)
  yy, xx = np.mgrid[0:360, 0:640]
  frames, visible = [], []
  for shot, tint in enumerate([(30, 30, 40), (90, 60, 40), (40, 70, 60)]):
    bg = np.stack([tint[0] + 50 * xx / 640, tint[1] + 40 * yy / 360, tint[2] + 0 * xx], -1)
    bg = np.clip(bg + rng.normal(0, 5, bg.shape), 0, 255).astype(np.uint8)
    for t in range(shot_frames):
      shake = rng.normal(0, 3, 2)
      if shot == 0:  # a ~70 px face, hand-held; the microphone covers it now and then
        x, y = 260 + 3 * t + shake[0], 150 + shake[1]
        frame = _place(bg, load("obama.jpg"), 70, x, y)
        covered = (t // 8) % 3 == 2
        if covered:
          frame = frame.copy()
          frame[int(y - 45):int(y + 60), int(x - 50):int(x + 50)] = (20, 20, 20)
        visible.append(not covered)
      elif shot == 1:  # profile-like: squeezed to 0.6 of its width
        frame = _place(bg, load("biden.jpg"), 110, 320 + 2 * t + shake[0], 170 + shake[1],
                       squeeze=0.6)
        visible.append(True)
      else:  # two people, ~75 px faces
        frame = _place(bg, load("two_people.jpg"), 75, 300 + shake[0], 170 + shake[1])
        visible.append(True)
      frames.append(frame)
  return np.stack(frames), np.array(visible)


def run_one(frames: np.ndarray, visible: np.ndarray | None, options: faces.FaceOptions
            ) -> dict:
  aligner = faces.FaceAligner(options)
  aligner(frames[:2])  # loads the models and warms the caches
  first = None
  if options.detector == "dlib_cnn":  # compiles once per frame and region size: timed apart
    c0 = time.process_time()
    aligner(frames)
    first = round(1000 * (time.process_time() - c0) / len(frames), 1)
  t0, c0 = time.perf_counter(), time.process_time()
  result = aligner(frames)
  seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
  rep = result.report
  row = {"cpu_ms_per_frame": round(1000 * cpu / len(frames), 1),
         "wall_ms_per_frame": round(1000 * seconds / len(frames), 1),
         "detection_rate": round(rep.detection_rate, 3),
         "with_face": round(float(result.has_face.mean()), 3),
         "detector_frames": rep.detector_frames, "tracked_frames": rep.tracked_frames,
         "shots": len(rep.shots)}
  if first is not None:
    row["first_run_cpu_ms_per_frame"] = first
  if visible is not None:
    row["found"] = round(float(result.has_face[visible].mean()), 3)
    row["false"] = int(result.has_face[~visible].sum())
  return row


def first_call_seconds(clips) -> dict:
  """Wall and CPU seconds of --face=dlib_cnn's first detection at each clip's frame size (the
  compilation; later calls at that size reuse it)."""
  from hicmae_jax.faces import mmod_jax
  from hicmae_jax.faces.dlib_detector import package_file
  net = mmod_jax.MmodJax(mmod_jax.load(package_file("mmod_human_face_detector.dat")).net)
  seconds = {}
  for _, frames, _ in clips:
    t0, c0 = time.perf_counter(), time.process_time()
    net.detect(frames[:1])
    first = (time.perf_counter() - t0, time.process_time() - c0)
    t0, c0 = time.perf_counter(), time.process_time()
    net.detect(frames[:1])
    seconds[f"{frames.shape[2]}x{frames.shape[1]}"] = {
        "first_wall_s": round(first[0], 2), "first_cpu_s": round(first[1], 2),
        "next_wall_s": round(time.perf_counter() - t0, 3),
        "next_cpu_s": round(time.process_time() - c0, 3)}
  return seconds


def _define_flags(values: flags.FlagValues) -> None:
  flags.DEFINE_string("video", "", "comma-separated videos (default: built clip)",
                      flag_values=values)
  flags.DEFINE_string("photos", os.path.normpath(_PHOTOS), "folder of face photos the built "
                      "clip is made of", flag_values=values)
  flags.DEFINE_integer("shot_frames", 30, "frames per shot of the built clip",
                       flag_values=values)
  flags.DEFINE_string("intervals", "15,30,60", "key-frame intervals to time",
                      flag_values=values)
  flags.DEFINE_bool("skip_cnn_every_frame", False, "leave out the slowest row (~1-2 s a frame)",
                    flag_values=values)
  flags.DEFINE_string("cnn", "dlib_cnn_reference,dlib_cnn", "CNN back ends to time (--face names)",
                      flag_values=values)


def main(argv=None) -> int:
  """The command line (argv without the program name; None: sys.argv[1:]) -> the exit code."""
  return cli.run_own(_define_flags, _main, argv, doc=__doc__)


def _main(args: flags.FlagValues) -> int:
  from hicmae_jax.data.prepare import video_io
  clips = ([(v, video_io.decode_video(v)[0], None) for v in args.video.split(",") if v]
           or [("built", *build_clip(args.photos, args.shot_frames))])
  setups = [("hog every frame", faces.FaceOptions(detector="dlib", min_face_fraction=0.0))]
  for cnn in (v for v in args.cnn.split(",") if v):
    tag = "cnn" if cnn == "dlib_cnn_reference" else cnn
    if cnn != "dlib_cnn_reference" or not args.skip_cnn_every_frame:
      setups.append((f"{tag} every frame", faces.FaceOptions(
          detector=cnn, keyframe_interval=1, min_face_fraction=0.0)))
    for k in (int(v) for v in args.intervals.split(",") if v):
      setups.append((f"{tag} key frames /{k}", faces.FaceOptions(
          detector=cnn, keyframe_interval=k, min_face_fraction=0.0)))
  out = {"host": host_info.describe(), "date": datetime.date.today().isoformat(),
         "cpu_affinity": len(os.sched_getaffinity(0)), "clips": {}}
  if "dlib_cnn" in args.cnn.split(","):
    out["dlib_cnn_first_call_s"] = first_call_seconds(clips)
    print("dlib_cnn (JAX) first call (compilation) per frame size:", out["dlib_cnn_first_call_s"],
          flush=True)
  for name, frames, visible in clips:
    out["clips"][name] = {"frames": int(len(frames)), "size": list(frames.shape[1:3])}
    for label, opts in setups:
      row = run_one(frames, visible, opts)
      out["clips"][name][label] = row
      print(f"{name} {frames.shape[2]}x{frames.shape[1]} x{len(frames)}  {label:20s} "
            + "  ".join(f"{k} {v}" for k, v in row.items()), flush=True)
  print(json.dumps(out, indent=1))
  return 0


if __name__ == "__main__":
  sys.exit(main())
