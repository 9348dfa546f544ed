"""The files to predict on, and each one read into the clip the model sees.

A video file is read with its own audio track (or --wav), a frames folder with --wav, both
exactly as `prepare` reads them (`data/prepare/clip_loader.raw_clip`). With face options the
prepare face step runs on the decoded frames (`faces.get_aligner(options)(frames)`) and the
clip holds the aligned crops as JPEG (quality 95, as prepare stores them), so the model reads
what it was fine-tuned on; the face track (per-frame transform and status) is kept for the
pictures. Predictions never skip a whole input for want of a face (min_face_fraction does not
apply here): frames without a face are marked (has_face) and the windows decide
(windows.py: --min_window_face_fraction). The face step needs every decoded frame at once
([T, H, W, 3] uint8 in memory: about 0.9 GB per minute of 480x360 at 30 fps).
"""
from __future__ import annotations

import dataclasses
import logging
import os
from typing import Sequence

import numpy as np

from hicmae_jax.data.format import schema
from hicmae_jax.data.prepare import clip_loader, video_io
from hicmae_jax.data.prepare.split_file import VIDEO_EXTENSIONS, SplitEntry
from hicmae_jax.faces.options import FaceOptions, for_inspection

log = logging.getLogger(__name__)
JPEG_QUALITY = 95  # prepare's default for frames it encodes


@dataclasses.dataclass(frozen=True)
class Source:
  """One input: a video file (audio from its track unless wav), or a frames folder + wav.
  name: how its outputs are named (file stem, made unique among the inputs)."""
  path: str
  wav: str
  name: str

  @property
  def is_video(self) -> bool:
    return os.path.isfile(self.path)


def expand(videos: Sequence[str], frames_dir: str = "", wav: str = "") -> list[Source]:
  """The inputs: video files, and every video file of a folder given in `videos` (sorted),
  or one frames folder with its wav. Output names are the stems, numbered when they repeat."""
  paths: list[str] = []
  for item in videos:
    if os.path.isdir(item):
      found = sorted(os.path.join(item, n) for n in os.listdir(item)
                     if os.path.splitext(n)[1].lower() in VIDEO_EXTENSIONS)
      if not found:
        raise FileNotFoundError(f"--video={item} is a folder without video files "
                                f"({', '.join(VIDEO_EXTENSIONS)}); for a folder of "
                                f"frames use --frames_dir with --wav")
      paths += found
    elif os.path.isfile(item):
      paths.append(item)
    else:
      raise FileNotFoundError(f"--video={item}: no such file or folder")
  if frames_dir:
    if paths:
      raise ValueError("give --video (files or folders of videos) or --frames_dir with --wav, "
                       "not both")
    if not os.path.isdir(frames_dir):
      raise FileNotFoundError(f"--frames_dir={frames_dir}: no such folder")
    if not wav:
      raise ValueError(f"--frames_dir={frames_dir} needs --wav: a frames folder has no audio")
    paths = [frames_dir]
  if not paths:
    raise ValueError("nothing to predict on: pass --video=<file, folder or list> or "
                     "--frames_dir=<folder> --wav=<file>")
  if wav and len(paths) > 1:
    raise ValueError(f"--wav={wav} goes with one input, but {len(paths)} were given")
  if wav and not os.path.isfile(wav):
    raise FileNotFoundError(f"--wav={wav}: no such file")
  sources, seen = [], {}
  for path in paths:
    base = os.path.basename(os.path.normpath(path))
    stem = os.path.splitext(base)[0] if os.path.isfile(path) else base
    seen[stem] = seen.get(stem, 0) + 1
    sources.append(Source(path, wav, stem if seen[stem] == 1 else f"{stem}_{seen[stem]}"))
  return sources


@dataclasses.dataclass(frozen=True)
class FaceTrack:
  """What the face step found, per source frame: params [T, 4] (the smoothed frame->crop
  similarity, NaN without a face), status [T] (faces.track MISSING / DETECTED / HELD),
  has_face [T] bool; face_size; report (the FaceReport as a dict, with its shots)."""
  params: np.ndarray
  status: np.ndarray
  face_size: int
  report: dict
  has_face: np.ndarray

  def crop_outline(self, t: int) -> np.ndarray:
    """The aligned crop's square in frame pixel coordinates [4, 2] at frame t: the region the
    model sees."""
    from hicmae_jax.faces import align
    s = float(self.face_size)
    corners = np.array([[0.0, 0.0], [s, 0.0], [s, s], [0.0, s]])
    # The similarity maps continuous coordinates (pixel centres at +0.5) frame -> crop.
    return align.apply(align.invert(self.params[t]), corners) - 0.5


