"""Reading frames: frames folders (source bytes kept), video files (PyAV), JPEG encoding.

`prepare` stores either the source bytes of a frames folder or re-encoded video frames; the face
step (`hicmae_jax.faces`) needs decoded pixels instead, [T, H, W, 3] uint8, which
`decode_video` and `decode_frames` give. Every reader raises ClipError, whose message is the
reason a clip is skipped.
"""
from __future__ import annotations

import io
import os
from typing import TYPE_CHECKING, Iterator, Sequence

import numpy as np

if TYPE_CHECKING:
  from PIL import Image

FRAME_EXTENSIONS = (".jpg", ".jpeg", ".png")
VERIFY_MODES = ("decode", "markers")
_JPEG_SOI, _JPEG_EOI = b"\xff\xd8", b"\xff\xd9"
_PNG_SIGNATURE, _PNG_IEND = b"\x89PNG\r\n\x1a\n", b"IEND\xaeB`\x82"  # IEND chunk + its CRC


class ClipError(Exception):
  """A clip that cannot be read or is rejected; the message is the reason written to
  skipped.txt and `kind` the category counted in prepare's summary."""
  kind = "unreadable"


def _complete_format(data: bytes) -> str | None:
  """"JPEG"/"PNG" when the bytes start and end with that format's markers, else None."""
  if data[:2] == _JPEG_SOI and data[-2:] == _JPEG_EOI:
    return "JPEG"
  if data[:8] == _PNG_SIGNATURE and data[-8:] == _PNG_IEND:
    return "PNG"
  return None


def _decode_frame(data: bytes, file: str) -> tuple[str, tuple[int, int]]:
  """Fully decodes one frame (JPEGs at 1/8 scale, which still reads the whole entropy-coded
  stream); -> (PIL format, (width, height)). Raises ClipError."""
  from PIL import Image
  try:
    img = Image.open(io.BytesIO(data))
    fmt, size = img.format, img.size
    if fmt == "JPEG":
      img.draft("RGB", (max(1, size[0] // 8), max(1, size[1] // 8)))
    img.load()
  except Exception as e:  # PIL raises OSError, SyntaxError, ValueError ... on bad files
    raise ClipError(f"unreadable frame {file}: {type(e).__name__}: {e}") from None
  return fmt, size


def read_frames_dir(path: str, verify: str = "decode") -> tuple[list[bytes], str, int, int]:
  """Frames folder -> (source bytes sorted by file name, "jpeg"|"png", height, width).

  verify="decode" fully decodes every frame to catch corrupt or truncated files.
  verify="markers" decodes the first frame and checks the others only for complete
  start/end markers (catches truncated and garbage files, ~7x faster; a frame that fails
  the check is decoded before it is rejected). height, width: the first frame's.
  """
  if verify not in VERIFY_MODES:
    raise ValueError(f"verify must be one of {VERIFY_MODES}, got {verify!r}")
  if not os.path.isdir(path):
    raise ClipError(f"frames folder not found: {path}")
  # Lexicographic, as the original's sorted(glob(dir/*.jpg)).
  names = sorted(n for n in os.listdir(path)
                 if os.path.splitext(n)[1].lower() in FRAME_EXTENSIONS)
  if not names:
    raise ClipError(f"no .jpg/.jpeg/.png frames in {path}")
  frames, formats = [], set()
  height = width = 0
  for name in names:
    file = os.path.join(path, name)
    with open(file, "rb") as f:
      data = f.read()
    fmt = _complete_format(data) if (verify == "markers" and frames) else None
    if fmt is None:
      fmt, size = _decode_frame(data, file)
      if not frames:
        width, height = size
    if fmt not in ("JPEG", "PNG"):
      raise ClipError(f"frame {file} is {fmt}, only JPEG and PNG frames are supported")
    formats.add(fmt)
    frames.append(data)
  if len(formats) > 1:
    raise ClipError(f"frames folder {path} mixes JPEG and PNG frames")
  return frames, ("jpeg" if formats == {"JPEG"} else "png"), height, width


def _video_images(path: str) -> Iterator[tuple["Image.Image", float]]:
  """Yields (RGB PIL image, fps) per decoded frame of a video file; raises ClipError."""
  import av
  if not os.path.isfile(path):
    raise ClipError(f"video file not found: {path}")
  count = 0
  try:
    with av.open(path) as container:
      if not container.streams.video:
        raise ClipError(f"{path} has no video stream")
      stream = container.streams.video[0]
      stream.thread_type = "AUTO"
      rate = stream.average_rate or stream.guessed_rate
      fps = float(rate) if rate else 0.0
      for frame in container.decode(stream):
        count += 1
        yield frame.to_image(), fps
  except ClipError:
    raise
  except Exception as e:  # av.error.* and friends
    raise ClipError(f"video {path} does not decode: {type(e).__name__}: {e}") from None
  if not count:
    raise ClipError(f"video {path} has no decodable frames")


def _shrink(img, max_side: int):
  """The PIL image, resized (bilinear) so its longer side is at most max_side (0: as is)."""
  from PIL import Image
  if max_side and max(img.size) > max_side:
    scale = max_side / max(img.size)
    img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))),
                     Image.Resampling.BILINEAR)
  return img


def encode_jpeg(image, quality: int = 95) -> bytes:
  """An RGB PIL image or uint8 array [H, W, 3] -> JPEG bytes."""
  from PIL import Image
  if isinstance(image, np.ndarray):
    image = Image.fromarray(image)
  buf = io.BytesIO()
  image.save(buf, format="JPEG", quality=quality)
  return buf.getvalue()


