"""The face step's settings: one frozen dataclass (its defaults are the documented values) and
the absl flags that fill it (defined once, in any FlagValues), shared by every tool that runs
the step."""
from __future__ import annotations

import dataclasses

from absl import flags

from hicmae_jax.faces.select import SELECT_RULES

DETECTORS = ("none", "dlib", "dlib_cnn_reference", "dlib_cnn")
# --face: "auto" looks at a few frames and runs the face step only when they are not face crops
# already (faces/auto.py), with AUTO_DETECTOR and the other face flags.
AUTO, AUTO_DETECTOR = "auto", "dlib_cnn"
# The detector auto's look at sampled frames uses: its rule's thresholds were measured with HOG
# (faces/auto.py), whatever detector then aligns.
INSPECT_DETECTOR = "dlib"
FACE_CHOICES = (AUTO,) + DETECTORS
FACE_HELP = ("auto (default): a video whose sampled frames are face crops already is used as "
             "it is, any other is aligned (frames folders: as they are); none: the frames as "
             "they are (a warning when they are not face crops); dlib (HOG), dlib_cnn (dlib's MMOD "
             "CNN run by JAX, on key frames) or dlib_cnn_reference (the same CNN run by dlib, "
             "~8x dearer, for comparison): "
             "detect, track and align every clip")
LANDMARK_COUNTS = (5, 68)
SMOOTHING_METHODS = ("centred", "ema", "none")


@dataclasses.dataclass(frozen=True)
class FaceOptions:
  """How raw frames become aligned face crops (see hicmae_jax/faces/__init__.py).

  detector: "dlib" (HOG frontal face detector + shape predictor from the
    face-recognition-models package), "dlib_cnn" (dlib's MMOD CNN face detector from the same
    package, its weights run by JAX: mmod_detector.py; on key frames, faces followed between
    them: keyframes.py) or "dlib_cnn_reference" (the same CNN run by dlib itself: same
    detections at ~8x the CPU time, for comparison). landmarks: 5
    (default; dlib's own 5-point model) or 68 (the iBUG 300-W model, whose training data
    forbid commercial use).
  face_size: side of the square crop in pixels. face_scale: size of the face in the crop,
    like OpenFace's similarity scale: at 0.7 the eye centres are 0.4 of the crop apart and the
    eye line sits at 0.27 of its height (eyebrows to chin; see align.TEMPLATE).
  detect_max_side: frames whose longer side exceeds this are shrunk for detection only
    (0: never); landmarks are fitted on the full frame. upsample: times the detector
    doubles the image first (finds faces under ~80 px, 4x slower each). min_score: detections
    scoring below this are ignored.
  max_hold_frames: frames over which the last box is held when the face is missed.
  track_iou: a detection continues the track when its box overlaps the previous one by
    at least this intersection-over-union.
  smoothing: "centred" moving average (smoothing_window frames, odd), "ema" (exponential,
    run forwards then backwards so it does not lag; ema_alpha is the weight of the new
    frame) or "none", over the transform parameters (a, b, tx, ty).
  min_face_fraction: a clip whose face is detected in fewer of its frames is skipped.
  face_select: which face a shot is about: "main" (size, centrality, detector score and
    track length; select.py), "largest" or "center".
  cut_threshold: colour-histogram distance (0-1) between two frames from which a hard cut is
    placed between them (shots.py); tracks never cross a cut. Above 1: no cuts.
  keyframe_interval: frames between two runs of the detector, faces followed between them
    (keyframes.py); 0: the detector's default (dlib: 1, every frame; dlib_cnn,
    dlib_cnn_reference: see step.KEYFRAME_DEFAULTS).
  """
  detector: str = "dlib"
  landmarks: int = 5
  face_size: int = 256
  face_scale: float = 0.7
  detect_max_side: int = 640
  upsample: int = 0
  min_score: float = 0.0
  max_hold_frames: int = 12
  track_iou: float = 0.3
  smoothing: str = "centred"
  smoothing_window: int = 5
  ema_alpha: float = 0.5
  min_face_fraction: float = 0.5
  face_select: str = "main"
  cut_threshold: float = 0.4
  keyframe_interval: int = 0

  def __post_init__(self):
    checks = [
        (self.detector in DETECTORS[1:], f"detector must be one of {DETECTORS[1:]}"),
        (self.landmarks in LANDMARK_COUNTS, f"landmarks must be one of {LANDMARK_COUNTS}"),
        (self.face_size >= 16, "face_size must be >= 16 pixels"),
        (self.face_scale > 0, "face_scale must be > 0"),
        (self.detect_max_side == 0 or self.detect_max_side >= 80,
         "detect_max_side must be 0 (off) or >= 80 (HOG finds faces of ~80 px)"),
        (self.upsample >= 0, "upsample must be >= 0"),
        (self.max_hold_frames >= 0, "max_hold_frames must be >= 0"),
        (0.0 <= self.track_iou <= 1.0, "track_iou must be in [0, 1]"),
        (self.smoothing in SMOOTHING_METHODS, f"smoothing must be one of {SMOOTHING_METHODS}"),
        (self.smoothing_window >= 1 and self.smoothing_window % 2 == 1,
         "smoothing_window must be an odd number >= 1"),
        (0.0 < self.ema_alpha <= 1.0, "ema_alpha must be in (0, 1]"),
        (0.0 <= self.min_face_fraction <= 1.0, "min_face_fraction must be in [0, 1]"),
        (self.face_select in SELECT_RULES, f"face_select must be one of {SELECT_RULES}"),
        (self.cut_threshold > 0, "cut_threshold must be > 0 (above 1: no cuts)"),
        (self.keyframe_interval >= 0, "keyframe_interval must be >= 0 (0: the detector's "
                                      "default)"),
    ]
    for ok, message in checks:
      if not ok:
        raise ValueError(f"face option: {message}")

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)


