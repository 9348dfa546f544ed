"""The prepare command (data/prepare/command.py): split file -> shards -> clips round trip,
skipped clips, resume, parsing."""
import io
import json
import os

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from hicmae_jax.data.format import datasets, schema, split_reader
from hicmae_jax.data.prepare import command as prepare, shard_writer, synthetic, video_io
from hicmae_jax.data.prepare.split_file import PrepareError, parse_split_file

SR_IN = 44100


def _frames(n, h, w, seed):
  rng = np.random.default_rng(seed)
  return rng.integers(0, 256, size=(n, h, w, 3), dtype=np.uint8)


def _write_frames(folder, frames, ext):
  os.makedirs(folder)
  for i, f in enumerate(frames):
    Image.fromarray(f).save(os.path.join(folder, f"img_{i:03d}.{ext}"))


def _tone(seconds, freq, sr=SR_IN):
  t = np.arange(int(round(seconds * sr))) / sr
  return 0.3 * np.sin(2 * np.pi * freq * t)


def _write_stereo_wav(path, seconds, freq):
  x = _tone(seconds, freq)
  sf.write(path, np.stack([x, 0.5 * x], axis=1), SR_IN, subtype="PCM_16")


@pytest.fixture
def raw(tmp_path):
  """Raw inputs under tmp_path/raw and a split file with 3 good clips and 6 bad lines."""
  root = tmp_path / "raw"
  root.mkdir()
  _write_frames(str(root / "clip_jpg"), _frames(6, 32, 40, 0), "jpg")
  _write_stereo_wav(str(root / "clip_jpg.wav"), 0.5, 440.0)
  _write_frames(str(root / "clip_png"), _frames(5, 24, 24, 1), "png")
  _write_stereo_wav(str(root / "clip_png.wav"), 0.25, 1000.0)
  synthetic.write_mp4(str(root / "clip_video.mp4"), _frames(8, 32, 32, 2),
                      _tone(8 / 25, 300.0, 16000).astype(np.float32))
  # Bad inputs: a corrupt (truncated) jpg, and a frames folder whose wav is missing.
  _write_frames(str(root / "clip_corrupt"), _frames(3, 16, 16, 3), "jpg")
  corrupt = root / "clip_corrupt" / "img_001.jpg"
  corrupt.write_bytes(corrupt.read_bytes()[:200])
  _write_stereo_wav(str(root / "clip_corrupt.wav"), 0.2, 440.0)
  _write_frames(str(root / "clip_nowav"), _frames(3, 16, 16, 4), "jpg")
  lines = [
      "clip_jpg clip_jpg.wav 2",                 # 1
      "# a comment line",                        # 2
      "clip_missing clip_jpg.wav 0",             # 3  frames folder missing
      "clip_png clip_png.wav 0",                 # 4
      "clip_corrupt clip_corrupt.wav 1",         # 5  truncated jpg
      "clip_video.mp4 - 1",                      # 6  audio from the mp4
      "clip_nowav clip_nowav.wav 1",             # 7  wav missing
      "clip_jpg clip_jpg.wav notanint",          # 8  malformed label
      "clip_broken.mp4 - 0",                     # 9  video that does not decode
      "clip_png empty.wav 0",                    # 10 wav with no samples
      "",
  ]
  (root / "clip_broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 50)
  sf.write(str(root / "empty.wav"), np.zeros((0, 2)), SR_IN, subtype="PCM_16")
  split_file = tmp_path / "train.csv"
  split_file.write_text("\n".join(lines))
  return str(split_file), str(root)


def _prepare(raw, out, **kw):
  split_file, root = raw
  kw.setdefault("clips_per_shard", 2)
  return prepare.prepare_split(split_file, str(out), "train", root=root,
                               class_names=("a", "b", "c"), verbose=False, **kw)


def test_round_trip(raw, tmp_path):
  out = tmp_path / "out"
  info = _prepare(raw, out)
  assert info.num_clips == 3 and info.num_skipped == 6
  assert info.class_names == ["a", "b", "c"] and info.num_targets == 0
  # 7 well-formed lines at 2 per shard, in input order.
  assert info.shards == [schema.SHARD_PATTERN.format(index=i, count=4) for i in range(4)]
  loaded, paths = split_reader.read_split(str(out / "train"))
  assert loaded == info and len(paths) == 4
  clips = {c.clip_id: c for c in split_reader.iterate_clips(str(out / "train"))}
  assert list(clips) == ["clip_jpg", "clip_png", "clip_video"]

  root = raw[1]
  for name, fmt, label, seconds, freq in (("clip_jpg", "jpeg", 2, 0.5, 440.0),
                                          ("clip_png", "png", 0, 0.25, 1000.0)):
    clip = clips[name]
    folder = os.path.join(root, name)
    expected = [open(os.path.join(folder, f), "rb").read() for f in sorted(os.listdir(folder))]
    assert clip.frames == expected  # source bytes, unchanged
    assert clip.frame_format == fmt and clip.label == label and clip.fps == 0.0
    assert clip.num_samples == pytest.approx(seconds * 16000, abs=1)
    wave = schema.audio_to_float(clip.audio)
    peak_hz = np.argmax(np.abs(np.fft.rfft(wave))) * 16000 / wave.shape[0]
    assert peak_hz == pytest.approx(freq, abs=5)
    # Stereo (x, 0.5 x) downmixed to mono: amplitude 0.3 * 0.75.
    assert np.abs(wave).max() == pytest.approx(0.225, abs=0.01)
    assert clip.source_audio == os.path.join(root, name + ".wav")
  assert (clips["clip_jpg"].height, clips["clip_jpg"].width) == (32, 40)

  video = clips["clip_video"]
  assert video.num_frames == 8 and video.frame_format == "jpeg" and video.fps == 25.0
  assert (video.height, video.width) == (32, 32) and video.label == 1
  assert video.source_audio == ""
  assert abs(video.num_samples - 8 / 25 * 16000) <= 1024  # AAC pads up to one frame
  Image.open(io.BytesIO(video.frames[0])).load()
  # Mixed sizes: the most common one (ties: the smallest) plus the histogram.
  assert (info.frame_height, info.frame_width) == (24, 24)
  assert info.extra["frame_sizes"] == {"24x24": 1, "32x32": 1, "32x40": 1}


@pytest.mark.parametrize("verify_frames", video_io.VERIFY_MODES)
def test_bad_clips_are_listed(raw, tmp_path, verify_frames):
  out = tmp_path / "out"
  assert _prepare(raw, out, verify_frames=verify_frames).num_clips == 3
  text = (out / "train" / shard_writer.SKIPPED_FILENAME).read_text().splitlines()
  assert text[0].startswith("# 6 skipped")
  rows = [line.split("\t") for line in text[1:]]
  assert [r[0] for r in rows] == ["line 3", "line 5", "line 7", "line 8", "line 9", "line 10"]
  reasons = {r[0]: r[3] for r in rows}
  assert "not found" in reasons["line 3"] and "clip_missing" in reasons["line 3"]
  assert "unreadable frame" in reasons["line 5"] and "img_001.jpg" in reasons["line 5"]
  assert "audio file not found" in reasons["line 7"]
  assert "malformed line" in reasons["line 8"] and "notanint" in reasons["line 8"]
  assert "does not decode" in reasons["line 9"]
  assert "empty.wav" in reasons["line 10"]
  assert rows[0][1].endswith("clip_missing") and rows[0][2].endswith("clip_jpg.wav")


def test_rerun_redoes_only_missing_shards(raw, tmp_path):
  out = tmp_path / "out"
  info = _prepare(raw, out)
  split_dir = out / "train"
  paths = [split_dir / s for s in info.shards]
  before = [p.stat().st_mtime_ns for p in paths]

  assert _prepare(raw, out) == info  # nothing to do
  assert [p.stat().st_mtime_ns for p in paths] == before

  os.remove(paths[1])
  leftover = split_dir / (info.shards[0] + ".tmp")
  leftover.write_bytes(b"half-written junk")
  assert _prepare(raw, out) == info
  after = [p.stat().st_mtime_ns for p in paths]
  assert after[0] == before[0] and after[2] == before[2]
  assert after[1] != before[1]
  assert not leftover.exists()
  assert len(list(split_reader.iterate_clips(str(split_dir)))) == 3

  # A shard whose content no longer matches its progress file (e.g. truncated) is redone.
  paths[2].write_bytes(b"")
  _prepare(raw, out)
  assert paths[2].stat().st_mtime_ns != after[2]
  assert len(list(split_reader.iterate_clips(str(split_dir)))) == 3

  # Another shard count replaces the old shards instead of leaving both.
  info1 = _prepare(raw, out, num_shards=1)
  assert info1.shards == [schema.SHARD_PATTERN.format(index=0, count=1)]
  assert sorted(p for p in os.listdir(split_dir) if p.startswith("shard-")) == info1.shards


def test_rerun_checks_shard_sizes_and_fills_old_progress_files(raw, tmp_path):
  out = tmp_path / "out"
  info = _prepare(raw, out)
  split_dir = out / "train"
  path = split_dir / info.shards[0]
  # A shard whose size differs from the one its progress file records is written anew.
  mtime = path.stat().st_mtime_ns
  path.write_bytes(path.read_bytes() + bytes(1000))
  assert _prepare(raw, out) == info
  assert path.stat().st_mtime_ns != mtime and path.stat().st_size == info.shard_bytes[0]
  # A progress file of an older run holds no size or checksum: the kept shard gets them.
  progress = split_dir / shard_writer.PROGRESS_DIRNAME / (info.shards[1] + ".json")
  meta = json.loads(progress.read_text())
  del meta["num_bytes"], meta["sha256"]
  progress.write_text(json.dumps(meta))
  mtime = (split_dir / info.shards[1]).stat().st_mtime_ns
  assert _prepare(raw, out) == info
  assert (split_dir / info.shards[1]).stat().st_mtime_ns == mtime


def test_markers_check_falls_back_to_decoding(tmp_path):
  _write_frames(str(tmp_path / "f"), _frames(3, 8, 8, 0), "jpg")
  odd = tmp_path / "f" / "img_002.jpg"
  odd.write_bytes(odd.read_bytes() + b"trailing metadata")  # valid JPEG, no EOI at the end
  frames, fmt, h, w = video_io.read_frames_dir(str(tmp_path / "f"), verify="markers")
  assert fmt == "jpeg" and (h, w) == (8, 8) and frames[2].endswith(b"trailing metadata")
  odd.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)  # a PNG among JPEGs, and broken
  with pytest.raises(video_io.ClipError, match="img_002"):
    video_io.read_frames_dir(str(tmp_path / "f"), verify="markers")


