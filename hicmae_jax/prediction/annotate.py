"""The annotated video of one input (mp4 through PyAV): every source frame, with the aligned
face crop's outline (with --face: green where the face was detected, yellow where its box was
held) and the running top class (the mean of the used windows covering the frame) with its
probability; "no face" on frames without a face and where every window covering the frame is
no_face.

H.264 in yuv420p at the source's frame rate (frames cropped to even sizes by at most one pixel
row / column). Audio: a video's own AAC or MP3 track is copied as it is; otherwise (frames +
wav, another codec, or --wav) the 16 kHz soundtrack the model heard is encoded as AAC.
"""
from __future__ import annotations

import fractions
import os
from typing import Iterator

import numpy as np

from hicmae_jax.data.format import schema
from hicmae_jax.data.prepare import video_io
from hicmae_jax.prediction.windows import Prediction

_COPY_AUDIO_CODECS = ("aac", "mp3")
_STATUS_COLOURS = {0: (150, 150, 150), 1: (40, 220, 90), 2: (250, 200, 40)}  # track.py


def _source_frames(path: str) -> Iterator[np.ndarray]:
  """The source's frames as RGB uint8 [H, W, 3], one at a time."""
  if os.path.isdir(path):
    data, _, _, _ = video_io.read_frames_dir(path, verify="markers")
    for encoded in data:
      yield video_io.decode_frames([encoded], path)[0]
    return
  import av
  with av.open(path) as container:
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    for frame in container.decode(stream):
      yield frame.to_ndarray(format="rgb24")


def _copyable_audio(path: str, wav: str):
  """The video's audio stream when it can be copied into an mp4 as it is, else None."""
  if wav or not os.path.isfile(path):
    return None
  import av
  with av.open(path) as container:
    if container.streams.audio and container.streams.audio[0].codec_context.name in \
        _COPY_AUDIO_CODECS:
      return True
  return None


def _fitting_font(pred: Prediction, width: int, size: int):
  """PIL's default font at `size`, smaller when the longest label would not fit the width."""
  from PIL import Image, ImageDraw, ImageFont
  longest = max(pred.names, key=len) + " 100%" if pred.task == "classification" else \
      "  ".join(f"{n} -0.00" for n in pred.names)
  draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
  while True:
    font = ImageFont.load_default(size=size)
    if size <= 6 or draw.textlength(longest, font=font) <= width - 12:
      return font
    size -= 1


def _draw(frame: np.ndarray, pred: Prediction, t: int, font) -> np.ndarray:
  from PIL import Image, ImageDraw
  img = Image.fromarray(frame)
  draw = ImageDraw.Draw(img)
  face = pred.loaded.face
  seen = face is None or (t < len(face.has_face) and bool(face.has_face[t]))
  if face is not None and seen:
    outline = [tuple(p) for p in face.crop_outline(t)]
    width = max(2, round(min(img.size) / 160))
    draw.line(outline + outline[:1], fill=_STATUS_COLOURS.get(int(face.status[t]),
                                                              (150, 150, 150)), width=width)
  scores = pred.window_scores_at(t) if seen else None
  if scores is None:
    text = "no face"
  elif pred.task == "classification":
    top = int(scores.argmax())
    text = f"{pred.names[top]} {scores[top]:.0%}"
  else:
    text = "  ".join(f"{n} {v:.2f}" for n, v in zip(pred.names, scores))
  x0, y0, x1, y1 = draw.textbbox((6, 4), text, font=font)
  draw.rectangle((x0 - 4, y0 - 3, x1 + 4, y1 + 3), fill=(0, 0, 0))
  draw.text((6, 4), text, fill=(255, 255, 255), font=font)
  return np.asarray(img)


def write(pred: Prediction, path: str) -> dict:
  """Writes the annotated mp4 (atomically: a temporary file renamed at the end); -> {frames,
  fps, audio: "copied" | "encoded"}."""
  import av

  loaded = pred.loaded
  source = loaded.source
  height, width = (s - s % 2 for s in loaded.frame_size)
  font = _fitting_font(pred, width, max(12, round(min(height, width) / 18)))
  rate = fractions.Fraction(loaded.fps).limit_denominator(1001)
  copy_audio = _copyable_audio(source.path, source.wav)
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  tmp = os.path.join(directory, f".tmp-{os.getpid()}-{os.path.basename(path)}")
  count = 0
  try:
    with av.open(tmp, "w", format="mp4") as out:
      video = out.add_stream("libx264", rate=rate)
      video.width, video.height, video.pix_fmt = width, height, "yuv420p"
      video.options = {"crf": "20", "preset": "veryfast"}
      inp = av.open(source.path) if copy_audio else None
      try:
        sound = (out.add_stream_from_template(inp.streams.audio[0]) if inp is not None else
                 out.add_stream("aac", rate=schema.AUDIO_SAMPLE_RATE, layout="mono"))
        for t, frame in enumerate(_source_frames(source.path)):
          drawn = _draw(frame[:height, :width], pred, t, font)
          for packet in video.encode(av.VideoFrame.from_ndarray(drawn, format="rgb24")):
            out.mux(packet)
          count += 1
        for packet in video.encode():
          out.mux(packet)
        if inp is not None:
          for packet in inp.demux(inp.streams.audio[0]):
            if packet.dts is None:  # the demuxer's final flush packet
              continue
            packet.stream = sound
            out.mux(packet)
        else:
          wave = schema.audio_to_float(loaded.clip.audio)[None]  # [1, N] float32 planar
          chunk = av.AudioFrame.from_ndarray(np.ascontiguousarray(wave), format="fltp",
                                             layout="mono")
          chunk.sample_rate, chunk.pts = schema.AUDIO_SAMPLE_RATE, 0
          for packet in sound.encode(chunk):
            out.mux(packet)
          for packet in sound.encode():
            out.mux(packet)
      finally:
        if inp is not None:
          inp.close()
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise
  return {"frames": count, "fps": float(rate), "audio": "copied" if copy_audio else "encoded"}
