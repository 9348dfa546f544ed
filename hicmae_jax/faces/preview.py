"""Contact sheet PNG to check the face step by eye: per clip, its middle frame with the main
face's box (green; yellow where held) and landmarks (red; the 5 alignment points larger),
the aligned crop of that frame, and the clip's report."""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from hicmae_jax.faces import detector as detector_lib, track as track_lib
from hicmae_jax.faces.options import FaceOptions
from hicmae_jax.faces.step import AlignedClip, get_aligner

if TYPE_CHECKING:
  from PIL import Image

PREVIEW_FILENAME = "face_preview.png"
_CAPTION_HEIGHT = 16


def _middle_frame(result: AlignedClip) -> int:
  """The frame to show: the detected frame nearest the middle (the middle if none)."""
  t_count = len(result.params)
  detected = np.flatnonzero(result.track.status == track_lib.DETECTED)
  if not len(detected):
    return t_count // 2
  return int(detected[np.argmin(np.abs(detected - t_count // 2))])


def panel(frame: np.ndarray, result: AlignedClip, t: int, layout: str, size: int,
          title: str) -> "Image.Image":
  """One row: [frame t with box and landmarks, scaled to height size | crop t], captioned."""
  from PIL import Image, ImageDraw
  h, w = frame.shape[:2]
  k = size / h
  left = Image.fromarray(frame).resize((max(1, round(w * k)), size), Image.Resampling.BILINEAR)
  draw = ImageDraw.Draw(left)
  box, status = result.track.boxes[t], result.track.status[t]
  if status != track_lib.MISSING:
    colour = (0, 255, 0) if status == track_lib.DETECTED else (255, 255, 0)
    draw.rectangle([(v + 0.5) * k for v in box], outline=colour, width=2)
  points = result.landmarks[t] if result.landmarks.shape[1] else np.zeros((0, 2))
  if len(points) and not np.isnan(points).any():
    key = set(detector_lib.ALIGNMENT_POINTS[layout])
    for i, (x, y) in enumerate((points + 0.5) * k):
      r = 3 if i in key else 1.5
      draw.ellipse([x - r, y - r, x + r, y + r], fill=(255, 0, 0))
  if result.crops is not None:
    right = Image.fromarray(result.crops[t]).resize((size, size), Image.Resampling.BILINEAR)
  else:
    right = Image.new("RGB", (size, size), (64, 64, 64))
    ImageDraw.Draw(right).text((8, size // 2), "skipped: no face", fill=(255, 255, 255))
  row = Image.new("RGB", (left.width + size, size + _CAPTION_HEIGHT), (255, 255, 255))
  row.paste(left, (0, _CAPTION_HEIGHT))
  row.paste(right, (left.width, _CAPTION_HEIGHT))
  rep = result.report
  ImageDraw.Draw(row).text(
      (4, 2), f"{title}  frame {t}: face in {100 * rep.detection_rate:.0f}% of "
              f"{rep.num_frames}, {rep.held_frames} held", fill=(0, 0, 0))
  return row


def contact_sheet(sources: Sequence[str], options: FaceOptions,
                  load_frames: Callable[[str], np.ndarray], row_height: int = 192
                  ) -> "Image.Image":
  """Runs the face step on each source and stacks the rows.

  load_frames: source (a video file or frames folder) -> RGB uint8 [T, H, W, 3]; the caller's
  reader (data.video_io.clip_frames), so that faces/ does not import data/."""
  from PIL import Image
  if not sources:
    raise ValueError("contact sheet: no clips to show")
  aligner = get_aligner(options)
  rows = []
  for source in sources:
    frames = load_frames(source)
    result = aligner(frames)
    t = _middle_frame(result)
    rows.append(panel(frames[t], result, t, aligner.detector.layout, row_height,
                      os.path.basename(os.path.normpath(source))))
  sheet = Image.new("RGB", (max(r.width for r in rows), sum(r.height for r in rows)),
                    (255, 255, 255))
  y = 0
  for row in rows:
    sheet.paste(row, (0, y))
    y += row.height
  return sheet


def write_contact_sheet(sources: Sequence[str], options: FaceOptions, path: str,
                        load_frames: Callable[[str], np.ndarray], row_height: int = 192) -> str:
  """contact_sheet(...) saved as PNG at path; returns path."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  contact_sheet(sources, options, load_frames, row_height).save(path)
  return path
