"""One split entry -> one schema.Clip: frames (a folder's own bytes, or a video's frames as
JPEG, or aligned face crops), audio as 16 kHz mono int16, the label. Raises ClipError (the
skip reason) on bad input; prepare's shard writer, the TFDS builders, the feature export and
predict all read clips through here.
"""
from __future__ import annotations

import logging
import os

import numpy as np

from hicmae_jax import faces
from hicmae_jax.data.format import schema
from hicmae_jax.data.prepare import video_io
from hicmae_jax.data.prepare.split_file import SplitEntry
from hicmae_jax.data.prepare.video_io import ClipError, read_frames_dir, read_video

log = logging.getLogger(__name__)

# Videos whose audio track and frames last longer apart than this are skipped: AAC padding and
# the last frame's duration account for < 0.1 s, a truncated or wrong track for far more.
MAX_AV_MISMATCH_SECONDS = 0.25


def read_audio(entry: SplitEntry, video_is_file: bool) -> np.ndarray:
  """The clip's audio as 16 kHz mono int16 [N], from its wav or else its video's track."""
  # Imported here, not at the top: soundfile takes a while to import, and parsing or planning
  # a split needs none of it (prepare's mp_context imports it once before forking).
  from hicmae_jax.data.prepare import audio_io as audio_lib
  sr = schema.AUDIO_SAMPLE_RATE
  try:
    if entry.audio:
      if not os.path.isfile(entry.audio):
        raise ClipError(f"audio file not found: {entry.audio}")
      wave = audio_lib.load_audio(entry.audio, target_sr=sr)
    elif video_is_file:
      wave = audio_lib.load_audio_from_video(entry.video, target_sr=sr)
    else:
      raise ClipError(f"no audio: no wav given and {entry.video} is a frames folder")
  except ClipError:
    raise
  except Exception as e:  # audio.AudioError, soundfile/av errors
    source = entry.audio or entry.video
    raise ClipError(f"audio of {source} cannot be read: {type(e).__name__}: {e}") from None
  wave = np.asarray(wave)
  if wave.ndim != 1 or wave.shape[0] < 1:
    raise ClipError(f"audio of {entry.audio or entry.video} is empty ({wave.shape} samples)")
  return audio_lib.to_int16(wave)


def load_clip_with_report(entry: SplitEntry, *, jpeg_quality: int = 95, max_side: int = 0,
                          verify_frames: str = "decode",
                          face: faces.FaceOptions | None = None,
                          max_av_mismatch_seconds: float = 0.0,
                          crop: tuple[int, int, int, int] | None = None,
                          frame_size: int = 0, face_auto: bool = False,
                          ) -> tuple[schema.Clip, dict | None]:
  """Reads one split entry into a Clip; raises ClipError (the skip reason) on bad input.

  face: a faces.FaceOptions to store aligned face crops (JPEG, face_size square) instead of
  the frames; the second value is then the clip's FaceReport as a dict, else None. A video
  whose audio and frames last more than max_av_mismatch_seconds apart (> 0) is rejected.
  crop: (r0, r1, c0, c1) stores only those rows and columns of every frame (re-encoded as JPEG
  at jpeg_quality; frames smaller than the box are rejected). frame_size > 0: every frame
  resized to that square (PIL bilinear, as the pipelines), after the crop, re-encoded.
  face_auto (with face): a video goes through the face step only when faces/auto.py finds
  that its frames are not face crops already; frames folders are read as they are. The
  report then holds the decision under "auto" (alone when the frames were kept).
  """
  is_file = os.path.isfile(entry.video)
  if not is_file and not os.path.isdir(entry.video):
    raise ClipError(f"frames folder or video not found: {entry.video}")
  fps, pixels, report = 0.0, None, None
  decision = None
  if face is not None and face_auto:
    face, pixels, fps, decision = _auto_choice(entry.video, is_file, face,
                                               bool(crop or frame_size))
  if face is not None and is_file:
    if pixels is None:  # else decoded by the auto choice
      pixels, fps = video_io.decode_video(entry.video)
  elif face is not None:  # decode_frames checks every frame fully; markers avoid a 2nd pass
    pixels = video_io.decode_frames(read_frames_dir(entry.video, verify="markers")[0],
                                    entry.video)
  elif is_file:
    frames, height, width, fps = read_video(entry.video, jpeg_quality=jpeg_quality,
                                            max_side=max_side, crop=crop,
                                            frame_size=frame_size)
    fmt = "jpeg"
  else:
    frames, fmt, height, width = read_frames_dir(entry.video, verify=verify_frames)
    if crop is not None or frame_size:
      frames, height, width = video_io.refit_frames(frames, crop, frame_size, jpeg_quality,
                                                    entry.video)
      fmt = "jpeg"
  pcm = read_audio(entry, is_file)
  video_io.check_av_durations(len(pixels) if pixels is not None else len(frames), fps,
                              len(pcm), schema.AUDIO_SAMPLE_RATE, max_av_mismatch_seconds,
                              entry.video)
  if face is not None:
    result = faces.get_aligner(face)(pixels)
    report = result.report.to_dict()
    if decision is not None:
      report["auto"] = decision
    if result.crops is None:
      raise video_io.NoFaceError(f"no face: {result.report.skip_reason}", report)
    frames = [video_io.encode_jpeg(crop, jpeg_quality) for crop in result.crops]
    fmt, height, width = "jpeg", face.face_size, face.face_size
  clip = schema.Clip(
      clip_id=entry.clip_id, frames=frames, frame_format=fmt, height=height, width=width,
      audio=pcm, label=entry.label, targets=entry.targets, fps=fps,
      source_video=entry.video, source_audio=entry.audio)
  if decision is not None and report is None:
    report = {"auto": decision}
  return clip, report


