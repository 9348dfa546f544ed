"""data/pipeline/windows.py: a clip's windows (views), batching with padding, apply over clips."""
from __future__ import annotations

import numpy as np
import pytest

from hicmae_jax.data.pipeline import windows as windows_lib
from hicmae_jax.data.transforms import sampling


def test_clip_windows_cover_the_clip():
  opts = windows_lib.ClipOptions(num_frames=8, sampling_rate=2, window_seconds=1.0,
                                 stride_seconds=0.5)
  windows = windows_lib.clip_windows(100, 25.0, opts)  # 25-frame windows every 12 frames
  assert [w.window[0] for w in windows] == [0, 12, 24, 36, 48, 60, 72, 75]
  for w in windows:
    assert w.window[1] == w.window[0] + 25 and w.frame_ids.shape == (8,)
    assert w.frame_ids[0] == w.window[0] and w.frame_ids[-1] == w.window[1] - 1
    assert w.span == (w.window[0], min(w.window[1], 99))  # the audio span, as for any view
  (short,) = windows_lib.clip_windows(10, 25.0, opts)
  assert short.window == (0, 10) and short.span == (0, 9)
  (whole,) = windows_lib.clip_windows(100, 25.0,
                                      windows_lib.ClipOptions(num_frames=8, sampling_rate=2))
  ids, span = sampling.segment_frame_indices(100, num_frames=8, sampling_rate=2)
  np.testing.assert_array_equal(whole.frame_ids, ids)  # the evaluation sampler
  assert whole.span == span and whole.window == (span[0], span[0] + 16)


def test_bad_window_options():
  with pytest.raises(ValueError, match="stride_seconds needs"):
    windows_lib.ClipOptions(stride_seconds=1.0).validate()
  with pytest.raises(ValueError, match="without frames"):
    windows_lib.clip_windows(0, 25.0, windows_lib.ClipOptions())


def test_batches_pad_the_last_one_with_its_last_view():
  views = [({"window": i}, np.full((2, 3), i, np.float32), np.full((4,), i, np.float32))
           for i in range(5)]
  got = list(windows_lib.batches(views, 2))
  assert [[r["window"] for r in rows] for rows, _, _ in got] == [[0, 1], [2, 3], [4]]
  _, video, audio = got[-1]
  assert video.shape == (2, 2, 3) and (video == 4).all() and (audio == 4).all()


def test_prefetch_passes_items_and_errors():
  assert list(windows_lib.prefetch(iter(range(7)), size=2)) == list(range(7))

  def broken():
    yield 1
    raise RuntimeError("boom")
  with pytest.raises(RuntimeError, match="boom"):
    list(windows_lib.prefetch(broken()))


def _clip(num_frames: int, fps: float = 25.0):
  from hicmae_jax.data.format import schema
  from hicmae_jax.data.prepare import video_io
  rng = np.random.default_rng(0)
  frames = [video_io.encode_jpeg(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8))
            for _ in range(num_frames)]
  samples = int(num_frames / fps * schema.AUDIO_SAMPLE_RATE)
  return schema.Clip(clip_id="c", frames=frames, frame_format="jpeg", height=40, width=48,
                     audio=(rng.standard_normal(samples) * 3000).astype(np.int16), label=2,
                     fps=fps)


def test_apply_runs_every_fn_over_every_window_once():
  opts = windows_lib.ClipOptions(num_frames=4, sampling_rate=2, input_size=32, audio_frames=64,
                                 num_mel_bins=32, window_seconds=1.0)
  seen = []

  def mean(video, audio):
    seen.append(video.shape[0])
    return {"v": video.mean(axis=(1, 2, 3, 4)), "a": audio.mean(axis=(1, 2))}
  arrays, rows = windows_lib.apply({"m": mean}, [_clip(60)], opts, batch_size=2)
  # 60 frames, 25-frame windows side by side: [0, 25), [25, 50) and the tail [35, 60)
  assert [(r["start_frame"], r["end_frame"]) for r in rows] == [(0, 25), (25, 50), (35, 60)]
  assert [r["window"] for r in rows] == [0, 1, 2] and rows[2]["end_seconds"] == 2.4
  assert seen == [2, 2] and arrays["m"]["v"].shape == (3,) and arrays["m"]["a"].shape == (3,)
  _, video, audio = next(windows_lib.clip_views(_clip(60), opts))
  assert video.shape == (4, 32, 32, 3) and audio.shape == (64, 32)
  assert arrays["m"]["v"][0] == pytest.approx(video.mean(), rel=1e-5)