@dataclasses.dataclass
class Loaded:
  """A read input. clip: what the model reads (aligned crops with --face); fps: the frame
  rate (the default for frames folders); frame_size (H, W) of the source frames;
  face: the face step's track, or None without --face."""
  source: Source
  clip: schema.Clip
  fps: float
  frame_size: tuple[int, int]
  face: FaceTrack | None = None
  face_choice: dict | None = None  # --face: mode, choice, reason (faces/auto.py)

  @property
  def num_frames(self) -> int:
    return self.clip.num_frames

  @property
  def duration(self) -> float:
    return self.num_frames / self.fps

  def thumbnails(self, indices: Sequence[int]) -> list[np.ndarray]:
    """RGB uint8 pictures of these frames as the model reads them (aligned crops with
    --face), decoded from the clip."""
    return list(video_io.decode_frames([self.clip.frames[i] for i in indices],
                                       self.source.path))


def load(source: Source, face: FaceOptions | None, default_fps: float, face_mode: str = ""
         ) -> Loaded:
  """Reads one input (see the module docstring); ValueError names the file and the reason.

  face_mode: the --face value. "auto" (face: its align step's options) aligns a video only
  when its sampled frames are not face crops (faces/auto.py; frames folders are kept); "none"
  keeps the frames and logs one warning when they are not face crops; "dlib" or "" (library
  default) does as `face` says. Loaded.face_choice records the choice and its reason."""
  from hicmae_jax.faces import auto
  pixels, fps, decision = None, 0.0, None
  if face is not None and face_mode == "auto":
    if source.is_video:
      pixels, fps = _decode(source)
      decision = auto.inspect(pixels, _aligner(for_inspection(face)).detect)
    else:
      decision = auto.frames_folder()
    if decision.choice == auto.AS_IS:
      face, pixels = None, None
  if face is None:
    loaded = _load_as_is(source, default_fps)
    if face_mode == "none":
      decision = clip_loader.check_face_none(loaded.clip, source.path)
  else:
    loaded = _load_aligned(source, face, default_fps, pixels, fps)
  mode = face_mode or ("dlib" if face is not None else "none")
  loaded.face_choice = ({"mode": mode, **decision.to_dict()} if decision is not None else
                        {"mode": mode, "choice": auto.ALIGN if face else auto.AS_IS,
                         "reason": f"--face={mode}"})
  return loaded


def _aligner(face: FaceOptions):
  from hicmae_jax import faces
  return faces.get_aligner(face)


def _decode(source: Source) -> tuple[np.ndarray, float]:
  """Every frame of the input, RGB uint8 [T, H, W, 3], and its fps (0: a frames folder)."""
  try:
    if source.is_video:
      return video_io.decode_video(source.path)
    return video_io.clip_frames(source.path), 0.0
  except video_io.ClipError as e:
    raise ValueError(f"{source.path}: {e}") from None


def _load_as_is(source: Source, default_fps: float) -> Loaded:
  clip = clip_loader.raw_clip(video=source.path if source.is_video else "",
                           frames_dir="" if source.is_video else source.path,
                           wav=source.wav, clip_id=source.name)
  fps = clip.fps if clip.fps > 0 else default_fps
  return Loaded(source, clip, fps, (clip.height, clip.width))


def _load_aligned(source: Source, face: FaceOptions, default_fps: float,
                  pixels: np.ndarray | None, fps: float) -> Loaded:
  """The face step on the input's frames (decoded here unless given) with its audio."""
  if pixels is None:
    pixels, fps = _decode(source)
  try:
    entry = SplitEntry(line_no=0, video=source.path, audio=source.wav, clip_id=source.name)
    pcm = clip_loader.read_audio(entry, source.is_video)
  except video_io.ClipError as e:
    raise ValueError(f"{source.path}: {e}") from None
  fps = fps if fps > 0 else default_fps
  audio_s, video_s = len(pcm) / schema.AUDIO_SAMPLE_RATE, len(pixels) / fps
  if abs(audio_s - video_s) > clip_loader.MAX_AV_MISMATCH_SECONDS:
    log.warning("%s: audio %.2f s and video %.2f s differ; windows take the audio by relative "
                "position, as the evaluation does", source.path, audio_s, video_s)
  aligned = _aligner(dataclasses.replace(face, min_face_fraction=0.0))(pixels)
  rep = aligned.report
  log.info("%s: face found in %d of %d frames (%d held, %d without a face), %d shots",
           source.path, rep.detected_frames, rep.num_frames, rep.held_frames,
           rep.missing_frames, len(rep.shots))
  clip = schema.Clip(
      clip_id=source.name, frames=[video_io.encode_jpeg(c, JPEG_QUALITY) for c in aligned.crops],
      frame_format="jpeg", height=face.face_size, width=face.face_size, audio=pcm,
      fps=fps if source.is_video else 0.0, source_video=source.path, source_audio=source.wav)
  track = FaceTrack(aligned.params, aligned.track.status, face.face_size, rep.to_dict(),
                    aligned.has_face)
  return Loaded(source, clip, fps, tuple(pixels.shape[1:3]), track)
