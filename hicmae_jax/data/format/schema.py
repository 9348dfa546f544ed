"""The clip record format: the single source of truth for what an ArrayRecord shard holds.

One record = one clip, serialised with msgpack as a flat dict:

| field          | type            | meaning                                                   |
|----------------|-----------------|-----------------------------------------------------------|
| schema_version | int             | SCHEMA_VERSION at write time                              |
| clip_id        | str             | unique id within the split (e.g. the frames folder name)  |
| frames         | list[bytes]     | encoded frames (JPEG or PNG), in temporal order           |
| frame_format   | str             | "jpeg" or "png" (source bytes are kept, never re-encoded) |
| height, width  | int             | stored frame resolution                                   |
| fps            | float           | frames per second (0.0 when unknown, e.g. frame folders)  |
| audio          | bytes           | 16 kHz mono PCM, little-endian int16                      |
| sample_rate    | int             | always AUDIO_SAMPLE_RATE                                  |
| num_frames     | int             | len(frames)                                               |
| num_samples    | int             | audio samples                                             |
| label          | int             | class index, -1 when the clip has none (pretraining)      |
| targets        | list[float]     | regression targets (empty for classification)             |
| source_video   | str             | the frames folder or video file it came from              |
| source_audio   | str             | the wav it came from ("" when taken from the video)       |

Each split folder holds `shard-00000-of-00004.array_record` files plus `dataset_info.json`
(see `DatasetInfo`, which also records each shard's byte size and SHA-256: see integrity.py).
Reading never executes code: msgpack only rebuilds plain values. A split folder may be local or
a gs:// URL.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Sequence

import msgpack
import numpy as np

from hicmae_jax import paths
from hicmae_jax.data.format import integrity

SCHEMA_VERSION = 1
AUDIO_SAMPLE_RATE = 16000
FRAME_FORMATS = ("jpeg", "png")
INFO_FILENAME = "dataset_info.json"
SHARD_PATTERN = "shard-{index:05d}-of-{count:05d}.array_record"


class RecordError(ValueError):
  """A record that cannot be decoded or fails validation; the message names the field."""


@dataclasses.dataclass
class Clip:
  """One audio-visual clip as stored in a shard (frames stay encoded)."""
  clip_id: str
  frames: list[bytes]
  frame_format: str
  height: int
  width: int
  audio: np.ndarray  # [num_samples] int16 at AUDIO_SAMPLE_RATE
  label: int = -1
  targets: Sequence[float] = ()
  fps: float = 0.0
  source_video: str = ""
  source_audio: str = ""

  @property
  def num_frames(self) -> int:
    return len(self.frames)

  @property
  def num_samples(self) -> int:
    return int(self.audio.shape[0])


def encode_clip(clip: Clip) -> bytes:
  """Serialises a Clip to record bytes; validates it first so bad clips never reach a shard."""
  audio = np.asarray(clip.audio)
  if audio.dtype != np.int16 or audio.ndim != 1:
    raise RecordError(
        f"clip {clip.clip_id!r}: field 'audio' must be a 1-D int16 array, got "
        f"{audio.dtype} {audio.shape}")
  if clip.frame_format not in FRAME_FORMATS:
    raise RecordError(f"clip {clip.clip_id!r}: field 'frame_format' must be one of "
                      f"{FRAME_FORMATS}, got {clip.frame_format!r}")
  if not clip.frames:
    raise RecordError(f"clip {clip.clip_id!r}: field 'frames' is empty")
  if audio.shape[0] == 0:
    raise RecordError(f"clip {clip.clip_id!r}: field 'audio' is empty")
  record = {
      "schema_version": SCHEMA_VERSION,
      "clip_id": str(clip.clip_id),
      "frames": [bytes(f) for f in clip.frames],
      "frame_format": clip.frame_format,
      "height": int(clip.height),
      "width": int(clip.width),
      "fps": float(clip.fps),
      "audio": audio.astype("<i2").tobytes(),
      "sample_rate": AUDIO_SAMPLE_RATE,
      "num_frames": len(clip.frames),
      "num_samples": int(audio.shape[0]),
      "label": int(clip.label),
      "targets": [float(t) for t in clip.targets],
      "source_video": str(clip.source_video),
      "source_audio": str(clip.source_audio),
  }
  return msgpack.packb(record, use_bin_type=True)


_REQUIRED = {
    "schema_version": int, "clip_id": str, "frames": list, "frame_format": str,
    "height": int, "width": int, "fps": float, "audio": bytes, "sample_rate": int,
    "num_frames": int, "num_samples": int, "label": int, "targets": list,
    "source_video": str, "source_audio": str,
}


def decode_clip(data: bytes) -> Clip:
  """Parses and validates record bytes. Raises RecordError naming the bad field."""
  try:
    record = msgpack.unpackb(data, raw=False, strict_map_key=True)
  except Exception as e:  # msgpack raises several unrelated types on garbage
    raise RecordError(f"record is not valid msgpack ({type(e).__name__}: {e})") from None
  if not isinstance(record, dict):
    raise RecordError(f"record is a {type(record).__name__}, expected a dict")
  version = record.get("schema_version")
  if version != SCHEMA_VERSION:
    raise RecordError(f"field 'schema_version' is {version!r}, this code reads "
                      f"{SCHEMA_VERSION}: re-run `python -m hicmae_jax.data.prepare`")
  for name, kind in _REQUIRED.items():
    if name not in record:
      raise RecordError(f"field {name!r} is missing")
    value = record[name]
    if kind is float and isinstance(value, int):
      value = float(value)
    if not isinstance(value, kind):
      raise RecordError(f"field {name!r} is {type(value).__name__}, expected {kind.__name__}")
  if record["frame_format"] not in FRAME_FORMATS:
    raise RecordError(f"field 'frame_format' is {record['frame_format']!r}")
  if not record["frames"] or len(record["frames"]) != record["num_frames"]:
    raise RecordError(f"field 'frames' holds {len(record['frames'])} frames, "
                      f"'num_frames' says {record['num_frames']}")
  if not all(isinstance(f, bytes) and f for f in record["frames"]):
    raise RecordError("field 'frames' holds an empty or non-bytes frame")
  if len(record["audio"]) != 2 * record["num_samples"] or record["num_samples"] == 0:
    raise RecordError(f"field 'audio' holds {len(record['audio'])} bytes, expected "
                      f"2 x num_samples = {2 * record['num_samples']} (> 0)")
  audio = np.frombuffer(record["audio"], dtype="<i2").astype(np.int16)
  return Clip(
      clip_id=record["clip_id"], frames=list(record["frames"]),
      frame_format=record["frame_format"], height=record["height"], width=record["width"],
      audio=audio, label=record["label"], targets=tuple(float(t) for t in record["targets"]),
      fps=float(record["fps"]), source_video=record["source_video"],
      source_audio=record["source_audio"])


def audio_to_float(audio: np.ndarray) -> np.ndarray:
  """int16 PCM [N] -> float32 waveform in [-1, 1) (x / 32768, as the original reads wavs)."""
  return np.asarray(audio, dtype=np.float32) / 32768.0


@dataclasses.dataclass
class DatasetInfo:
  """The `dataset_info.json` beside a split's shards.

  shard_bytes / shard_sha256: per shard (in `shards` order), written by prepare (or by
  `verify --record` for splits prepared before); empty in older files, which still load."""
  name: str
  split: str
  num_clips: int
  shards: list[str]
  class_names: list[str] = dataclasses.field(default_factory=list)
  num_targets: int = 0  # > 0 for regression datasets
  frame_height: int = 0
  frame_width: int = 0
  num_skipped: int = 0
  schema_version: int = SCHEMA_VERSION
  extra: dict[str, Any] = dataclasses.field(default_factory=dict)
  shard_bytes: list[int] = dataclasses.field(default_factory=list)
  shard_sha256: list[str] = dataclasses.field(default_factory=list)

  def save(self, split_dir: str) -> None:
    text = json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)
    path = integrity.join(split_dir, INFO_FILENAME)
    if paths.is_remote(split_dir):
      paths.as_path(path).write_text(text)  # one object upload: readers see all of it or none
      return
    with open(path + ".tmp", "w") as f:
      f.write(text)
    os.replace(path + ".tmp", path)

  @classmethod
  def load(cls, split_dir: str, check_shards: bool = True) -> "DatasetInfo":
    """Reads `<split_dir>/dataset_info.json`.

    check_shards: also check that every shard exists and has its recorded size (one stat
    each; FileNotFoundError / integrity.ShardError name the shard and the fix), or warn once
    when the split records no sizes. Off only for tools that repair the file itself."""
    path = integrity.join(split_dir, INFO_FILENAME)
    text = _read_text(path)
    if text is None:
      raise FileNotFoundError(
          f"{path} not found: {split_dir!r} is not a prepared split. Create it with "
          f"`python -m hicmae_jax.data.prepare` (or hicmae_jax.data.synthetic for demo data).")
    try:
      raw = json.loads(text)
    except ValueError as e:
      raise RecordError(f"{path} is not valid JSON ({e}): copy it again, or re-run the "
                        f"prepare command") from None
    if raw.get("schema_version") != SCHEMA_VERSION:
      raise RecordError(f"{path}: schema_version {raw.get('schema_version')!r}, this code "
                        f"reads {SCHEMA_VERSION}: re-run the prepare command")
    known = {f.name for f in dataclasses.fields(cls)}
    info = cls(**{k: v for k, v in raw.items() if k in known})
    if check_shards:
      info.shard_paths(split_dir)
    return info

  def shard_paths(self, split_dir: str) -> list[str]:
    """Shard paths in order, after checking each exists and has its recorded size (see
    integrity.check_sizes); warns once per split that records no sizes."""
    if not self.shard_bytes:
      integrity.warn_unrecorded(split_dir)
    return integrity.check_sizes(split_dir, self.shards, self.shard_bytes)


def _read_text(path: str) -> str | None:
  """The file's text, None when it does not exist; a remote read that fails says why."""
  if not paths.is_remote(path):
    if not os.path.exists(path):
      return None
    with open(path) as f:
      return f.read()
  try:
    return paths.as_path(path).read_text()
  except FileNotFoundError:
    return None
  except Exception as e:  # noqa: BLE001 - gcsfs/auth raise many types; one line names the path
    raise ValueError(f"cannot read {path} ({type(e).__name__}: {' '.join(str(e).split())}); "
                     f"check the bucket path and this machine's credentials (`gcloud auth "
                     f"application-default login`, or the VM's service account)") from None
