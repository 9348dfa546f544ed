"""One clip cut into windows, each window through the evaluation stages, windows in batches.

Windows: by default one view per clip, the validation sampler of fine-tuning and evaluation
(`segment_frame_indices`: the middle num_frames x sampling_rate frames of a long clip). With
`window_seconds` > 0 a clip is cut into windows [s, s + window) every `stride_seconds`, the
last one aligned to the clip's end so no frame is left out; each window gives num_frames frames
evenly spread over it and the audio of the same span. A window of num_frames x sampling_rate /
fps seconds (2.56 s for 16 frames at stride 4 and 25 fps) shows the model the frame rate it was
trained at.

A window is a `stages.View` whose `window` holds its stored frames [start, end); its span is
the audio span, as for every view. The feature export (`representations/features.py`) and
predictions (`prediction/windows.py`) both read clips through `clip_views` and run their
models over the batches of `apply` (any WindowFn: a feature extractor, a predictor).
"""
from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
from typing import Callable, Iterable, Iterator

import numpy as np

from hicmae_jax.data.format import schema
from hicmae_jax.data.pipeline import stages
from hicmae_jax.data.pipeline.options import AudioOptions, VideoOptions
from hicmae_jax.data.transforms import sampling

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class ClipOptions:
  """How clips become model inputs (the sizes must match the model; see `for_model`); the
  stages' own options come from `video_options` and `audio_options`."""
  num_frames: int = 16
  sampling_rate: int = 4
  input_size: int = 160
  audio_frames: int = 256
  num_mel_bins: int = 128
  window_seconds: float = 0.0  # 0: one view per clip (the validation sampler)
  stride_seconds: float = 0.0  # 0: the window length (windows side by side)
  default_fps: float = 25.0    # for clips without a frame rate (frames folders)

  @classmethod
  def for_model(cls, model_cfg, *, sampling_rate: int = 4, **kw) -> "ClipOptions":
    return cls(num_frames=model_cfg.num_frames, sampling_rate=sampling_rate,
               input_size=model_cfg.input_size, audio_frames=model_cfg.audio_frames,
               num_mel_bins=model_cfg.audio_mel_bins, **kw)

  def validate(self) -> None:
    if self.window_seconds < 0 or self.stride_seconds < 0:
      raise ValueError(f"window_seconds={self.window_seconds} and stride_seconds="
                       f"{self.stride_seconds} must be >= 0")
    if self.stride_seconds and not self.window_seconds:
      raise ValueError("stride_seconds needs window_seconds > 0")
    if self.default_fps <= 0:
      raise ValueError(f"fps={self.default_fps} must be > 0")

  def video_options(self) -> VideoOptions:
    return VideoOptions(num_frames=self.num_frames, sampling_rate=self.sampling_rate,
                        input_size=self.input_size)

  def audio_options(self) -> AudioOptions:
    """The evaluation's fbank: no waveform augmentation."""
    return AudioOptions(audio_frames=self.audio_frames, num_mel_bins=self.num_mel_bins,
                        magnitude=False, roll=False)


def clip_windows(num_available: int, fps: float, opts: ClipOptions) -> list[stages.View]:
  """The windows of a clip of `num_available` frames at `fps` (see the module docstring), as
  views: frame_ids [num_frames], window (start, end) and the audio span (start, min(end,
  n - 1))."""
  n = int(num_available)
  if n < 1:
    raise ValueError("a clip without frames has no windows")
  if opts.window_seconds <= 0:
    ids, (f0, _) = sampling.segment_frame_indices(n, num_frames=opts.num_frames,
                                                  sampling_rate=opts.sampling_rate)
    end = min(f0 + opts.num_frames * opts.sampling_rate, n)
    return [stages.View(ids, (f0, min(end, n - 1)), (f0, end))]
  length = max(1, int(round(opts.window_seconds * fps)))
  stride = max(1, int(round((opts.stride_seconds or opts.window_seconds) * fps)))
  starts = list(range(0, max(n - length, 0) + 1, stride))
  if starts[-1] + length < n:
    starts.append(n - length)  # the tail: a last window ending at the clip's end
  windows = []
  for s in starts:
    e = min(s + length, n)
    ids = s + np.round(np.linspace(0, e - s - 1, opts.num_frames)).astype(np.int64)
    windows.append(stages.View(ids, (s, min(e, n - 1)), (s, e)))
  return windows


