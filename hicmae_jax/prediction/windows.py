"""A read input scored window by window, and its per-video result.

Windows are the feature export's (`data/pipeline/windows.clip_windows` / `clip_views`):
[s, s + window_seconds) every stride_seconds, the last one ending at the clip's end; each
window's num_frames frames evenly spread over it and the audio of the same span, through the
evaluation stages (PIL bilinear resize, ImageNet normalisation, Kaldi fbank, no augmentation).
With the default window of num_frames x sampling_rate / fps (2.56 s for 16 frames at stride 4
and 25 fps) the evaluation's 2 segments x 2 crops of that span are one and the same view, so
one view per window is the evaluation's view average. Batches, prefetching and progress are
`data/pipeline/windows.apply`'s.

No face, no class: with the face step, a window whose frames have the face in fewer than
min_face_fraction of them (--min_window_face_fraction, 0.5) is `no_face`: it gets no scores
and is left out of the video's result. Without the face step every window is used.

Per video: the mean of the used windows' probabilities; its argmax is the class and its value
the probability (regression: the mean of their outputs); None when no window has a face.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from hicmae_jax.data.pipeline import windows as windows_lib
from hicmae_jax.prediction import inputs
from hicmae_jax.prediction.model import Predictor


def default_window_seconds(predictor: Predictor, fps: float = 25.0) -> float:
  """num_frames x sampling_rate / fps: the span the model saw in fine-tuning (2.56 s)."""
  return predictor.model.num_frames * predictor.sampling_rate / fps


def clip_options(predictor: Predictor, window_seconds: float, stride_seconds: float,
                 default_fps: float) -> windows_lib.ClipOptions:
  opts = windows_lib.ClipOptions.for_model(
      predictor.model, sampling_rate=predictor.sampling_rate, window_seconds=window_seconds,
      stride_seconds=stride_seconds, default_fps=default_fps)
  opts.validate()
  if window_seconds <= 0:
    raise ValueError(f"--window_seconds={window_seconds} must be > 0")
  return opts


@dataclasses.dataclass
class Prediction:
  """windows: rows (window, start/end frame and second, face_fraction, status "ok" or
  "no_face"); scores [W, C] float64 (probabilities or regression outputs; NaN rows for
  no_face windows); mean [C]: their mean over the used windows (None when none is used)."""
  loaded: inputs.Loaded
  task: str
  names: list[str]
  windows: list[dict[str, Any]]
  scores: np.ndarray

  @property
  def used(self) -> np.ndarray:
    """[W] bool: the windows that count (status "ok")."""
    return np.array([w.get("status", "ok") == "ok" for w in self.windows], bool)

  @property
  def mean(self) -> np.ndarray | None:
    used = self.used
    return self.scores[used].mean(axis=0) if used.any() else None

  @property
  def top(self) -> int | None:
    mean = self.mean
    return None if mean is None else int(np.argmax(mean))

  def window_scores_at(self, frame: int) -> np.ndarray | None:
    """The mean scores of the used windows that contain this frame (the nearest window's when
    none contains it); None when those are no_face: what the annotated video shows."""
    inside = [i for i, w in enumerate(self.windows)
              if w["start_frame"] <= frame < w["end_frame"]]
    if not inside:
      centres = [(w["start_frame"] + w["end_frame"]) / 2 for w in self.windows]
      inside = [int(np.argmin(np.abs(np.asarray(centres) - frame)))]
    inside = [i for i in inside if self.used[i]]
    return self.scores[inside].mean(axis=0) if inside else None


def face_fractions(loaded: inputs.Loaded, windows: list[dict[str, Any]]) -> np.ndarray:
  """[W]: the share of each window's frames [start_frame, end_frame) that have the face (1
  without the face step)."""
  if loaded.face is None:
    return np.ones(len(windows))
  has = np.asarray(loaded.face.has_face, np.float64)
  return np.array([has[w["start_frame"]:max(w["end_frame"], w["start_frame"] + 1)].mean()
                   for w in windows])


def predict(predictor: Predictor, loaded: inputs.Loaded, opts: windows_lib.ClipOptions,
            min_face_fraction: float = 0.5) -> Prediction:
  """Scores every window of one input (batches of predictor.batch_size); windows with the
  face in fewer than min_face_fraction of their frames are no_face (module docstring)."""
  if not 0.0 <= min_face_fraction <= 1.0:
    raise ValueError(f"--min_window_face_fraction={min_face_fraction} must be in [0, 1]")
  arrays, rows = windows_lib.apply({"model": predictor}, [loaded.clip], opts,
                                   batch_size=predictor.batch_size)
  scores = np.asarray(arrays["model"]["scores"], np.float64)
  windows = [{k: r[k] for k in ("window", "start_frame", "end_frame", "start_seconds",
                                "end_seconds")} for r in rows]
  for w, fraction in zip(windows, face_fractions(loaded, windows)):
    w["face_fraction"] = round(float(fraction), 4)
    w["status"] = "ok" if fraction >= min_face_fraction else "no_face"
  scores[[w["status"] != "ok" for w in windows]] = np.nan  # no face, no class
  return Prediction(loaded, predictor.task, predictor.names, windows, scores)
