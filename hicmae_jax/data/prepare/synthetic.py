"""A small learnable audio-visual dataset, written as real raw inputs and prepared like real data.

  python -m hicmae_jax.data.synthetic --output_dir=/tmp/hicmae_synth --num_train=400 \
      --num_val=100 --num_test=100 --num_classes=4 --frame_size=64 --num_frames=48 --seed=0

Each clip is a cartoon face on a coloured background, 25 fps, with a 16 kHz soundtrack of
the same duration. Class k fixes
  * the mouth rhythm: it opens and closes at `rhythm_hz[k]` (0.4 .. 2.4 Hz, all below the
    3.125 Hz Nyquist rate of the original's stride-4 frame sampling),
  * the voice pitch: a 3-harmonic tone at `pitch_hz[k]` (half an octave apart),
  * the eyebrow slant (a static cue, so a small model also learns from single frames),
and the two modalities correspond: the tone's loudness follows the mouth opening, with the
same per-clip phase. Per-clip nuisance: background/face colours, face position, size and slow
drift, rhythm phase, pitch jitter (+-3 %), loudness, pixel noise and audio noise.

Layout under --output_dir:
  raw/frames/<split>/<clip>/00001.jpg ...  raw/audio/<split>/<clip>.wav   (or, with
  --as_video, raw/video/<split>/<clip>.mp4 with an AAC track and no wav)
  raw/{train,val,test,pretrain}.txt  split files in the original's format, paths relative
                                     to raw/ (the pretrain list reuses the train clips, unlabeled)
  <split>/shard-*.array_record, dataset_info.json   written by prepare.prepare_split
Running it again with the same options does nothing once every split is prepared (and
resumes an interrupted run); with other options it replaces raw/ and the split folders.
"""
from __future__ import annotations

import concurrent.futures
import json
import math
import os
import shutil
import sys
import time
from typing import Sequence

import numpy as np
from absl import flags

from hicmae_jax import cli
from hicmae_jax.data.format import schema
from hicmae_jax.data.prepare import command as prepare, worker_pool
from hicmae_jax.data.prepare.split_file import PrepareError

FPS = 25.0
SPLITS = ("train", "val", "test")
_SPLIT_IDS = {"train": 0, "val": 1, "test": 2}


def class_rhythms(num_classes: int) -> np.ndarray:
  """Mouth open/close frequency per class, Hz [num_classes]."""
  return 0.4 + 2.0 * np.arange(num_classes) / max(1, num_classes - 1)


def class_pitches(num_classes: int) -> np.ndarray:
  """Fundamental frequency per class, Hz [num_classes]; at most ~5.8 kHz for many classes."""
  step = min(0.5, 5.0 / max(1, num_classes))  # octaves between neighbouring classes
  return 180.0 * 2.0 ** (step * np.arange(num_classes))


def class_brow_slopes(num_classes: int) -> np.ndarray:
  """Eyebrow slant per class (rise over run) [num_classes]."""
  return np.linspace(-0.5, 0.5, num_classes) if num_classes > 1 else np.zeros(1)


