"""Audio front end of the pipeline: Kaldi log-mel fbank, the original's normalisation, the
waveform augmentations (loading is data/prepare/audio_io.py).

Everything here is numpy (no jax import) so it runs inside data-loader workers.

The fbank reproduces `torchaudio.compliance.kaldi.fbank` exactly as the original HiCMAE
calls it (SPEC section 2): htk_compat=True, use_energy=False, window_type='hanning',
num_mel_bins=128, dither=0, frame_shift=10 ms, snip_edges=True, remove_dc_offset=True,
round_to_power_of_two=True, raw_energy=True, use_log_fbank=True, use_power=True. Reference
arrays and tolerances are in tests/data/fbank_ref.npz (see shared/fixtures/README.md).

Units: waveforms are float samples in [-1, 1] (int16 / 32768) at `sample_rate` Hz; fbank
values are natural logs of mel-weighted power (no unit); frames are 25 ms windows every
10 ms.
"""
from __future__ import annotations

import functools
import math

import numpy as np
import scipy.fft

__all__ = [
    "FBANK_MEAN",
    "FBANK_STD",
    "LOG_FLOOR",
    "mel_banks",
    "kaldi_fbank",
    "waveform_to_fbank_input",
    "magnitude_scale",
    "random_roll",
]

# Dataset-independent normalisation constants of the original (AudioSet statistics); the
# original uses them for every dataset.
FBANK_MEAN = -4.2677393
FBANK_STD = 4.5689974

# torchaudio floors the mel energies at float32 eps in every precision (_get_epsilon builds
# it from torch.finfo(torch.float)), so the float64 path uses 2^-23 too, not float64 eps.
_EPS = 2.0 ** -23
LOG_FLOOR = math.log(_EPS)  # -15.942385...

# ----------------------------------------------------------------------------------------
# Mel filterbank
# ----------------------------------------------------------------------------------------

# torchaudio evaluates mel(f) = 1127 ln(1 + f/700) of the FFT bin frequencies with
# torch.log on float32, which on x86 CPU builds is MKL's vsLn: accurate to < 1 ulp but not
# correctly rounded. For a few bins its result is the other float32 neighbour of the exact
# value, and because the triangles' slopes are differences of nearby mels, one ulp there
# moves a bank entry by up to ~1e-5 -- enough to break the 1e-11 float64 parity the SPEC
# asks for. We compute the correctly rounded log and then apply the per-bin 1-ulp offsets
# that reproduce torch's values, read off the reference bank (const/mel_banks_f32, torch
# 2.9.1). Every offset points towards the exact value (i.e. torch's result is a faithful
# rounding), so this is a property of torch's log on this grid, not a fit. The offsets
# depend only on the FFT grid (bin frequency = k * sample_rate / num_fft), not on the
# number of mel bins or the band edges. Key: (num_fft, sample_rate) -> {fft bin: +-1 ulp}.
_TORCH_LOG_ULP_OFFSETS = {
    (512, 16000): {
        8: 1, 13: 1, 31: -1, 38: -1, 56: 1, 57: -1, 91: 1, 93: 1, 98: 1, 100: -1,
        116: 1, 148: -1, 216: 1, 218: 1, 221: 1, 225: 1, 236: 1, 240: 1, 243: -1,
        245: 1, 252: 1,
    },
}


def _mel_scalar(freq_hz: float) -> float:
  """Mel of a Python float, in float64 like torchaudio's mel_scale_scalar (math.log)."""
  return 1127.0 * math.log(1.0 + freq_hz / 700.0)