def _auto_choice(path: str, is_file: bool, face: faces.FaceOptions, fixed_geometry: bool
                 ) -> tuple[faces.FaceOptions | None, np.ndarray | None, float, dict]:
  """--face=auto for one clip -> (the face options to apply, None to keep the frames; the
  decoded frames when they go to the face step; their fps; the decision as a dict)."""
  from hicmae_jax.faces import auto, options
  if not is_file:
    return None, None, 0.0, auto.frames_folder().to_dict()
  pixels, fps = video_io.decode_video(path)
  decision = auto.inspect(pixels, faces.get_aligner(options.for_inspection(face)).detect)
  if decision.choice == auto.AS_IS:
    return None, None, 0.0, decision.to_dict()  # read again as without --face: same bytes
  if fixed_geometry:
    raise video_io.NotFaceCropError(
        f"not face crops ({decision.reason}): --crop / --frame_size apply to face crops only; "
        f"prepare such videos with --face=dlib and without them", {"auto": decision.to_dict()})
  return face, pixels, fps, decision.to_dict()


def load_clip(entry: SplitEntry, **options) -> schema.Clip:
  """load_clip_with_report without the report (same keyword options)."""
  return load_clip_with_report(entry, **options)[0]


def check_face_none(clip: schema.Clip, source: str):
  """--face=none: the clip's sampled frames looked at as --face=auto would (faces/auto.py);
  logs one warning when they are not face crops. -> the auto.Decision, or None when no face
  detector is installed."""
  from hicmae_jax.faces import auto, options
  try:
    detect = faces.get_aligner(options.for_inspection()).detect
  except (ImportError, OSError) as e:
    log.warning("--face=none: frames not checked for faces (%s)", e)
    return None
  indices = auto.sample_indices(clip.num_frames)
  frames = video_io.decode_frames([clip.frames[i] for i in indices], source)
  decision = auto.inspect(frames, detect, indices)
  warning = auto.none_warning(decision, source)
  if warning:
    log.warning("%s", warning)
  return decision


def raw_clip(*, video: str = "", frames_dir: str = "", wav: str = "", label: int = -1,
             clip_id: str = "", face=None, face_mode: str = "") -> schema.Clip:
  """One clip from raw files: a video file (its own audio track unless `wav` is given) or a
  frames folder with a wav. Read by prepare's own reader (`load_clip_with_report`), so exactly
  as `prepare` reads it (face, face_mode: as raw_clip_with_face)."""
  return raw_clip_with_face(video=video, frames_dir=frames_dir, wav=wav, label=label,
                            clip_id=clip_id, face=face, face_mode=face_mode)[0]


def raw_clip_with_face(*, video: str = "", frames_dir: str = "", wav: str = "",
                       label: int = -1, clip_id: str = "", face=None, face_mode: str = ""
                       ) -> tuple[schema.Clip, dict | None]:
  """raw_clip and the --face record {mode, choice, reason, ..., face: the face step's report}
  (None without face options and mode). face: faces.FaceOptions; face_mode: the --face value
  ("auto": aligned only when the sampled frames are not face crops, faces/auto.py; "none":
  kept, with a warning when they are not face crops; "dlib" or "": as `face` says)."""
  if bool(video) == bool(frames_dir):
    raise ValueError("give exactly one of --video (a video file) or --frames_dir (a folder of "
                     "frames, with --wav)")
  source = video or frames_dir
  if video and not os.path.isfile(video):
    raise FileNotFoundError(f"--video {video!r} not found (a video file, e.g. .mp4)")
  if frames_dir and not os.path.isdir(frames_dir):
    raise FileNotFoundError(f"--frames_dir {frames_dir!r} not found (a folder of .jpg/.png "
                            f"frames)")
  if frames_dir and not wav:
    raise ValueError(f"--frames_dir {frames_dir!r} needs --wav: a frames folder has no audio")
  if wav and not os.path.isfile(wav):
    raise FileNotFoundError(f"--wav {wav!r} not found")
  stem = os.path.basename(os.path.normpath(source))
  if video:
    stem = os.path.splitext(stem)[0]
  entry = SplitEntry(line_no=0, video=source, audio=wav, label=label, clip_id=clip_id or stem)
  try:
    clip, report = load_clip_with_report(
        entry, face=face, face_auto=face is not None and face_mode == "auto")
  except ClipError as e:
    raise ValueError(str(e)) from None
  report = dict(report or {})
  choice = report.pop("auto", None)
  if choice is None and face_mode == "none":
    decision = check_face_none(clip, source)
    choice = decision.to_dict() if decision is not None else None
  if choice is None and (face is not None or face_mode):
    choice = {"choice": "align" if face is not None else "as_is",
              "reason": f"--face={face_mode or face.detector}"}
  if choice is None:
    return clip, None
  return clip, {"mode": face_mode or ("dlib" if face is not None else "none"), **choice,
                "face": report or None}