def render_clip(label: int, num_classes: int, rng: np.random.Generator, *, frame_size: int = 64,
                num_frames: int = 48, sample_rate: int = schema.AUDIO_SAMPLE_RATE
                ) -> tuple[np.ndarray, np.ndarray]:
  """One clip of class `label` -> (frames uint8 [T, S, S, 3], audio float32 [N] in [-1, 1]).

  T = num_frames at 25 fps, N = round(T / 25 * sample_rate).
  """
  s, t_count = frame_size, num_frames
  rhythm = class_rhythms(num_classes)[label]
  pitch = class_pitches(num_classes)[label] * rng.uniform(0.97, 1.03)
  slope = class_brow_slopes(num_classes)[label]
  phase = rng.uniform(0, 2 * np.pi)

  def mouth_open(t):  # in [0, 1]; shared by the mouth and the voice loudness
    return 0.5 * (1.0 - np.cos(2 * np.pi * rhythm * t + phase))

  # --- video -----------------------------------------------------------------------------
  t_frames = np.arange(t_count) / FPS
  opening = mouth_open(t_frames).astype(np.float32)[:, None, None]  # [T, 1, 1]
  drift_phase = rng.uniform(0, 2 * np.pi, size=2)
  cx = s * (0.5 + rng.uniform(-0.08, 0.08)) + 0.02 * s * np.sin(2 * np.pi * 0.3 * t_frames
                                                                  + drift_phase[0])
  cy = s * (0.5 + rng.uniform(-0.06, 0.06)) + 0.02 * s * np.sin(2 * np.pi * 0.2 * t_frames
                                                                  + drift_phase[1])
  cx = cx.astype(np.float32)[:, None, None]  # [T, 1, 1]
  cy = cy.astype(np.float32)[:, None, None]
  rx = s * 0.30 * rng.uniform(0.9, 1.1)
  ry = s * 0.38 * rng.uniform(0.9, 1.1)
  # Pixel-centre coordinates as a row [1, 1, S] and a column [1, S, 1]: every shape test
  # below broadcasts to [T, S, S] once, which keeps a clip at a few milliseconds.
  grid = (np.arange(s, dtype=np.float32) + 0.5)
  xx, yy = grid[None, None, :], grid[None, :, None]

  def ellipse(x0, y0, ax, ay):
    return ((xx - x0) / ax) ** 2 + ((yy - y0) / ay) ** 2 <= 1.0  # [T, S, S]

  face = ellipse(cx, cy, rx, ry)
  eye_y = cy - 0.25 * ry
  dark = np.zeros_like(face)  # eyes and eyebrows
  for side in (-1.0, 1.0):
    ex = cx + side * 0.42 * rx
    dark |= ellipse(ex, eye_y, 0.13 * rx, 0.13 * rx)
    # Mirrored slant: the inner ends go down for positive slopes (a frown), up for negative.
    brow_y = eye_y - 0.28 * ry - side * slope * (xx - ex)
    dark |= (np.abs(yy - brow_y) <= max(0.6, 0.04 * s)) & (np.abs(xx - ex) <= 0.22 * rx)
  mouth = ellipse(cx, cy + 0.45 * ry, 0.36 * rx, 0.03 * ry + 0.20 * ry * opening)

  # Region index map -> palette lookup (uint8 throughout; no float image).
  regions = face.astype(np.uint8)
  regions[dark & face] = 2
  regions[mouth] = 3
  palette = np.stack([
      rng.uniform(40, 215, size=3),                                            # background
      [rng.uniform(150, 240), rng.uniform(110, 200), rng.uniform(80, 170)],    # skin
      rng.uniform(10, 50, size=3),                                             # eyes, brows
      [rng.uniform(90, 150), rng.uniform(10, 50), rng.uniform(20, 60)],        # lips
  ]).astype(np.int16)
  noise_level = int(rng.integers(3, 13))
  img = palette[regions]  # [T, S, S, 3] int16
  img += rng.integers(-noise_level, noise_level + 1, size=img.shape, dtype=np.int16)
  frames = np.clip(img, 0, 255).astype(np.uint8)

  # --- audio -----------------------------------------------------------------------------
  n = int(round(t_count / FPS * sample_rate))
  t_audio = np.arange(n) / sample_rate
  theta = rng.uniform(0, 2 * np.pi, size=3)
  tone = sum(w * np.sin(2 * np.pi * (h + 1) * pitch * t_audio + theta[h])
             for h, w in enumerate((1.0, 0.5, 0.25))) / 1.75
  envelope = 0.1 + 0.9 * mouth_open(t_audio)
  loudness = rng.uniform(0.2, 0.5)
  audio = loudness * envelope * tone
  audio += rng.normal(0.0, loudness * rng.uniform(0.01, 0.08), size=n)
  return frames, np.clip(audio, -1.0, 1.0).astype(np.float32)