@functools.lru_cache(maxsize=32)
def _mel_banks_cached(num_bins: int, num_fft: int, sample_rate: float, low_freq: float,
                      high_freq: float, dtype_str: str) -> np.ndarray:
  f32 = np.float32
  if num_bins <= 3:
    raise ValueError(f"need more than 3 mel bins, got {num_bins}")
  if num_fft % 2:
    raise ValueError(f"num_fft must be even, got {num_fft}")
  nyquist = 0.5 * sample_rate
  if high_freq <= 0.0:  # Kaldi convention: a non-positive high_freq is an offset from Nyquist
    high_freq += nyquist
  if not (0.0 <= low_freq < nyquist and 0.0 < high_freq <= nyquist and low_freq < high_freq):
    raise ValueError(f"bad mel band: low_freq={low_freq}, high_freq={high_freq}, "
                     f"nyquist={nyquist}")
  num_fft_bins = num_fft // 2

  # Band edges: Python-float scalars (float64) combined with float32 tensors, so every
  # operation below rounds to float32 exactly as torch does (scalar cast to float32 first).
  mel_low = _mel_scalar(low_freq)
  mel_high = _mel_scalar(high_freq)
  mel_delta = (mel_high - mel_low) / (num_bins + 1)
  b = np.arange(num_bins, dtype=f32)[:, None]
  left = f32(mel_low) + b * f32(mel_delta)
  center = f32(mel_low) + (b + f32(1.0)) * f32(mel_delta)
  right = f32(mel_low) + (b + f32(2.0)) * f32(mel_delta)

  # Mel of the FFT bin frequencies, float32: 1127 * log(1 + f / 700).
  freqs = f32(sample_rate / num_fft) * np.arange(num_fft_bins, dtype=f32)
  arg = f32(1.0) + freqs / f32(700.0)
  # Correctly rounded float32 log (float64 log then one rounding), then torch's ulp offsets.
  log_arg = np.log(arg.astype(np.float64)).astype(f32)
  for k, ulps in _TORCH_LOG_ULP_OFFSETS.get((num_fft, int(sample_rate)), {}).items():
    if k < num_fft_bins:
      log_arg[k] = np.nextafter(log_arg[k], f32(np.inf) if ulps > 0 else f32(-np.inf))
  mel = (f32(1127.0) * log_arg)[None, :]

  up = (mel - left) / (center - left)
  down = (right - mel) / (right - center)
  bank = np.maximum(f32(0.0), np.minimum(up, down))
  # torchaudio pads a zero column for the Nyquist bin so the bank has num_fft//2 + 1 columns.
  bank = np.pad(bank, ((0, 0), (0, 1)))
  bank = bank.astype(np.dtype(dtype_str))
  bank.setflags(write=False)
  return bank


def mel_banks(num_bins: int = 128, num_fft: int = 512, sample_rate: float = 16000,
              low_freq: float = 20.0, high_freq: float = 8000.0,
              dtype=np.float32) -> np.ndarray:
  """Kaldi/torchaudio triangular mel filterbank, built in float32 like torchaudio.

  Triangles are equally spaced in mel(f) = 1127 ln(1 + f/700) between `low_freq` and
  `high_freq` (Hz; high_freq <= 0 means Nyquist + high_freq). For the default 512-point
  16 kHz grid the float32 result is bit-identical to torchaudio's (fixture
  const/mel_banks_f32); other grids agree to within torch's float32 log rounding (1 ulp of
  a mel, i.e. ~1e-5 on an entry). `dtype` only casts the float32-built bank.

  Returns:
    Read-only cached array [num_bins, num_fft // 2 + 1]; the last (Nyquist) column is 0.
  """
  return _mel_banks_cached(int(num_bins), int(num_fft), float(sample_rate),
                           float(low_freq), float(high_freq), np.dtype(dtype).str)


@functools.lru_cache(maxsize=8)
def _mel_banks_t(num_bins: int, num_fft: int, sample_rate: float, dtype_str: str) -> np.ndarray:
  """Contiguous transposed bank [num_fft//2 + 1, num_bins] for the fbank matmul (a
  transposed view is ~2x slower in BLAS), with torchaudio's fbank band: 20 Hz to Nyquist."""
  bank_t = np.ascontiguousarray(
      mel_banks(num_bins, num_fft, sample_rate, 20.0, 0.0, dtype=np.dtype(dtype_str)).T)
  bank_t.setflags(write=False)
  return bank_t