def clip_views(clip: schema.Clip, opts: ClipOptions) -> Iterator[tuple[dict, np.ndarray,
                                                                       np.ndarray]]:
  """Yields (row, video float32 [T, S, S, 3], audio float32 [A, M]) per window of a clip.

  The evaluation stages (`data/pipeline/stages.py`): frames PIL bilinear to S x S and normalised;
  audio: the window's span by relative position, Kaldi fbank, no augmentation. Frames are
  decoded per window, so a long video never sits decoded in memory."""
  fps = clip.fps if clip.fps > 0 else opts.default_fps
  wave = schema.audio_to_float(clip.audio)
  video_opts, audio_opts = opts.video_options(), opts.audio_options()
  for index, view in enumerate(clip_windows(clip.num_frames, fps, opts)):
    start, end = view.window
    try:
      video = stages.eval_video(stages.view_frames(clip, [view]), view, video_opts)
      audio = stages.audio_input(clip, wave, view, None, audio_opts)
    except Exception as e:  # noqa: BLE001 - name the clip and window, keep the cause
      raise ValueError(f"clip {clip.clip_id!r} window {index} (frames {start}:{end}): "
                       f"{type(e).__name__}: {e}") from e
    row = {"clip_id": clip.clip_id, "label": int(clip.label), "window": index,
           "start_frame": start, "end_frame": end,
           "start_seconds": round(start / fps, 4), "end_seconds": round(end / fps, 4)}
    if len(clip.targets):
      row["targets"] = [float(t) for t in clip.targets]
    yield row, np.asarray(video, np.float32), np.asarray(audio, np.float32)


# ---------------------------------------------------------------------------------- batches --

def batches(views: Iterable[tuple[dict, np.ndarray, np.ndarray]], batch_size: int
            ) -> Iterator[tuple[list[dict], np.ndarray, np.ndarray]]:
  """Groups views into batches of exactly batch_size (the last one padded with copies of its
  last view, so one compiled shape serves all); rows lists only the real ones."""
  rows, videos, audios = [], [], []
  for row, video, audio in views:
    rows.append(row)
    videos.append(video)
    audios.append(audio)
    if len(rows) == batch_size:
      yield rows, np.stack(videos), np.stack(audios)
      rows, videos, audios = [], [], []
  if rows:
    pad = batch_size - len(rows)
    yield rows, np.stack(videos + videos[-1:] * pad), np.stack(audios + audios[-1:] * pad)


def prefetch(iterator: Iterator, size: int = 2) -> Iterator:
  """Runs `iterator` in a background thread, `size` items ahead (decoding and fbank overlap
  the model); its exceptions are re-raised here."""
  q: queue.Queue = queue.Queue(maxsize=size)
  done = object()
  stop = threading.Event()

  def work():
    try:
      for item in iterator:
        while not stop.is_set():
          try:
            q.put(("item", item), timeout=0.1)
            break
          except queue.Full:
            continue
        if stop.is_set():
          return
      q.put(("done", done))
    except BaseException as e:  # noqa: BLE001 - handed to the consumer
      q.put(("error", e))

  thread = threading.Thread(target=work, daemon=True)
  thread.start()
  try:
    while True:
      kind, value = q.get()
      if kind == "done":
        return
      if kind == "error":
        raise value
      yield value
  finally:
    stop.set()


# What `apply` runs on a batch of windows: video [B, T, S, S, 3], audio [B, A, M] (numpy,
# normalised) -> {name: numpy [B, ...]}. The feature export's FeatureExtractor is one, and so is
# prediction's Predictor (class scores or regression outputs).
WindowFn = Callable[[np.ndarray, np.ndarray], dict[str, np.ndarray]]


def apply(fns: dict[str, WindowFn], clips: Iterable[schema.Clip], opts: ClipOptions, *,
          batch_size: int = 32) -> tuple[dict[str, dict[str, np.ndarray]], list[dict]]:
  """Runs every WindowFn over the windows of `clips` (inputs are built once for all, in a
  background thread).

  Returns ({fn name: {array name: [N, ...]}}, rows [N])."""
  opts.validate()
  if batch_size < 1:
    raise ValueError(f"batch_size={batch_size} must be >= 1")
  views = (v for clip in clips for v in clip_views(clip, opts))
  outs: dict[str, dict[str, list]] = {name: {} for name in fns}
  rows: list[dict] = []
  t0 = time.time()
  for batch_rows, video, audio in prefetch(batches(views, batch_size)):
    n = len(batch_rows)
    for name, fn in fns.items():
      for key, value in fn(video, audio).items():
        outs[name].setdefault(key, []).append(value[:n])
    rows.extend(batch_rows)
    if len(rows) % (20 * batch_size) < n:
      log.info("windows: %d done (%.1f windows/s)", len(rows),
               len(rows) / max(time.time() - t0, 1e-9))
  if not rows:
    raise ValueError("no clip to run on (empty split?)")
  arrays = {name: {k: np.concatenate(v) for k, v in d.items()} for name, d in outs.items()}
  return arrays, rows
