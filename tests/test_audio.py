"""Audio front end: Kaldi fbank parity with torchaudio (fixtures), the original's pipeline,
augmentations and loaders. CPU only, numpy; a few hundred ms in total."""
import numpy as np
import pytest
import soundfile as sf

from hicmae_jax.data.prepare import audio_io
from hicmae_jax.data.transforms import fbank as audio
from tests.tolerances import Tol, excess

WAVES = ("sine440_1s", "noise_3s", "chirp_0p5s")
# Tolerances from tests/data/FIXTURES.md, scaled with the value (tests/tolerances.py): float32
# bins near the log floor differ by up to 6e-3 even between the original's own fp32 and fp64
# runs; above it ours differ by <= 1.3e-4 (1.4e-5 relative) on log-mels up to 10.
F32_HI, F32_LO, F64_ATOL = Tol(atol=1e-4, rtol=2e-5), Tol(atol=5e-3, rtol=5e-4), 1e-8
PAD_VALUE = 0.46703237  # -FBANK_MEAN / (2 FBANK_STD): a padded (0) log-mel row, normalised
FLOOR_VALUE = -1.2775939  # (log(2^-23) - FBANK_MEAN) / (2 FBANK_STD)


@pytest.fixture(scope="module")
def ref(data_dir):
  with np.load(data_dir / "fbank_ref.npz") as z:
    return {k: z[k] for k in z.files}


def _assert_close_split(out, expected, threshold, name):
  """float32 parity: tight above `threshold` (log-mel -10 in the output's units), loose
  near the floor."""
  assert out.shape == expected.shape, name
  hi = expected > threshold
  assert excess(out[hi], expected[hi], F32_HI) <= 0, (name, excess(out[hi], expected[hi], F32_HI))
  assert excess(out[~hi], expected[~hi], F32_LO) <= 0, (name, excess(out[~hi], expected[~hi],
                                                                   F32_LO))


def test_mel_banks_match_torchaudio(ref):
  bank = audio.mel_banks()
  expected = ref["const/mel_banks_f32"]
  assert bank.shape == (128, 257) and bank.dtype == np.float32
  np.testing.assert_array_equal(bank, expected)
  assert not bank.flags.writeable
  assert audio.mel_banks() is bank  # cached
  # Mel bin 3 gets no FFT bin at 128 mels / 512 points (SPEC 2a).
  assert bank[3].max() == 0.0
  assert audio.mel_banks(dtype=np.float64).dtype == np.float64