def test_every_clip_failing_is_an_error(tmp_path, capsys):
  split_file = tmp_path / "bad.txt"
  split_file.write_text("nowhere nowhere.wav 0\nalso_nowhere - 1\n")
  with pytest.raises(PrepareError, match="every clip"):
    prepare.prepare_split(str(split_file), str(tmp_path / "out"), "bad", verbose=False)
  assert not (tmp_path / "out" / "bad" / schema.INFO_FILENAME).exists()
  assert "# 2 skipped" in (tmp_path / "out" / "bad" / shard_writer.SKIPPED_FILENAME).read_text()
  rc = prepare.main([f"--split_file={split_file}", f"--output_dir={tmp_path / 'out'}",
                     "--num_workers=1", "--class_names=x,y"])
  assert rc == 1
  assert "every clip" in capsys.readouterr().err


def test_cli_with_preset(raw, tmp_path):
  split_file, root = raw
  # --face=none: the generated video's drawn face is no face to a detector, so the default
  # --face=auto would align it, find nothing and skip the clip.
  rc = prepare.main([f"--split_file={split_file}", f"--output_dir={tmp_path / 'out'}",
                     f"--root={root}", "--dataset=crema_d", "--num_workers=1", "--face=none"])
  assert rc == 0
  info = schema.DatasetInfo.load(str(tmp_path / "out" / "train"))  # split name from the file
  assert info.class_names == list(datasets.get_preset("CREMA-D").class_names)
  assert info.name == "crema_d" and info.num_clips == 3 and len(info.shards) == 1


