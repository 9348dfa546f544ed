"""Which stored frames a clip view uses, and the audio span that goes with them (numpy).

The original's samplers (SPEC 2a): pre-training (VideoMAE), fine-tuning train/validation and
test-mode views, each returning frame indices and the frame span (f0, f1) the audio is cut to;
then the span in samples (by relative position or frame timestamps) and the cut itself.
"""
from __future__ import annotations

import numpy as np


def pretrain_frame_indices(num_available: int, rng: np.random.Generator, *,
                           num_frames: int = 16, sampling_rate: int = 4,
                           ) -> tuple[np.ndarray, tuple[int, int]]:
  """The original's pre-training sampler (VideoMAE `_sample_train_indices` + TSN loader).

  A random start s in [0, n - num_frames*rate] (0 when the video is shorter), then frames
  s, s+rate, ...; the walk stops advancing once `offset + rate < n` fails (offset 1-based), so
  short clips repeat their last reachable frame. As in the original, frame n-1 is only ever
  used as a start frame (the advance test is strict).

  Returns (indices int64 [num_frames], (f0, f1)): f0 = first frame, f1 = min(last frame +
  rate, n - 1), the frame span the audio is cut to.
  """
  n = int(num_available)
  skip_length = num_frames * sampling_rate
  average_duration = n - skip_length + 1
  offset = int(rng.integers(average_duration)) + 1 if average_duration > 0 else 1
  ids = []
  for _ in range(num_frames):
    ids.append(offset - 1)
    if offset + sampling_rate < n:
      offset += sampling_rate
  ids = np.asarray(ids, dtype=np.int64)
  return ids, (int(ids[0]), int(min(ids[-1] + sampling_rate, n - 1)))


def segment_frame_indices(num_available: int, *, num_frames: int = 16, sampling_rate: int = 4,
                          rng: np.random.Generator | None = None,
                          ) -> tuple[np.ndarray, tuple[int, int]]:
  """The original's fine-tuning train/validation sampler (SPEC 2a 'Validation mode').

  n <= num_frames*rate: `linspace(0, n, n // rate)` then copies of n up to num_frames,
  clipped to [0, n-1], truncated to int. n > num_frames*rate: a window of num_frames*rate
  frames ending at e, `linspace(e - span, e, num_frames)` clipped to [s, e-1]. With `rng`, e is
  drawn from [span, n) as the original does (training, and validation when reproducing the
  original); without it e is the middle of that range (our deterministic validation).

  Returns (indices int64 [num_frames], (f0, f1)) with f0 = indices[0] and
  f1 = min(f0 + num_frames*rate, n - 1) (the original's audio span).
  """
  n = int(num_available)
  span = num_frames * sampling_rate
  if n <= span:
    count = n // sampling_rate
    index = np.linspace(0, n, num=count)
    index = np.concatenate([index, np.full(num_frames - count, float(n))])
    index = np.clip(index, 0, n - 1).astype(np.int64)
  else:
    if rng is None:
      end = (span + n - 1) // 2  # middle of the original's randint(span, n) range
    else:
      end = int(rng.integers(span, n))
    start = end - span
    index = np.linspace(start, end, num=num_frames)
    index = np.clip(index, start, end - 1).astype(np.int64)
  f0 = int(index[0])
  return index, (f0, int(min(f0 + span, n - 1)))


def test_frame_indices(num_available: int, *, num_frames: int = 16, sampling_rate: int = 4,
                       num_segments: int = 2,
                       ) -> list[tuple[np.ndarray, tuple[int, int]]]:
  """The original's test-mode temporal views (SPEC 2a 'Test mode'), one entry per segment.

  idx = range(0, n, rate) padded with its last element to num_frames; T = len(idx); segment k
  starts at int(k * max((T - num_frames) / (num_segments - 1), 0)) and takes num_frames
  entries. Audio span: f0 = idx[start], f1 = min(idx[min(start + num_frames - 1, T - 1)] + rate,
  n - 1).
  """
  n = int(num_available)
  idx = list(range(0, n, sampling_rate))
  while len(idx) < num_frames:
    idx.append(idx[-1])
  total = len(idx)
  step = max((total - num_frames) / (num_segments - 1), 0.0) if num_segments > 1 else 0.0
  views = []
  for k in range(num_segments):
    start = int(k * step)
    sel = np.asarray(idx[start:start + num_frames], dtype=np.int64)
    f0 = idx[start]
    f1 = min(idx[min(start + num_frames - 1, total - 1)] + sampling_rate, n - 1)
    views.append((sel, (int(f0), int(f1))))
  return views


def relative_audio_span(f0: int, f1: int, num_video_frames: int, num_samples: int,
                        ) -> tuple[int, int]:
  """Sample span [a0, a1) of the frames f0..f1 by relative position (the original's
  fine-tuning rule): a = int(f / (n - 1) * N), 0 when n == 1. A wav whose length differs from
  the video is therefore stretched, not cut."""
  if num_video_frames <= 1:
    return 0, 0
  denom = num_video_frames - 1.0
  return int(f0 / denom * num_samples), int(f1 / denom * num_samples)


def timestamp_audio_span(f0: int, f1: int, fps: float, sample_rate: int) -> tuple[int, int]:
  """Sample span of frames f0..f1 from frame timestamps (the original's pre-training rule,
  decord's [start of f0, end of f1)): a0 = int(f0/fps*sr), a1 = a0 + int((f1+1-f0)/fps*sr)."""
  a0 = int(f0 / fps * sample_rate)
  return a0, a0 + int(((f1 + 1) / fps - f0 / fps) * sample_rate)


def cut_audio(waveform: np.ndarray, a0: int, a1: int, *, min_samples: int = 1024,
              whole_if_shorter_than: int = 40960) -> np.ndarray:
  """The original's span rule: waveform[a0:a1], or the whole file when the span has
  <= min_samples samples and the file is shorter than `whole_if_shorter_than` (2.56 s at
  16 kHz: the fbank's 256 frames). Otherwise raises ValueError (the original raises too).

  waveform: [N] -> [M]."""
  if a1 - a0 <= min_samples:
    if waveform.shape[0] < whole_if_shorter_than:
      return waveform
    raise ValueError(f"audio span [{a0}, {a1}) has <= {min_samples} samples in a "
                     f"{waveform.shape[0]}-sample file")
  return waveform[a0:a1]