# --flag -> (FaceOptions field, help); type, default and choices come from the field.
_FLAGS = {
    "--face_landmarks": ("landmarks", "5 (default) or 68 (its training data forbid commercial "
                                      "use)"),
    "--face_size": ("face_size", "side of the square aligned crop, pixels"),
    "--face_scale": ("face_scale", "face size in the crop (0.7: OpenFace's default framing)"),
    "--face_detect_max_side": ("detect_max_side", "shrink frames to this longer side for "
                                                  "detection (0: never)"),
    "--face_upsample": ("upsample", "detector upsampling steps (finds smaller faces, slower)"),
    "--face_min_score": ("min_score", "ignore detections scoring below this"),
    "--max_hold_frames": ("max_hold_frames", "hold the last face box over at most this many "
                                             "missed frames"),
    "--face_smoothing": ("smoothing", "temporal smoothing of the alignment transform"),
    "--face_smoothing_window": ("smoothing_window", "frames in the centred moving average "
                                                    "(odd)"),
    "--face_ema_alpha": ("ema_alpha", "weight of the new frame in the exponential average"),
    "--min_face_fraction": ("min_face_fraction", "skip clips whose face is found in fewer of "
                                                 "their frames"),
    "--face_select": ("face_select", "the face a shot is about: main (size, centrality, "
                                     "detector score, track length), largest or center"),
    "--face_cut_threshold": ("cut_threshold", "colour-histogram distance (0-1) that makes a "
                                              "hard cut; tracks never cross one"),
    "--face_keyframe_interval": ("keyframe_interval", "frames between detector runs, faces "
                                                      "followed between (0: the detector's "
                                                      "default)"),
}
_CHOICES = {"landmarks": LANDMARK_COUNTS, "smoothing": SMOOTHING_METHODS,
            "face_select": SELECT_RULES}


def define_flags(values: flags.FlagValues = flags.FLAGS) -> None:
  """Defines --face and the flags above (names, defaults: FaceOptions', help) in `values`
  (a binary's own FlagValues, or absl's global FLAGS); read them back with from_flags. A
  choice outside the allowed values is refused at parsing."""
  flags.DEFINE_enum("face", AUTO, list(FACE_CHOICES), FACE_HELP, flag_values=values)
  defaults = FaceOptions()
  for flag, (field, text) in _FLAGS.items():
    default, name = getattr(defaults, field), flag[2:]
    help_text = f"{text} (with --face; default {default})"
    if field in _CHOICES and isinstance(default, str):
      flags.DEFINE_enum(name, default, list(_CHOICES[field]), help_text, flag_values=values)
    elif isinstance(default, int):
      flags.DEFINE_integer(name, default, help_text, flag_values=values)
    elif isinstance(default, float):
      flags.DEFINE_float(name, default, help_text, flag_values=values)
    else:
      flags.DEFINE_string(name, default, help_text, flag_values=values)


def from_flags(values: flags.FlagValues = flags.FLAGS) -> FaceOptions | None:
  """FaceOptions from the parsed flags of define_flags (None for --face=none; auto's align
  step for --face=auto); ValueError names a bad value. The mode itself is `values.face`."""
  if values.face == "none":
    return None
  return FaceOptions(detector=AUTO_DETECTOR if values.face == AUTO else values.face, **{
      field: values[flag[2:]].value for flag, (field, _) in _FLAGS.items()})


def for_inspection(face: FaceOptions | None = None) -> FaceOptions:
  """The options of --face=auto's look at sampled frames (and --face=none's check): `face`'s
  (default ones when None) with INSPECT_DETECTOR, whose boxes auto's rule was measured with,
  whichever detector then aligns."""
  return dataclasses.replace(face or FaceOptions(), detector=INSPECT_DETECTOR)
