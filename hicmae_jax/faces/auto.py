"""--face=auto: are a video's frames already face crops (use them as they are) or a scene (run
the face step)? Decided from a few sampled frames; the same look warns for --face=none.

Rule: SAMPLE_FRAMES frames spread over the clip; in each, the main face is the largest box the
detector finds. A frame looks like an aligned crop when that box spans at least
MIN_FACE_SPAN of the frame's width and of its height, and its centre lies within
MAX_CENTRE_OFFSET of the frame's width (height) of the frame's centre. The frames are used as
they are when more than half of the sampled frames look like crops; otherwise the face step
runs. Measured with dlib's HOG detector on three public-domain portrait photographs (one is
tests/data/face_portrait_640x360.jpg; 2026-12-07): its box spans 0.78-0.93 of a crop aligned
at face_scale 0.7 (OpenFace's framing), 0.45-0.65 of one at 0.35 (a face half the crop), and
0.16-0.37 of the photographs as taken, whose faces sit 0.24-0.33 of the height above the
centre.

Everything here is pure but `inspect`, which calls the detector it is given.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import numpy as np

SAMPLE_FRAMES = 5
MIN_FACE_SPAN = 0.4
MAX_CENTRE_OFFSET = 0.15
# A face that fills the frame may leave the detector's window no context: frames without any
# detection are looked at again inside an edge-replicated margin of this fraction.
PAD_FRACTION = 0.15
AS_IS, ALIGN = "as_is", "align"
RULE = (f"frames used as they are when the largest face box spans >= {MIN_FACE_SPAN:g} of the "
        f"frame's width and height, centred within {MAX_CENTRE_OFFSET:g}, in more than half "
        f"of {SAMPLE_FRAMES} sampled frames; else the face step aligns them")

Detect = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]  # frame -> (boxes, scores)


@dataclasses.dataclass(frozen=True)
class FrameLook:
  """The main face of one sampled frame: faces found, the box's span (the smaller of its
  width / frame width and height / frame height, 0 without a face) and centre offset (the
  larger of |dx| / width and |dy| / height)."""
  frame: int
  faces: int
  span: float
  offset: float

  @property
  def crop_like(self) -> bool:
    return self.faces > 0 and self.span >= MIN_FACE_SPAN and self.offset <= MAX_CENTRE_OFFSET


@dataclasses.dataclass(frozen=True)
class Decision:
  """choice: AS_IS or ALIGN; reason: one sentence; looks: the sampled frames."""
  choice: str
  reason: str
  looks: tuple[FrameLook, ...] = ()

  def to_dict(self) -> dict:
    return {"choice": self.choice, "reason": self.reason, "rule": RULE,
            "sampled": [{"frame": k.frame, "faces": k.faces, "span": round(k.span, 3),
                         "offset": round(k.offset, 3), "crop_like": k.crop_like}
                        for k in self.looks]}


def sample_indices(num_frames: int, count: int = SAMPLE_FRAMES) -> list[int]:
  """`count` frame indices spread evenly over [0, num_frames), the centres of equal parts."""
  count = min(count, num_frames)
  return [int((i + 0.5) * num_frames / count) for i in range(count)]


def look(frame: int, boxes: np.ndarray, height: int, width: int) -> FrameLook:
  """The largest of boxes [K, 4] (x0, y0, x1, y1, pixels) measured against the frame."""
  boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
  if not len(boxes):
    return FrameLook(frame, 0, 0.0, 0.0)
  x0, y0, x1, y1 = boxes[np.argmax((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))]
  span = min((min(x1, width) - max(x0, 0)) / width, (min(y1, height) - max(y0, 0)) / height)
  offset = max(abs((x0 + x1) / 2 - width / 2) / width, abs((y0 + y1) / 2 - height / 2) / height)
  return FrameLook(frame, len(boxes), max(float(span), 0.0), float(offset))


def decide(looks: Sequence[FrameLook]) -> Decision:
  """The rule of the module docstring over the sampled frames' looks."""
  looks = tuple(looks)
  n, crops = len(looks), sum(k.crop_like for k in looks)
  if n and crops * 2 > n:
    return Decision(AS_IS, f"the main face fills the frame like an aligned crop in {crops} of "
                           f"{n} sampled frames", looks)
  found = [k for k in looks if k.faces]
  if not found:
    return Decision(ALIGN, f"no face found in the {n} sampled frames", looks)
  widest = max(k.span for k in found)
  return Decision(ALIGN, f"the main face is small or off-centre in {n - crops} of {n} sampled "
                         f"frames (its box spans at most {widest:.2f} of the frame; an aligned "
                         f"crop's spans >= {MIN_FACE_SPAN:g})", looks)


def frames_folder() -> Decision:
  """Frames folders are the datasets' layout of existing crops: used as they are, unlooked."""
  return Decision(AS_IS, "a frames folder (the datasets' layout of existing face crops): "
                         "used as it is")


def _detect_with_margin(frame: np.ndarray, detect: Detect) -> np.ndarray:
  """Boxes [K, 4] in the frame's pixels; a frame without any is tried again with a margin."""
  boxes, _ = detect(frame)
  if len(boxes):
    return boxes
  pad = int(round(PAD_FRACTION * max(frame.shape[:2])))
  padded = np.pad(frame, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
  boxes, _ = detect(padded)
  return np.asarray(boxes, np.float64).reshape(-1, 4) - pad


def inspect(frames: Sequence[np.ndarray], detect: Detect,
            indices: Sequence[int] | None = None) -> Decision:
  """frames: the clip's frames [T, H, W, 3] uint8, or only the sampled ones when `indices`
  (their numbers in the clip) is given. detect: the face step's detector (FaceAligner.detect)."""
  if indices is None:
    indices = sample_indices(len(frames))
    frames = [frames[i] for i in indices]
  looks = [look(i, _detect_with_margin(np.ascontiguousarray(f), detect), *f.shape[:2])
           for i, f in zip(indices, frames)]
  return decide(looks)


def none_warning(decision: Decision, source: str) -> str | None:
  """The one warning line (without a "warning:" prefix) for --face=none on frames that are not
  face crops, else None."""
  if decision.choice == AS_IS:
    return None
  return (f"--face=none on {source}: {decision.reason}; the model was trained on "
          f"aligned face crops and will read the whole frame as one: pass --face=dlib (or "
          f"leave --face=auto) to align the face")


def summarise(decisions: dict[str, dict], mode: str) -> dict:
  """Per-clip Decision.to_dict() (clip id -> dict) -> the split's record: mode, rule, counts
  per choice, and each clip's choice and reason."""
  counts = {AS_IS: 0, ALIGN: 0}
  for d in decisions.values():
    counts[d["choice"]] += 1
  return {"mode": mode, "rule": RULE, "clips_as_is": counts[AS_IS],
          "clips_aligned": counts[ALIGN],
          "per_clip": {k: {"choice": decisions[k]["choice"], "reason": decisions[k]["reason"]}
                       for k in sorted(decisions)}}