@pytest.mark.parametrize("name", WAVES)
def test_fbank_float32_parity(ref, name):
  wave = ref[f"wave/{name}"]
  out = audio.kaldi_fbank(wave)
  assert out.dtype == np.float32
  assert out.shape == (1 + (wave.shape[1] - 400) // 160, 128)
  _assert_close_split(out, ref[f"fbank/{name}"], -10.0, name)


@pytest.mark.parametrize("name", WAVES)
def test_fbank_float64_parity(ref, name):
  wave = ref[f"wave/{name}__f64"]
  assert wave.dtype == np.float64
  out = audio.kaldi_fbank(wave)
  assert out.dtype == np.float64
  np.testing.assert_allclose(out, ref[f"fbank/{name}__f64"], rtol=0, atol=F64_ATOL)


@pytest.mark.parametrize("name", WAVES)
def test_pipeline_parity(ref, name):
  threshold = (-10.0 - audio.FBANK_MEAN) / (2 * audio.FBANK_STD)
  out32 = audio.waveform_to_fbank_input(ref[f"wave/{name}"])
  assert out32.dtype == np.float32 and out32.shape == (256, 128)
  _assert_close_split(out32, ref[f"pipeline/{name}"], threshold, name)

  out64 = audio.waveform_to_fbank_input(ref[f"wave/{name}__f64"])
  assert out64.dtype == np.float64
  np.testing.assert_allclose(out64, ref[f"pipeline/{name}__f64"], rtol=0, atol=F64_ATOL)


def test_pipeline_padding_and_floor(ref):
  wave = ref["wave/chirp_0p5s"]  # 0.5 s -> 48 frames, 208 padded rows
  out = audio.waveform_to_fbank_input(wave)
  np.testing.assert_allclose(out[48:], PAD_VALUE, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(out[:48, 3], FLOOR_VALUE, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose((audio.LOG_FLOOR - audio.FBANK_MEAN) / (2 * audio.FBANK_STD),
                             FLOOR_VALUE, rtol=1e-6, atol=1e-6)


def test_pipeline_cuts_long_clip():
  wave = np.random.default_rng(0).standard_normal(16000 * 4).astype(np.float32) * 0.1
  full = audio.kaldi_fbank(wave)
  assert full.shape[0] == 398
  out = audio.waveform_to_fbank_input(wave, target_frames=256)
  expected = (full[:256] - np.float32(audio.FBANK_MEAN)) / np.float32(2 * audio.FBANK_STD)
  # The waveform-mean subtraction only perturbs float32 rounding.
  np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-4)


def test_short_waveform_gives_zero_frames():
  for n in (0, 1, 399):
    w = np.zeros(n, np.float32) + 0.1
    assert audio.kaldi_fbank(w).shape == (0, 128)
  assert audio.kaldi_fbank(np.zeros(400, np.float32)).shape == (1, 128)
  out = audio.waveform_to_fbank_input(np.full(300, 0.1, np.float32))
  assert out.shape == (256, 128)
  np.testing.assert_allclose(out, PAD_VALUE, rtol=1e-6, atol=1e-6)


def test_dtype_and_shape_handling():
  w = np.random.default_rng(1).standard_normal(1600).astype(np.float32) * 0.1
  assert audio.kaldi_fbank(w).dtype == np.float32
  assert audio.kaldi_fbank(w[None]).shape == (8, 128)
  assert audio.kaldi_fbank(w.astype(np.float16)).dtype == np.float32
  assert audio.kaldi_fbank(w.astype(np.float64)).dtype == np.float64
  assert audio.kaldi_fbank(w, dtype=np.float64).dtype == np.float64
  assert audio.waveform_to_fbank_input(w.astype(np.float64)).dtype == np.float64
  with pytest.raises(ValueError):
    audio.kaldi_fbank(np.stack([w, w]))
  with pytest.raises(TypeError):
    audio.kaldi_fbank((w * 32767).astype(np.int16))


def test_magnitude_scale():
  w = np.ones(1000, np.float32)
  factors = [audio.magnitude_scale(w, np.random.default_rng(s))[0] for s in range(200)]
  assert all(0.5 <= f <= 1.5 for f in factors)
  assert abs(np.mean(factors) - 1.0) < 0.05  # Beta(10, 10) + 0.5 has mean 1
  a = audio.magnitude_scale(w, np.random.default_rng(7))
  b = audio.magnitude_scale(w, np.random.default_rng(7))
  np.testing.assert_array_equal(a, b)
  assert a.dtype == np.float32 and np.all(a == a[0])
  assert w[0] == 1.0  # input untouched


def test_random_roll_is_a_true_roll():
  w = np.arange(1000, dtype=np.float32)
  shifts = set()
  for s in range(20):
    out = audio.random_roll(w, np.random.default_rng(s))
    k = 0 if out[0] == 0 else 1000 - int(out[0])  # np.roll(w, k)[0] == w[-k]
    np.testing.assert_array_equal(out, np.roll(w, k))
    shifts.add(k)
  assert len(shifts) > 1 and shifts != {0}
  np.testing.assert_array_equal(
      audio.random_roll(w, np.random.default_rng(3)),
      audio.random_roll(w, np.random.default_rng(3)))
  for s in range(20):
    small = audio.random_roll(w, np.random.default_rng(s), max_fraction=0.01)
    assert small[0] == 0 or 1000 - int(small[0]) < 10  # shift in [0, 10)
  # Works along time for [1, T] too (the original's shape, where its roll never moved).
  out2 = audio.random_roll(w[None], np.random.default_rng(5))
  assert out2.shape == (1, 1000) and sorted(out2[0]) == list(w)


def test_to_int16():
  x = np.array([0.0, 0.5, -0.5, 1.0, -1.0, 2.0, -2.0, 1 / 32768, 0.49 / 32768], np.float32)
  out = audio_io.to_int16(x)
  assert out.dtype == np.int16
  np.testing.assert_array_equal(out, [0, 16384, -16384, 32767, -32768, 32767, -32768, 1, 0])


def test_load_audio_resamples_stereo_441(tmp_path):
  sr, dur, f0 = 44100, 0.5, 440.0
  t = np.arange(int(sr * dur)) / sr
  left = 0.5 * np.sin(2 * np.pi * f0 * t)
  stereo = np.stack([left, left], axis=1)  # identical channels: the average is the tone
  ints = np.round(stereo * 32767).astype(np.int16)
  path = tmp_path / "tone.wav"
  sf.write(path, ints, sr, subtype="PCM_16")

  out = audio_io.load_audio(path)
  assert out.dtype == np.float32 and out.ndim == 1
  assert len(out) == 8000  # ceil(22050 * 160 / 441)
  expected = 0.5 * np.sin(2 * np.pi * f0 * np.arange(8000) / 16000) * 32767 / 32768
  inner = slice(200, -200)  # the FIR's edge transients
  assert np.abs(out[inner] - expected[inner]).max() < 5e-3

  # At the native rate nothing is resampled and int16 maps to x / 32768 exactly.
  mono = tmp_path / "mono16k.wav"
  sf.write(mono, ints[:1600, 0], 16000, subtype="PCM_16")
  np.testing.assert_array_equal(audio_io.load_audio(mono),
                                ints[:1600, 0].astype(np.float32) / 32768)


def test_load_audio_errors(tmp_path):
  missing = tmp_path / "nope.wav"
  with pytest.raises(audio_io.AudioError, match="nope.wav"):
    audio_io.load_audio(missing)
  garbage = tmp_path / "garbage.wav"
  garbage.write_bytes(b"not a wav file at all")
  with pytest.raises(audio_io.AudioError, match="garbage.wav"):
    audio_io.load_audio(garbage)
  empty = tmp_path / "empty.wav"
  sf.write(empty, np.zeros(0, np.int16), 16000, subtype="PCM_16")
  with pytest.raises(audio_io.AudioError, match="empty.wav"):
    audio_io.load_audio(empty)
  assert issubclass(audio_io.AudioError, ValueError)


def _write_mp4(path, with_audio, audio_sr=44100, seconds=0.5, f0=440.0):
  av = pytest.importorskip("av")
  with av.open(str(path), "w") as out:
    video = out.add_stream("mpeg4", rate=25)
    video.width, video.height, video.pix_fmt = 64, 64, "yuv420p"
    if with_audio:
      astream = out.add_stream("aac", rate=audio_sr, layout="stereo")
    for i in range(int(25 * seconds)):
      img = np.full((64, 64, 3), (i * 10) % 255, np.uint8)
      frame = av.VideoFrame.from_ndarray(img, format="rgb24")
      for packet in video.encode(frame):
        out.mux(packet)
    for packet in video.encode():
      out.mux(packet)
    if with_audio:
      n = int(audio_sr * seconds)
      tone = (0.5 * np.sin(2 * np.pi * f0 * np.arange(n) / audio_sr)).astype(np.float32)
      planar = np.stack([tone, tone])  # fltp: [channels, samples]
      chunk = 1024
      for start in range(0, n, chunk):
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(planar[:, start:start + chunk]), format="fltp",
            layout="stereo")
        frame.sample_rate = audio_sr
        frame.pts = start
        for packet in astream.encode(frame):
          out.mux(packet)
      for packet in astream.encode():
        out.mux(packet)


def test_load_audio_from_video(tmp_path):
  path = tmp_path / "clip.mp4"
  _write_mp4(path, with_audio=True)
  out = audio_io.load_audio_from_video(path)
  assert out.dtype == np.float32 and out.ndim == 1
  # 0.5 s at 16 kHz; AAC pads to whole 1024-sample frames, so allow a couple of frames.
  assert abs(len(out) - 8000) <= 1200, len(out)
  mid = out[2000:6000]
  rms = np.sqrt(np.mean(mid.astype(np.float64) ** 2))
  assert 0.3 < rms < 0.4, rms  # 0.5 / sqrt(2) for the tone
  spectrum = np.abs(np.fft.rfft(mid))
  assert abs(np.argmax(spectrum) * 16000 / len(mid) - 440.0) < 8.0


def test_load_audio_from_video_errors(tmp_path):
  silent = tmp_path / "silent.mp4"
  _write_mp4(silent, with_audio=False)
  with pytest.raises(audio_io.AudioError, match="silent.mp4"):
    audio_io.load_audio_from_video(silent)
  with pytest.raises(audio_io.AudioError, match="missing.mp4"):
    audio_io.load_audio_from_video(tmp_path / "missing.mp4")