def test_parse_split_file_formats(tmp_path):
  f = tmp_path / "s.txt"
  f.write_text("a/x.mp4 a/x.wav 1.0 0.5 0.25\n"
               "b/x.mp4 - 0.0 1 2\n"
               "c/y 0.5 0.5 0.5\n"      # targets right after the video: audio from the video
               "d/z d/z.wav 1 2\n"      # 2 targets, the first line set 3
               "e/w e/w.wav 1 nan 2\n")
  entries, bad = parse_split_file(str(f), root="/r", label_type="regression")
  assert [e.targets for e in entries] == [(1.0, 0.5, 0.25), (0.0, 1.0, 2.0), (0.5, 0.5, 0.5)]
  assert entries[0].audio == "/r/a/x.wav" and entries[1].audio == "" and entries[2].audio == ""
  # Stems collide (x, x): ids fall back to paths relative to the common folder.
  assert [e.clip_id for e in entries] == ["a/x", "b/x", "c/y"]
  assert [b.line_no for b in bad] == [4, 5]

  f.write_text("/v/id1/00001.mp4 0\n/v/id2/00001.mp4\n/v/id2/00002.mp4 /a/00002.wav\n")
  entries, bad = parse_split_file(str(f), label_type="none")
  assert not bad and [e.audio for e in entries] == ["", "", "/a/00002.wav"]
  assert [e.clip_id for e in entries] == ["id1/00001", "id2/00001", "id2/00002"]
  assert all(e.label == -1 for e in entries)

  f.write_text("a a.wav 3\nb b.wav 1 2\nc 1\nd d.wav -1\n")
  entries, bad = parse_split_file(str(f), label_type="class", num_classes=3)
  assert [(e.clip_id, e.label, e.audio) for e in entries] == [("c", 1, "")]
  assert [b.line_no for b in bad] == [1, 2, 4]
  assert "out of range" in bad[0].reason and "3 fields" in bad[1].reason


