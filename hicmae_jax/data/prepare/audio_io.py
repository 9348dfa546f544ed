"""Audio loading for prepare: an audio file or a video's audio track -> float32 mono [N] in
[-1, 1] at the target rate (libsoxr's resampler, as librosa's default), and float -> int16 as
shards store it. Numpy, soundfile and PyAV (no jax import): it runs in prepare's workers. The
fbank the pipeline computes from it is data/transforms/fbank.py.
"""
from __future__ import annotations

import math
import os

import numpy as np
import soundfile as sf

_INT16_SCALE = 32768.0


class AudioError(ValueError):
  """An audio source that cannot be used (missing, unreadable, empty, no audio stream)."""


def _resample(x: np.ndarray, sr: int, target_sr: int) -> np.ndarray:
  """float32 [N] at sr -> float32 [ceil(N * target_sr / sr)] at target_sr.

  What librosa.resample(x, orig_sr=sr, target_sr=target_sr, res_type="soxr_hq") computes
  (librosa's default): libsoxr's high-quality resampler, then the result cut or zero-padded
  to ceil(N * target_sr / sr) samples. Called through the `soxr` package directly, which is
  all librosa does here, so librosa (numba, scikit-learn) is not needed.
  """
  if sr == target_sr or x.shape[0] == 0:
    return x.astype(np.float32, copy=False)
  import soxr  # local: only inputs at another rate need it
  y = soxr.resample(x.astype(np.float32, copy=False), sr, target_sr, quality="HQ")
  n = math.ceil(x.shape[0] * target_sr / sr)
  if y.shape[0] < n:
    y = np.pad(y, (0, n - y.shape[0]))
  return np.ascontiguousarray(y[:n], dtype=np.float32)


def load_audio(path, target_sr: int = 16000) -> np.ndarray:
  """Read an audio file with soundfile: float32 mono [N] in [-1, 1] at `target_sr` Hz.

  16-bit PCM is read as int16 and divided by 32768 (what the original's loader gives);
  other encodings use libsndfile's float conversion. Channels are averaged. A different
  rate is resampled like librosa's soxr_hq (see _resample). N = ceil(frames * target_sr / sr).

  Raises:
    AudioError: the file is missing, unreadable or holds no samples.
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise AudioError(f"audio file not found: {path}")
  try:
    info = sf.info(path)
    if info.subtype.startswith("PCM_16"):
      data, sr = sf.read(path, dtype="int16", always_2d=True)
      data = data.astype(np.float32) / np.float32(_INT16_SCALE)
    else:
      data, sr = sf.read(path, dtype="float32", always_2d=True)
  except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
    raise AudioError(f"cannot read audio file {path}: {e}") from e
  if data.shape[0] == 0:
    raise AudioError(f"audio file has no samples: {path}")
  mono = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
  return np.ascontiguousarray(_resample(mono, int(sr), target_sr))


def load_audio_from_video(path, target_sr: int = 16000) -> np.ndarray:
  """Decode the first audio stream of a video (mp4, avi, ...) with PyAV.

  Frames are converted to planar float at the stream's own rate and layout, channels are
  averaged (same downmix as load_audio) and the result is resampled like load_audio's.

  Returns:
    float32 mono [N] in [-1, 1] at `target_sr` Hz.

  Raises:
    AudioError: the file is missing/unreadable, has no audio stream, or decodes to nothing.
  """
  import av  # local: only loaders that read video need PyAV

  path = os.fspath(path)
  if not os.path.isfile(path):
    raise AudioError(f"video file not found: {path}")
  try:
    container = av.open(path)
  except (av.FFmpegError, OSError, ValueError) as e:
    raise AudioError(f"cannot open video file {path}: {e}") from e
  with container:
    if not container.streams.audio:
      raise AudioError(f"video file has no audio stream: {path}")
    stream = container.streams.audio[0]
    # Only the sample format changes; rate and layout stay the stream's own.
    resampler = av.AudioResampler(format="fltp")
    chunks = []
    sr = None
    try:
      for frame in container.decode(stream):
        for out in resampler.resample(frame):
          chunks.append(out.to_ndarray())  # [channels, samples] float32
          sr = out.sample_rate
      for out in resampler.resample(None):  # flush
        chunks.append(out.to_ndarray())
        sr = out.sample_rate
    except av.FFmpegError as e:
      raise AudioError(f"cannot decode audio of {path}: {e}") from e
  if not chunks or sum(c.shape[1] for c in chunks) == 0:
    raise AudioError(f"audio stream decodes to no samples: {path}")
  data = np.concatenate(chunks, axis=1)
  mono = data.mean(axis=0, dtype=np.float32) if data.shape[0] > 1 else data[0]
  return np.ascontiguousarray(_resample(mono, int(sr), target_sr))


def to_int16(waveform) -> np.ndarray:
  """Float samples in [-1, 1] -> int16: round(x * 32768) (half to even), clipped to
  [-32768, 32767]. Inverse of the /32768 in load_audio for in-range values."""
  x = np.asarray(waveform, dtype=np.float64) * _INT16_SCALE
  return np.clip(np.rint(x), -32768, 32767).astype(np.int16)
