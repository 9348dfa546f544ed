"""data/transforms/sampling.py: frame indices of every sampler against the worked examples of
SPEC 2a (written out by hand), and the audio span of a view."""
import numpy as np
import pytest

from hicmae_jax.data.transforms import sampling


class _FixedStart:
  """Stands in for a Generator: integers(hi) -> hi - 1 (the latest allowed start)."""

  def integers(self, hi):
    return hi - 1


def test_test_mode_indices_n20():
  views = sampling.test_frame_indices(20, num_frames=16, sampling_rate=4, num_segments=2)
  expected = [0, 4, 8, 12, 16] + [16] * 11
  assert len(views) == 2
  for ids, span in views:  # T = 16: both segments start at 0
    assert ids.tolist() == expected
    assert span == (0, 19)  # f1 = min(16 + 4, 19)


def test_test_mode_indices_n100():
  (ids0, span0), (ids1, span1) = sampling.test_frame_indices(100, num_frames=16,
                                                             sampling_rate=4, num_segments=2)
  assert ids0.tolist() == [0, 4, 8, 12, 16, 20, 24, 28, 32, 36, 40, 44, 48, 52, 56, 60]
  assert span0 == (0, 64)
  # idx has 25 entries, segment 1 starts at int(1 * (25 - 16)) = 9 -> idx[9:25]
  assert ids1.tolist() == [36, 40, 44, 48, 52, 56, 60, 64, 68, 72, 76, 80, 84, 88, 92, 96]
  assert span1 == (36, 99)  # min(96 + 4, 99)


def test_val_mode_indices_n20():
  ids, span = sampling.segment_frame_indices(20, num_frames=16, sampling_rate=4)
  # linspace(0, 20, 5) = 0, 5, 10, 15, 20, then 11 copies of 20, clipped to 19
  assert ids.tolist() == [0, 5, 10, 15, 19] + [19] * 11
  assert span == (0, 19)


def test_val_mode_indices_n100_centred_and_random():
  ids, span = sampling.segment_frame_indices(100, num_frames=16, sampling_rate=4)
  # centred end e = (64 + 99) // 2 = 81, s = 17: linspace(17, 81, 16) clipped to [17, 80]
  assert ids.tolist() == [17, 21, 25, 29, 34, 38, 42, 46, 51, 55, 59, 63, 68, 72, 76, 80]
  assert span == (17, 81)
  ids, (f0, f1) = sampling.segment_frame_indices(100, num_frames=16, sampling_rate=4,
                                                 rng=np.random.default_rng(3))
  end = f0 + 64  # the original: e in [64, n), s = e - 64
  assert 64 <= end < 100 and f1 == min(f0 + 64, 99)
  expected = np.clip(np.linspace(f0, end, 16), f0, end - 1).astype(np.int64)
  np.testing.assert_array_equal(ids, expected)


def test_pretrain_indices_pad_by_repeating_last():
  ids, span = sampling.pretrain_frame_indices(20, np.random.default_rng(0), num_frames=16,
                                              sampling_rate=4)
  assert ids.tolist() == [0, 4, 8, 12, 16] + [16] * 11
  assert span == (0, 19)
  # n = 21: the original's strict advance test never reaches frame 20.
  ids, _ = sampling.pretrain_frame_indices(21, _FixedStart(), num_frames=16, sampling_rate=4)
  assert ids.tolist() == [0, 4, 8, 12, 16] + [16] * 11
  # n = 66: starts 0..2; the latest start walks 2, 6, ..., 62.
  ids, span = sampling.pretrain_frame_indices(66, _FixedStart(), num_frames=16, sampling_rate=4)
  assert ids.tolist() == list(range(2, 63, 4))
  assert span == (2, 65)


def test_audio_spans():
  assert sampling.relative_audio_span(0, 19, 20, 12800) == (0, 12800)
  assert sampling.relative_audio_span(36, 99, 100, 64000) == (int(36 / 99 * 64000), 64000)
  assert sampling.relative_audio_span(0, 0, 1, 5000) == (0, 0)
  assert sampling.timestamp_audio_span(4, 19, 25.0, 16000) == (2560, 2560 + 10240)
  wave = np.arange(30000, dtype=np.float32)
  assert sampling.cut_audio(wave, 100, 2000).shape == (1900,)
  assert sampling.cut_audio(wave, 0, 0).shape == (30000,)  # too short a span, file < 2.56 s
  with pytest.raises(ValueError):
    sampling.cut_audio(np.zeros(50000, np.float32), 0, 10)