def crop_image(img, crop: Sequence[int] | None, source: str):
  """The PIL image's rows crop[0]:crop[1], cols crop[2]:crop[3] (None: as is); ClipError when
  the image is smaller than the box."""
  if crop is None:
    return img
  r0, r1, c0, c1 = crop
  if img.height < r1 or img.width < c1:
    raise ClipError(f"{source}: frames are {img.width}x{img.height}, smaller than the crop "
                    f"box rows {r0}:{r1} cols {c0}:{c1}")
  return img.crop((c0, r0, c1, r1))


def fit_image(img, crop: Sequence[int] | None, frame_size: int, source: str):
  """`crop_image`, then (frame_size > 0) PIL bilinear resize to frame_size square, aspect not
  kept: the fine-tuning and evaluation pipelines' own resize, done once."""
  from PIL import Image
  img = crop_image(img, crop, source)
  if frame_size and img.size != (frame_size, frame_size):
    img = img.resize((frame_size, frame_size), Image.Resampling.BILINEAR)
  return img


def read_video(path: str, *, jpeg_quality: int = 95, max_side: int = 0,
               crop: Sequence[int] | None = None, frame_size: int = 0,
               ) -> tuple[list[bytes], int, int, float]:
  """Video file -> (JPEG bytes per frame, height, width, fps), optionally shrunk so that the
  longer side is at most max_side (0 keeps the size), then cropped to rows crop[0]:crop[1],
  cols crop[2]:crop[3] and resized to frame_size square (`fit_image`)."""
  frames = []
  height = width = 0
  fps = 0.0
  for img, fps in _video_images(path):
    img = fit_image(_shrink(img, max_side), crop, frame_size, path)
    frames.append(encode_jpeg(img, jpeg_quality))
    width, height = img.size
  return frames, height, width, fps


def decode_video(path: str, max_side: int = 0) -> tuple[np.ndarray, float]:
  """Video file -> (RGB frames uint8 [T, H, W, 3], fps), shrunk like read_video."""
  images, fps = [], 0.0
  for img, fps in _video_images(path):
    images.append(np.asarray(_shrink(img, max_side)))
  return np.stack(images), fps


def refit_frames(frames: Sequence[bytes], crop: Sequence[int] | None, frame_size: int,
                 jpeg_quality: int, source: str) -> tuple[list[bytes], int, int]:
  """A frames folder's bytes cropped and resized (`fit_image`), re-encoded as JPEG at
  jpeg_quality -> (JPEG bytes per frame, height, width)."""
  from PIL import Image
  out, size = [], (0, 0)
  for data in frames:
    with Image.open(io.BytesIO(data)) as img:
      fitted = fit_image(img.convert("RGB"), crop, frame_size, source)
      out.append(encode_jpeg(fitted, jpeg_quality))
      size = fitted.size
  return out, size[1], size[0]


def decode_frames(frames: Sequence[bytes], source: str = "") -> np.ndarray:
  """Encoded frames (JPEG/PNG bytes) -> RGB uint8 [T, H, W, 3]; every frame must have the
  first one's size. Raises ClipError naming `source`."""
  from PIL import Image
  images = []
  for i, data in enumerate(frames):
    try:
      img = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    except Exception as e:  # PIL raises several unrelated types on bad files
      raise ClipError(f"frame {i} of {source} does not decode: {type(e).__name__}: {e}"
                      ) from None
    if images and img.shape != images[0].shape:
      raise ClipError(f"frame {i} of {source} is {img.shape[1]}x{img.shape[0]}, frame 0 is "
                      f"{images[0].shape[1]}x{images[0].shape[0]}: frames must share one size")
    images.append(img)
  return np.stack(images)


class NoFaceError(ClipError):
  """The face step found the face in too few frames; `report` is its FaceReport dict."""
  kind = "no_face"

  def __init__(self, reason: str, report: dict):
    super().__init__(reason)
    self.report = report


class NotFaceCropError(NoFaceError):
  """--face=auto would align this video, but --crop / --frame_size are set: they apply to
  frames that already are face crops only; `report` holds auto's decision."""
  kind = "not_face_crop"


class AVMismatchError(ClipError):
  """The audio and the video of a clip last noticeably different times."""
  kind = "av_mismatch"


def check_av_durations(num_frames: int, fps: float, num_samples: int, sample_rate: int,
                       tolerance_s: float, source: str) -> None:
  """Raises AVMismatchError when num_frames / fps and num_samples / sample_rate differ by more
  than tolerance_s seconds. Nothing to check without a frame rate (frames folders) or with
  tolerance_s <= 0 (off)."""
  if fps <= 0 or tolerance_s <= 0:
    return
  video_s, audio_s = num_frames / fps, num_samples / sample_rate
  if abs(video_s - audio_s) > tolerance_s:
    raise AVMismatchError(
        f"audio ({audio_s:.2f} s) and video ({video_s:.2f} s, {num_frames} frames at "
        f"{fps:g} fps) of {source} differ by {abs(video_s - audio_s):.2f} s "
        f"(> max_av_mismatch_seconds {tolerance_s:g})")


def clip_frames(source: str) -> np.ndarray:
  """A video file or frames folder -> RGB uint8 [T, H, W, 3]."""
  if os.path.isdir(source):
    return decode_frames(read_frames_dir(source, verify="markers")[0], source)
  return decode_video(source)[0]