def write_mp4(path: str, frames: np.ndarray, audio: np.ndarray | None = None, *,
              fps: float = FPS, sample_rate: int = schema.AUDIO_SAMPLE_RATE) -> None:
  """frames uint8 [T, H, W, 3] (H, W even) + optional float audio [N] -> H.264/AAC mp4."""
  from fractions import Fraction

  import av
  t_count, height, width, _ = frames.shape
  if height % 2 or width % 2:
    raise ValueError(f"H.264 yuv420p needs even frame sizes, got {height}x{width}")
  with av.open(path, "w") as container:
    video = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
    video.width, video.height, video.pix_fmt = width, height, "yuv420p"
    video.options = {"crf": "18", "preset": "veryfast"}
    sound = None
    if audio is not None:
      sound = container.add_stream("aac", rate=sample_rate, layout="mono")
    for frame in frames:
      for packet in video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
        container.mux(packet)
    for packet in video.encode():
      container.mux(packet)
    if sound is not None:
      chunk = av.AudioFrame.from_ndarray(np.asarray(audio, np.float32)[None], format="fltp",
                                         layout="mono")
      chunk.sample_rate, chunk.pts = sample_rate, 0
      for packet in sound.encode(chunk):
        container.mux(packet)
      for packet in sound.encode():
        container.mux(packet)


def _write_raw_clip(raw_dir: str, split: str, clip_id: str, frames: np.ndarray,
                    audio: np.ndarray, as_video: bool) -> tuple[str, str]:
  """Writes one clip's raw files; -> (video field, audio field) relative to raw_dir."""
  import soundfile as sf
  from PIL import Image
  if as_video:
    rel = os.path.join("video", split, clip_id + ".mp4")
    os.makedirs(os.path.dirname(os.path.join(raw_dir, rel)), exist_ok=True)
    write_mp4(os.path.join(raw_dir, rel), frames, audio)
    return rel, "-"
  frames_rel = os.path.join("frames", split, clip_id)
  audio_rel = os.path.join("audio", split, clip_id + ".wav")
  os.makedirs(os.path.join(raw_dir, frames_rel), exist_ok=True)
  os.makedirs(os.path.join(raw_dir, "audio", split), exist_ok=True)
  for i, frame in enumerate(frames, start=1):  # 1-based, zero-padded: sorts by name
    Image.fromarray(frame).save(os.path.join(raw_dir, frames_rel, f"{i:05d}.jpg"), quality=95)
  sf.write(os.path.join(raw_dir, audio_rel), audio, schema.AUDIO_SAMPLE_RATE, subtype="PCM_16")
  return frames_rel, audio_rel


def _render_chunk(raw_dir: str, split: str, indices: Sequence[int], labels: Sequence[int],
                  params: dict) -> list[str]:
  """Renders and writes clips `indices` of a split; -> their split-file lines, in order."""
  lines = []
  for index, label in zip(indices, labels):
    # One generator per clip: a clip's content depends only on (seed, split, index).
    rng = np.random.default_rng([params["seed"], _SPLIT_IDS[split], 1, index])
    frames, audio = render_clip(int(label), params["num_classes"], rng,
                                frame_size=params["frame_size"], num_frames=params["num_frames"])
    clip_id = f"{split}_{index:05d}"
    video, wav = _write_raw_clip(raw_dir, split, clip_id, frames, audio, params["as_video"])
    lines.append(f"{video} {wav} {int(label)}")
  return lines


