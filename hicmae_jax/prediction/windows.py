"""A read input scored window by window, and its per-video result.

Windows are the feature export's (`representations.features.clip_windows` / `clip_views`):
[s, s + window_seconds) every stride_seconds, the last one ending at the clip's end; each
window's num_frames frames evenly spread over it and the audio of the same span, through the
evaluation stages (PIL bilinear resize, ImageNet normalisation, Kaldi fbank, no augmentation).
With the default window of num_frames x sampling_rate / fps (2.56 s for 16 frames at stride 4
and 25 fps) the evaluation's 2 segments x 2 crops of that span are one and the same view, so
one view per window is the evaluation's view average. Batches, prefetching and progress are
`features.extract`'s.

Per video: the mean of the windows' probabilities; its argmax is the class and its value the
probability (regression: the mean of the windows' outputs).
"""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from hicmae_jax.prediction import inputs
from hicmae_jax.prediction.model import Predictor
from hicmae_jax.representations import features


def default_window_seconds(predictor: Predictor, fps: float = 25.0) -> float:
  """num_frames x sampling_rate / fps: the span the model saw in fine-tuning (2.56 s)."""
  return predictor.model.num_frames * predictor.sampling_rate / fps


def clip_options(predictor: Predictor, window_seconds: float, stride_seconds: float,
                 default_fps: float) -> features.ClipOptions:
  opts = features.ClipOptions.for_model(predictor.model, sampling_rate=predictor.sampling_rate,
                                        window_seconds=window_seconds,
                                        stride_seconds=stride_seconds, default_fps=default_fps)
  opts.validate()
  if window_seconds <= 0:
    raise ValueError(f"--window_seconds={window_seconds} must be > 0")
  return opts


@dataclasses.dataclass
class Prediction:
  """windows: rows (window, start/end frame and second); scores [W, C] float64 (probabilities
  or regression outputs); mean [C]: their mean over the windows."""
  loaded: inputs.Loaded
  task: str
  names: list[str]
  windows: list[dict[str, Any]]
  scores: np.ndarray

  @property
  def mean(self) -> np.ndarray:
    return self.scores.mean(axis=0)

  @property
  def top(self) -> int:
    return int(np.argmax(self.mean))

  def window_scores_at(self, frame: int) -> np.ndarray:
    """The mean scores of the windows that contain this frame (the nearest window's when none
    does): what the annotated video shows at that frame."""
    inside = [i for i, w in enumerate(self.windows)
              if w["start_frame"] <= frame < w["end_frame"]]
    if not inside:
      centres = [(w["start_frame"] + w["end_frame"]) / 2 for w in self.windows]
      inside = [int(np.argmin(np.abs(np.asarray(centres) - frame)))]
    return self.scores[inside].mean(axis=0)


def predict(predictor: Predictor, loaded: inputs.Loaded, opts: features.ClipOptions
            ) -> Prediction:
  """Scores every window of one input (batches of predictor.batch_size)."""
  arrays, rows = features.extract({"model": predictor}, [loaded.clip], opts,
                                  batch_size=predictor.batch_size)
  scores = np.asarray(arrays["model"]["scores"], np.float64)
  windows = [{k: r[k] for k in ("window", "start_frame", "end_frame", "start_seconds",
                                "end_seconds")} for r in rows]
  return Prediction(loaded, predictor.task, predictor.names, windows, scores)