def test_presets():
  assert datasets.get_preset("crema_d").num_classes == 6
  assert datasets.get_preset("MAFW").num_classes == 11
  assert datasets.get_preset("mafw_43").num_classes == 43
  assert datasets.get_preset("werewolf-xl").num_targets == 3
  assert datasets.get_preset("werewolf_xl").sampling_stride == 3
  assert datasets.get_preset("voxceleb2").label_type == "none"
  with pytest.raises(KeyError, match="known"):
    datasets.get_preset("nope")


def test_fuzz_random_and_truncated_inputs_never_crash(tmp_path):
  """Random bytes as split files, frames, wavs and videos: the clip is skipped with a reason or
  the split is refused with PrepareError; nothing else escapes and nothing hangs."""
  import time

  rng = np.random.default_rng(0)
  good = _frames(3, 16, 16, 0)
  t0 = time.time()
  for trial in range(12):
    d = tmp_path / f"t{trial}"
    frames = d / "frames"
    _write_frames(frames, good, "jpg")
    victim = sorted(frames.iterdir())[trial % 3]
    data = victim.read_bytes()
    victim.write_bytes(data[:rng.integers(0, len(data))] if trial % 2 else
                       bytes(rng.integers(0, 256, size=200, dtype=np.uint8)))
    wav = d / "a.wav"
    _write_stereo_wav(wav, 0.2, 440)
    wav_bytes = wav.read_bytes()
    wav.write_bytes(wav_bytes[:rng.integers(0, len(wav_bytes))])
    video = d / "v.mp4"
    video.write_bytes(bytes(rng.integers(0, 256, size=500, dtype=np.uint8)))
    junk = bytes(rng.integers(0, 256, size=60, dtype=np.uint8)).decode("latin-1")
    split = d / "split.txt"
    split.write_text(f"{frames} {wav} 0\n{video} - 1\n{junk.replace(chr(10), ' ')}\n",
                     encoding="utf-8")
    try:
      info = prepare.prepare_split(str(split), str(d / "out"), "train", num_workers=1,
                                   class_names=("a", "b"), verbose=False)
    except PrepareError as e:
      assert str(e)
      continue
    skipped = (d / "out" / "train" / "skipped.txt").read_text()
    assert info.num_clips + info.num_skipped >= 2
    assert skipped.strip()  # the broken inputs are listed with reasons
  assert time.time() - t0 < 120


def test_audio_at_another_rate_is_resampled_with_soxr_hq(tmp_path):
  """48 kHz wav -> 16 kHz: libsoxr HQ (what librosa's default res_type soxr_hq computes; the
  two were bit-identical against librosa 0.11.0), ceil(N / 3) samples, tone preserved."""
  import soxr

  from hicmae_jax.data.prepare import audio_io
  sr = 48000
  x = _tone(0.5, 1000.0, sr) + 0.05 * np.random.default_rng(0).normal(size=int(0.5 * sr))
  sf.write(tmp_path / "a.wav", x.astype(np.float32), sr, subtype="FLOAT")
  _write_frames(str(tmp_path / "f"), _frames(4, 16, 16, 0), "jpg")
  (tmp_path / "s.txt").write_text("f a.wav 0\n")
  prepare.prepare_split(str(tmp_path / "s.txt"), str(tmp_path / "out"), "train",
                        root=str(tmp_path), class_names=("a",), verbose=False)
  clip = next(split_reader.iterate_clips(str(tmp_path / "out" / "train")))
  expected = soxr.resample(x.astype(np.float32), sr, 16000, quality="HQ")
  assert clip.num_samples == 8000 and len(expected) == 8000
  np.testing.assert_array_equal(clip.audio, audio_io.to_int16(expected))