def _write_raw_split(raw_dir: str, split: str, num_clips: int, params: dict,
                     num_workers: int = 1) -> str:
  """Renders a split's clips (in parallel over num_workers processes) and writes its split
  file; -> the split file path."""
  path = os.path.join(raw_dir, f"{split}.txt")
  if os.path.exists(path):  # written last, so the split's clips are complete (same params)
    return path
  for kind in ("frames", "audio", "video"):  # no stray files from an interrupted render
    shutil.rmtree(os.path.join(raw_dir, kind, split), ignore_errors=True)
  k = params["num_classes"]
  order_rng = np.random.default_rng([params["seed"], _SPLIT_IDS[split], 0])
  labels = order_rng.permutation(np.arange(num_clips) % k).tolist()  # balanced, shuffled
  indices = list(range(num_clips))
  chunk = max(1, math.ceil(num_clips / (4 * max(1, num_workers))))  # a few per worker
  workers = worker_pool.worker_count(num_workers, math.ceil(num_clips / chunk), num_clips)
  if workers <= 1:
    lines = _render_chunk(raw_dir, split, indices, labels, params)
  else:
    with concurrent.futures.ProcessPoolExecutor(
        max_workers=workers, mp_context=worker_pool.mp_context()) as pool:
      futures = [pool.submit(_render_chunk, raw_dir, split, indices[i:i + chunk],
                             labels[i:i + chunk], params)
                 for i in range(0, num_clips, chunk)]
      lines = [line for f in futures for line in f.result()]
  with open(path + ".tmp", "w") as f:
    f.write("\n".join(lines) + "\n")
  os.replace(path + ".tmp", path)
  return path


def _write_pretrain_list(raw_dir: str, train_file: str, as_video: bool) -> str:
  """The train clips as an unlabeled list (VoxCeleb2 style `<mp4>` lines with --as_video)."""
  with open(train_file) as f:
    fields = [line.split() for line in f if line.strip()]
  path = os.path.join(raw_dir, "pretrain.txt")
  with open(path + ".tmp", "w") as f:
    for video, wav, _ in fields:
      f.write(f"{video}\n" if as_video else f"{video} {wav}\n")
  os.replace(path + ".tmp", path)
  return path


def _is_prepared(split_dir: str, num_clips: int, params: dict) -> schema.DatasetInfo | None:
  try:
    info = schema.DatasetInfo.load(split_dir)
    info.shard_paths(split_dir)
  except (FileNotFoundError, schema.RecordError, ValueError, TypeError):
    return None
  ok = info.num_clips == num_clips and info.extra.get("synthetic") == params
  return info if ok else None


