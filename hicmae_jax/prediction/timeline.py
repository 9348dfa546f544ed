"""The timeline picture of one input (PNG): the window probabilities over time (regression: the
outputs), above the log-mel spectrogram of the whole soundtrack, above a strip of the frames
the model reads (the aligned face crops with --face). Windows without a face (no_face) are
shaded grey and have no points; hard cuts are dotted lines.

The spectrogram is the Kaldi fbank the model's audio comes from (data/transforms/fbank.py: 128
mel bins, 10 ms hop, natural log), drawn with matplotlib's imshow on a time axis in seconds and a
mel-bin axis. librosa.display is not used: librosa is not a dependency of this project.
"""
from __future__ import annotations

import numpy as np

from hicmae_jax import io_utils
from hicmae_jax.data.format import schema
from hicmae_jax.data.transforms import fbank as audio_lib
from hicmae_jax.prediction.windows import Prediction

NUM_THUMBNAILS = 8
_HOP_SECONDS = 0.010  # Kaldi fbank frame shift
_WIN_SECONDS = 0.025


def thumbnail_frames(num_frames: int, count: int = NUM_THUMBNAILS) -> list[int]:
  """count frame indices evenly spread over the clip (centres of equal parts)."""
  count = max(1, min(count, num_frames))
  return [int((k + 0.5) * num_frames / count) for k in range(count)]


def _title(pred: Prediction, window: float) -> str:
  name, used = pred.loaded.source.name, int(pred.used.sum())
  skipped = len(pred.windows) - used
  note = f", {skipped} without a face (grey)" if skipped else ""
  if pred.mean is None:
    return f"{name}: no face in any of {len(pred.windows)} windows: no result"
  if pred.task == "classification":
    return (f"{name}: {pred.names[pred.top]} ({pred.mean[pred.top]:.0%} mean over {used} "
            f"windows of {window:.2f} s{note})")
  return f"{name}: " + ", ".join(f"{n} {v:.3f}" for n, v in zip(pred.names, pred.mean)) + note


def _shade_no_face(ax, pred: Prediction) -> None:
  """Grey over the no_face windows (their union, labelled once) and dotted lines at the
  cuts."""
  spans: list[list[float]] = []
  for w, used in zip(pred.windows, pred.used):
    if used:
      continue
    if spans and w["start_seconds"] <= spans[-1][1]:
      spans[-1][1] = max(spans[-1][1], w["end_seconds"])
    else:
      spans.append([w["start_seconds"], w["end_seconds"]])
  for k, (start, end) in enumerate(spans):
    ax.axvspan(start, end, color="0.6", alpha=0.4, lw=0, label="no face" if k == 0 else None)
  face = pred.loaded.face
  for shot in (face.report.get("shots", []) if face is not None else [])[1:]:
    ax.axvline(shot["start_frame"] / pred.loaded.fps, color="0.3", ls=":", lw=1)


def save(pred: Prediction, path: str, *, num_mel_bins: int = 128) -> None:
  """Draws and writes the timeline of one prediction."""
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure

  loaded = pred.loaded
  duration = loaded.duration
  frames = thumbnail_frames(loaded.num_frames)
  fig = Figure(figsize=(11, 7.5), dpi=100)
  FigureCanvasAgg(fig)
  grid = fig.add_gridspec(3, len(frames), height_ratios=[2.2, 1.6, 1.0], hspace=0.35)

  # Probabilities (or outputs) per window, at the window centres.
  ax = fig.add_subplot(grid[0, :])
  centres = np.array([(w["start_seconds"] + w["end_seconds"]) / 2 for w in pred.windows])
  for c, name in enumerate(pred.names):
    ax.plot(centres, pred.scores[:, c], marker="o", markersize=3, label=name,
            color=f"C{c % 10}")
  half = (pred.windows[0]["end_seconds"] - pred.windows[0]["start_seconds"]) / 2
  ax.set_xlim(0, duration)
  _shade_no_face(ax, pred)
  ax.set_ylabel(("probability" if pred.task == "classification" else "output")
                + "\n(at window centres)")
  if pred.task == "classification":
    ax.set_ylim(0, 1)
  ax.set_title(_title(pred, 2 * half), fontsize=10)
  ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
  ax.grid(alpha=0.3)
  ax.tick_params(labelbottom=False)

  # Log-mel spectrogram of the whole soundtrack.
  ax_spec = fig.add_subplot(grid[1, :], sharex=ax)
  wave = schema.audio_to_float(loaded.clip.audio)
  fbank = audio_lib.kaldi_fbank(wave, schema.AUDIO_SAMPLE_RATE, num_mel_bins=num_mel_bins)
  audio_seconds = len(wave) / schema.AUDIO_SAMPLE_RATE
  if len(fbank):
    # Frame i covers [i hop, i hop + window); the audio's span is stretched onto the video's,
    # as the windows take audio by relative position.
    scale = duration / audio_seconds if audio_seconds > 0 else 1.0
    end = ((len(fbank) - 1) * _HOP_SECONDS + _WIN_SECONDS) * scale
    ax_spec.imshow(fbank.T, origin="lower", aspect="auto", cmap="magma",
                   extent=(0.0, end, 0, fbank.shape[1]), interpolation="nearest")
  ax_spec.set_ylabel("mel bin")
  ax_spec.set_xlabel("time (s)")

  # What the model reads, at evenly spread times.
  for k, (t, img) in enumerate(zip(frames, loaded.thumbnails(frames))):
    ax_img = fig.add_subplot(grid[2, k])
    ax_img.imshow(img)
    ax_img.set_axis_off()
    ax_img.set_title(f"{t / loaded.fps:.2f} s", fontsize=8)
  io_utils.atomic_write(path, lambda f: fig.savefig(f, format="png", bbox_inches="tight"))