def test_video_whose_audio_and_frames_disagree_is_skipped(tmp_path):
  frames = _frames(25, 16, 16, 0)  # 1 s at 25 fps
  synthetic.write_mp4(str(tmp_path / "ok.mp4"), frames,
                      _tone(1.0, 300.0, 16000).astype(np.float32))
  synthetic.write_mp4(str(tmp_path / "cut.mp4"), frames,
                      _tone(0.5, 300.0, 16000).astype(np.float32))
  (tmp_path / "s.txt").write_text("ok.mp4 - 0\ncut.mp4 - 0\n")
  run = lambda **kw: prepare.prepare_split(
      str(tmp_path / "s.txt"), str(tmp_path / "out"), "train", root=str(tmp_path),
      class_names=("a",), verbose=False, **kw)
  info = run()
  assert info.num_clips == 1 and info.extra["skipped_by_kind"] == {"av_mismatch": 1}
  skipped = (tmp_path / "out" / "train" / shard_writer.SKIPPED_FILENAME).read_text()
  assert "cut.mp4 differ by 0.4" in skipped and "max_av_mismatch_seconds 0.25" in skipped
  assert run(max_av_mismatch_seconds=0.0).num_clips == 2  # 0 turns the check off


def test_face_option_on_a_frames_folder_and_its_fingerprint(tmp_path):
  """Whole frames (a folder) -> --face crops; switching the face step on, or changing one of
  its options, rewrites the shards instead of reusing the old ones."""
  skimage_data = pytest.importorskip("skimage.data")
  pytest.importorskip("dlib")
  from hicmae_jax import faces
  photo = np.pad(skimage_data.astronaut(), ((0, 0), (64, 64), (0, 0)))  # 512x640 frames
  _write_frames(str(tmp_path / "f"), np.stack([photo] * 3), "jpg")
  _write_stereo_wav(str(tmp_path / "f.wav"), 0.2, 440.0)
  (tmp_path / "s.txt").write_text("f f.wav 0\n")
  run = lambda face: prepare.prepare_split(
      str(tmp_path / "s.txt"), str(tmp_path / "out"), "train", root=str(tmp_path),
      class_names=("a",), verbose=False, face=face)
  plain = run(None)
  assert (plain.frame_height, plain.frame_width) == (512, 640) and "face" not in plain.extra
  shard = tmp_path / "out" / "train" / plain.shards[0]
  before = shard.stat().st_mtime_ns
  info = run(faces.FaceOptions(face_size=48))
  assert shard.stat().st_mtime_ns != before
  assert (info.frame_height, info.frame_width) == (48, 48)
  assert info.extra["face"]["per_clip"]["f"]["detected_frames"] == 3
  clip = next(split_reader.iterate_clips(str(tmp_path / "out" / "train")))
  assert clip.frame_format == "jpeg" and clip.num_frames == 3
  assert Image.open(io.BytesIO(clip.frames[0])).size == (48, 48)
  before = shard.stat().st_mtime_ns
  assert run(faces.FaceOptions(face_size=48)) == info  # same options: nothing redone
  assert shard.stat().st_mtime_ns == before
  run(faces.FaceOptions(face_size=48, face_scale=0.6))
  assert shard.stat().st_mtime_ns != before


def test_cli_face_flags(raw, tmp_path, capsys):
  split_file, root = raw
  base = [f"--split_file={split_file}", f"--output_dir={tmp_path / 'out'}", f"--root={root}",
          "--num_workers=1"]
  assert prepare.main(base + ["--preview=2", "--face=none"]) == 2
  assert "--preview shows face crops: add --face=dlib" in capsys.readouterr().err
  assert prepare.main(base + ["--face=dlib", "--face_smoothing_window=4"]) == 2
  assert "smoothing_window must be an odd number" in capsys.readouterr().err