# ----------------------------------------------------------------------------------------
# Kaldi fbank
# ----------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=8)
def _hann_window(size: int, dtype_str: str) -> np.ndarray:
  """Symmetric Hann window 0.5 - 0.5 cos(2 pi n / (size - 1)), like torch.hann_window(
  size, periodic=False), evaluated in the compute dtype. Read-only [size]."""
  dtype = np.dtype(dtype_str)
  n = np.arange(size, dtype=dtype)
  w = dtype.type(0.5) - dtype.type(0.5) * np.cos(n * dtype.type(2.0 * math.pi / (size - 1)))
  w.setflags(write=False)
  return w


def _as_mono_1d(waveform) -> np.ndarray:
  """Accept [T] or [1, T]; anything else is rejected (downmix first, e.g. load_audio)."""
  w = np.asarray(waveform)
  if w.ndim == 2 and w.shape[0] == 1:
    w = w[0]
  if w.ndim != 1:
    raise ValueError(f"expected a mono waveform [T] or [1, T], got shape {w.shape}")
  if not np.issubdtype(w.dtype, np.floating):
    # An int16 array fed directly would be 32768x too large; make the caller scale it.
    raise TypeError(f"waveform must be floating point in [-1, 1], got {w.dtype} "
                    "(divide int16 samples by 32768)")
  return w


def _compute_dtype(w: np.ndarray, dtype) -> np.dtype:
  if dtype is not None:
    return np.dtype(dtype)
  # float64 stays float64; float32/float16 compute in float32 (torch's default dtype).
  return np.dtype(np.float64) if w.dtype == np.float64 else np.dtype(np.float32)


def kaldi_fbank(waveform, sample_rate: int = 16000, num_mel_bins: int = 128,
                frame_length_ms: float = 25, frame_shift_ms: float = 10,
                preemphasis: float = 0.97, dtype=None) -> np.ndarray:
  """Log-mel filterbank, identical to the original's torchaudio.compliance.kaldi.fbank call.

  Per frame of `frame_length_ms` (400 samples at 16 kHz) every `frame_shift_ms` (160):
  subtract the frame mean, pre-emphasis y[n] = x[n] - 0.97 x[n-1] with x[-1] := x[0],
  symmetric Hann window, zero-pad to the next power of two (512), |rfft|^2, the float32
  mel bank (cast to the compute dtype, as torchaudio does), log(max(e, 2^-23)).

  Args:
    waveform: float samples in [-1, 1], [T] or [1, T].
    sample_rate: Hz.
    dtype: compute/output dtype; default follows the input (float64 in -> float64,
      anything else -> float32).

  Returns:
    [num_frames, num_mel_bins] with num_frames = 1 + (T - 400) // 160 (snip_edges). A
    waveform shorter than one frame gives shape [0, num_mel_bins] (torchaudio would fail on
    its empty frame matrix; an empty result lets callers pad it like any short clip).
  """
  w = _as_mono_1d(waveform)
  dt = _compute_dtype(w, dtype)
  w = w.astype(dt, copy=False)
  # Kaldi/torchaudio: int(sample_rate * ms * 0.001); 400 and 160 at 16 kHz.
  win = int(sample_rate * frame_length_ms * 0.001)
  shift = int(sample_rate * frame_shift_ms * 0.001)
  nfft = 1 << (win - 1).bit_length()  # round_to_power_of_two
  if w.shape[0] < win:
    return np.zeros((0, num_mel_bins), dtype=dt)

  # Strided view [F, win] (no copy); the first arithmetic op materialises it.
  frames = np.lib.stride_tricks.sliding_window_view(w, win)[::shift]
  frames = frames - frames.mean(axis=1, keepdims=True, dtype=dt)  # remove_dc_offset
  if preemphasis != 0.0:
    # x[-1] := x[0] (torch pads with mode='replicate').
    prev = np.concatenate([frames[:, :1], frames[:, :-1]], axis=1)
    frames = frames - dt.type(preemphasis) * prev
  frames = frames * _hann_window(win, dt.str)
  # The FFT always runs in float64 (scipy's pocketfft; n=nfft zero-pads each frame): a
  # float32 pocketfft is noisier than torch's float32 FFT and, on bins just above -10,
  # breaks the 2e-4 parity with the float32 reference, while float64 spectra rounded to
  # float32 stay at ~1.3e-4 (the reference's own float32-vs-float64 gap is 1.6e-4).
  spec = scipy.fft.rfft(frames.astype(np.float64, copy=False), n=nfft, axis=1)
  power = (spec.real * spec.real + spec.imag * spec.imag).astype(dt, copy=False)  # [F, 257]
  mel = power @ _mel_banks_t(num_mel_bins, nfft, float(sample_rate), dt.str)  # [F, bins]
  return np.log(np.maximum(mel, dt.type(_EPS)))