def generate(output_dir: str, *, num_train: int, num_val: int, num_test: int,
             num_classes: int = 4, frame_size: int = 64, num_frames: int = 48, seed: int = 0,
             num_workers: int = 2, as_video: bool = False, verbose: bool = True
             ) -> dict[str, schema.DatasetInfo]:
  """Writes the raw clips and prepares train/val/test (+ unlabeled pretrain = train clips).

  Returns {split: DatasetInfo} for "train", "val", "test", "pretrain" (a split with 0 clips
  is left out). Deterministic in `seed`; does nothing when every split is already prepared
  with the same options.
  """
  if num_classes < 2:
    raise ValueError(f"num_classes must be >= 2, got {num_classes}")
  if frame_size < 16 or num_frames < 1:
    raise ValueError(f"frame_size must be >= 16 and num_frames >= 1, got {frame_size}, "
                     f"{num_frames}")
  t0 = time.time()
  log = (lambda *a: print(*a, file=sys.stderr, flush=True)) if verbose else (lambda *a: None)
  # Everything the raw files depend on; any change starts the folders afresh (below).
  params = {"num_train": num_train, "num_val": num_val, "num_test": num_test,
            "num_classes": num_classes, "frame_size": frame_size, "num_frames": num_frames,
            "seed": seed, "as_video": as_video}
  counts = {"train": num_train, "val": num_val, "test": num_test}
  counts = {k: v for k, v in counts.items() if v > 0}
  if "train" in counts:
    counts["pretrain"] = counts["train"]
  ready = {s: _is_prepared(os.path.join(output_dir, s), n, params) for s, n in counts.items()}
  if all(info is not None for info in ready.values()):
    log(f"synthetic data already prepared in {output_dir} ({counts}); nothing to do")
    return ready

  raw_dir = os.path.join(output_dir, "raw")
  params_path = os.path.join(raw_dir, "params.json")
  old_params = None
  if os.path.exists(params_path):
    with open(params_path) as f:
      old_params = json.load(f)
  if old_params != params:
    # Other options (or an unknown earlier run): split files and shard fingerprints would
    # look unchanged while the pictures differ, so start this tool's folders afresh.
    for name in ("raw", *SPLITS, "pretrain"):
      shutil.rmtree(os.path.join(output_dir, name), ignore_errors=True)
    ready = {s: None for s in counts}
  os.makedirs(raw_dir, exist_ok=True)
  with open(params_path, "w") as f:
    json.dump(params, f)
  class_names = [f"class_{i}" for i in range(num_classes)]
  extra = {"synthetic": params,
           "rhythm_hz": [round(float(v), 4) for v in class_rhythms(num_classes)],
           "pitch_hz": [round(float(v), 2) for v in class_pitches(num_classes)]}
  infos = {}
  for split, n in counts.items():
    if ready[split] is not None:
      infos[split] = ready[split]
      continue
    t_split = time.time()
    if split == "pretrain":
      # (Re)uses the train clips' raw files; renders them if raw/ was removed meanwhile.
      train_file = _write_raw_split(raw_dir, "train", counts["train"], params, num_workers)
      split_file = _write_pretrain_list(raw_dir, train_file, as_video)
      label_type = "none"
    else:
      split_file = _write_raw_split(raw_dir, split, n, params, num_workers)
      label_type = "class"
    log(f"[synthetic {split}] raw clips ready in {time.time() - t_split:.1f} s")
    # Enough shards to keep every worker busy; at most 256 clips each.
    per_shard = max(1, min(256, math.ceil(n / max(1, num_workers))))
    infos[split] = prepare.prepare_split(
        split_file, output_dir, split, root=raw_dir, label_type=label_type,
        class_names=class_names if label_type == "class" else (),
        clips_per_shard=per_shard, num_workers=num_workers, dataset_name="synthetic",
        # We wrote these files a moment ago: check markers only, decode one frame per clip.
        extra=extra, verify_frames="markers", verbose=verbose)
  log(f"synthetic data written to {output_dir} in {time.time() - t0:.1f} s")
  return infos


def _define_flags(values: flags.FlagValues) -> None:
  flags.DEFINE_string("output_dir", None, "where the raw clips and the prepared splits go",
                      flag_values=values, required=True)
  for name, default, text in (
      ("num_train", 400, "clips of the train split"), ("num_val", 100, "clips of the val split"),
      ("num_test", 100, "clips of the test split"), ("num_classes", 4, "classes"),
      ("frame_size", 64, "frame height and width (pixels)"), ("num_frames", 48, "frames a clip"),
      ("seed", 0, "random seed"), ("num_workers", 2, "prepare's worker processes")):
    flags.DEFINE_integer(name, default, text, flag_values=values)
  flags.DEFINE_bool("as_video", False, "write each clip as an mp4 with an AAC track instead of "
                    "frames + wav", flag_values=values)


def main(argv: Sequence[str] | None = None) -> int:
  """Generate and prepare a synthetic audio-visual set: the command line (argv without the
  program name; None: sys.argv[1:]) -> the exit code (1: the generation failed)."""
  return cli.run_own(_define_flags, _main, argv, doc=__doc__)


def _main(values: flags.FlagValues) -> int:
  try:
    generate(values.output_dir, num_train=values.num_train, num_val=values.num_val,
             num_test=values.num_test, num_classes=values.num_classes,
             frame_size=values.frame_size, num_frames=values.num_frames, seed=values.seed,
             num_workers=values.num_workers, as_video=values.as_video)
  except (ValueError, PrepareError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