def test_crop_stores_the_box_and_keeps_its_inside(tmp_path):
  """--crop: video frames are cropped before their JPEG encode; the box is aligned to the
  16-px JPEG blocks, so inside it the stored pixels equal the uncropped split's (only the
  outermost rows/cols differ, by chroma upsampling at the new edge). A frames folder is
  re-encoded; clips smaller than the box are skipped with the reason."""
  rng = np.random.default_rng(0)
  smooth = (np.cumsum(rng.integers(0, 256, (6, 64, 80, 3)), axis=2) // 80).astype(np.uint8)
  synthetic.write_mp4(str(tmp_path / "v.mp4"), smooth,
                      _tone(6 / 25, 300.0, 16000).astype(np.float32))
  _write_frames(str(tmp_path / "big"), smooth[:, :48], "jpg")
  _write_frames(str(tmp_path / "small"), smooth[:, :20, :20], "jpg")
  sf.write(str(tmp_path / "a.wav"), _tone(0.3, 440.0, 16000), 16000, subtype="PCM_16")
  (tmp_path / "s.txt").write_text("v.mp4 - 0\nbig a.wav 0\nsmall a.wav 0\n")
  run = lambda out, **kw: prepare.prepare_split(
      str(tmp_path / "s.txt"), str(tmp_path / out), "train", root=str(tmp_path),
      class_names=("a",), verbose=False, **kw)
  run("full")
  info = run("crop", crop=(0, 48, 16, 64))
  assert info.num_clips == 2 and info.extra["crop"] == [0, 48, 16, 64]
  assert (info.frame_height, info.frame_width) == (48, 48)
  skipped = (tmp_path / "crop" / "train" / shard_writer.SKIPPED_FILENAME).read_text()
  assert "smaller than the crop box rows 0:48 cols 16:64" in skipped
  full = {c.clip_id: c for c in split_reader.iterate_clips(str(tmp_path / "full" / "train"))}
  crop = {c.clip_id: c for c in split_reader.iterate_clips(str(tmp_path / "crop" / "train"))}
  decode = lambda data: np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(int)
  for i in range(6):
    got = decode(crop["v"].frames[i])
    want = decode(full["v"].frames[i])[0:48, 16:64]
    assert got.shape == (48, 48, 3)
    np.testing.assert_array_equal(got[1:-1, 1:-1], want[1:-1, 1:-1])
    assert np.abs(got - want).max() <= 32
    folder = decode(crop["big"].frames[i])
    assert folder.shape == (48, 48, 3) and crop["big"].frame_format == "jpeg"
    assert np.abs(folder - smooth[i, :48, 16:64]).mean() < 4  # one more JPEG generation


def test_bad_crop_is_refused_before_any_work(raw, tmp_path, capsys):
  with pytest.raises(PrepareError, match="0 <= r0 < r1"):
    _prepare(raw, tmp_path / "out", crop=(10, 5, 0, 8))
  assert prepare.main(["--split_file", raw[0], "--output_dir", str(tmp_path / "o"),
                       "--crop=1,2"]) == 2
  assert "--crop=1,2: expected four integers" in capsys.readouterr().err
  assert not (tmp_path / "out").exists() and not (tmp_path / "o").exists()


def test_frame_size_stores_the_pipelines_resize(tmp_path):
  """--frame_size: every frame resized to that square with PIL bilinear (the fine-tuning
  pipeline's resize, done once), after --crop, then one JPEG generation: close to the resized
  source, and the pipeline's own resize is then a no-op."""
  y, x = np.mgrid[0:40, 0:48]
  smooth = np.stack([np.stack([2 * y + x + 30 * c + 5 * t for c in range(3)], -1)
                     for t in range(4)]).astype(np.uint8)  # ramps: a face-like smooth picture
  _write_frames(str(tmp_path / "f"), smooth, "png")
  sf.write(str(tmp_path / "a.wav"), _tone(0.2, 440.0, 16000), 16000, subtype="PCM_16")
  (tmp_path / "s.txt").write_text("f a.wav 0\n")
  info = prepare.prepare_split(str(tmp_path / "s.txt"), str(tmp_path / "out"), "train",
                               root=str(tmp_path), class_names=("a",), verbose=False,
                               frame_size=32, crop=(0, 32, 0, 48))
  assert (info.frame_height, info.frame_width) == (32, 32) and info.extra["frame_size"] == 32
  clip = next(split_reader.iterate_clips(str(tmp_path / "out" / "train")))
  for i, data in enumerate(clip.frames):
    got = np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(int)
    want = np.asarray(Image.fromarray(smooth[i, :32]).resize((32, 32), Image.BILINEAR))
    assert np.abs(got - want).mean() < 2  # one JPEG generation at quality 95
  with pytest.raises(PrepareError, match="frame_size must be >= 0"):
    prepare.prepare_split(str(tmp_path / "s.txt"), str(tmp_path / "o2"), "train",
                          root=str(tmp_path), verbose=False, frame_size=-1)
