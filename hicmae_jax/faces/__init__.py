"""Raw video frames -> aligned face crops, offline, from pip packages only (dlib-bin and
face-recognition-models); the stand-in for the OpenFace 2.2 step of the original.

  aligner = faces.FaceAligner(faces.FaceOptions())   # or faces.get_aligner(options)
  result = aligner(frames)            # frames [T, H, W, 3] uint8
  result.crops                        # [T, 256, 256, 3] uint8, None when the clip is skipped
  result.has_face                     # [T] bool: frames without the face are padding
  result.report                       # detection rate, held frames, mean score, skip reason

Modules: options (settings and flags), detector (interface + registry), dlib_detector (dlib's
HOG back end), dlib_cnn (dlib's own MMOD CNN: the dlib_cnn_reference back end), mmod_weights
(that CNN's .dat read without dlib), mmod_jax (the CNN and its detection in JAX), mmod_detector
(the dlib_cnn back end),
shots (hard cuts), keyframes (a slow detector on key frames, faces followed between), tracks
(every face within its shot), select (the face a shot is about), track (the clip's per-frame
track), align (template, Umeyama fit, smoothing, warp), step (the whole step), report,
preview (contact sheet PNG).
"""
from hicmae_jax.faces.options import FaceOptions
from hicmae_jax.faces.step import AlignedClip, FaceAligner, FaceReport, get_aligner

__all__ = ["AlignedClip", "FaceAligner", "FaceOptions", "FaceReport", "get_aligner"]