def waveform_to_fbank_input(waveform, target_frames: int = 256, mean: float = FBANK_MEAN,
                            std: float = FBANK_STD, sample_rate: int = 16000,
                            num_mel_bins: int = 128) -> np.ndarray:
  """The original's whole audio path at eval: waveform -> normalised fbank [time, freq].

  Subtract the waveform mean (a no-op after per-frame DC removal, kept for parity), Kaldi
  fbank, keep the first `target_frames` frames or zero-pad at the end (0 in the log
  domain, so padded rows become -mean / (2 std) = 0.46703237 after normalisation), then
  (x - mean) / (2 std). Mel bin 3 never receives an FFT bin and sits at the floor
  (-1.2775939 normalised). Dtype follows the input like `kaldi_fbank`.

  Returns:
    [target_frames, num_mel_bins].
  """
  w = _as_mono_1d(waveform)
  dt = _compute_dtype(w, None)
  w = w.astype(dt, copy=False)
  w = w - w.mean(dtype=dt)
  fb = kaldi_fbank(w, sample_rate=sample_rate, num_mel_bins=num_mel_bins)
  n = fb.shape[0]
  if n < target_frames:
    fb = np.concatenate([fb, np.zeros((target_frames - n, num_mel_bins), dtype=dt)], axis=0)
  else:
    fb = fb[:target_frames]
  # torch casts the Python scalars to the tensor dtype before the op; 2*std in float64 first.
  return (fb - dt.type(mean)) / dt.type(std * 2.0)


# ----------------------------------------------------------------------------------------
# Augmentations (pure; the caller owns the Generator)
# ----------------------------------------------------------------------------------------

def magnitude_scale(waveform: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  """Multiply by Beta(10, 10) + 0.5 (factor in (0.5, 1.5), mean 1), the original's audio
  augmentation. The original also applies it at eval; whether we do is a config switch
  (SPEC section 11), not decided here. Returns a new array of the input's dtype/shape."""
  w = np.asarray(waveform)
  factor = rng.beta(10.0, 10.0) + 0.5
  if np.issubdtype(w.dtype, np.floating):
    factor = w.dtype.type(factor)  # keep float32 float32 (a float64 scalar would not upcast)
  return w * factor


def random_roll(waveform: np.ndarray, rng: np.random.Generator,
                max_fraction: float = 1.0) -> np.ndarray:
  """Circular shift along the last (time) axis by k ~ U{0, ..., floor(max_fraction T) - 1}.

  The original meant to do this (np.roll by randint(len(waveform))) but its waveform is
  [1, T], so len() is 1 and the shift is always 0: its roll never moves. Ours is a real
  roll, off by default and only used behind a config switch (SPEC section 11). With
  max_fraction = 1 any shift in [0, T) is possible, the original's intent.
  """
  w = np.asarray(waveform)
  t = w.shape[-1]
  hi = max(1, int(max_fraction * t))
  shift = int(rng.integers(0, hi))
  return np.roll(w, shift, axis=-1)
