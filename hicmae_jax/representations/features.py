"""Clip features from a checkpoint: load its weights, cut clips into windows, run the encoders.

The clip feature is the fine-tuning model's representation (`FinetuneModel.features`): the
hierarchical feature fusion (HFF) of each modality's block outputs, the mean-pooled fusion
encoder outputs, concatenated and LayerNormed ([F] = [4 D] for the audio-visual model). Any
checkpoint gives it:

  * fine-tuned (ours or converted): every tensor, including the learnt layer weights and norm;
  * pre-trained (ours or converted): the encoders and the fusion encoder by name (the names
    line up, as for `config.init_from`); the fine-tuning-only pieces keep their initial values,
    which are constants: layer weights uniform (HFF = plain mean over blocks) and an identity
    LayerNorm (the head is not used);
  * random: the pre-training model's initialisation (the starting point of pre-training), the
    baseline of the learning check.

Windows: by default one view per clip, the validation sampler of fine-tuning and evaluation
(`segment_frame_indices`: the middle num_frames x sampling_rate frames of a long clip). With
`window_seconds` > 0 a clip is cut into windows [s, s + window) every `stride_seconds`, the
last one aligned to the clip's end so no frame is left out; each window gives num_frames frames
evenly spread over it and the audio of the same span. A window of num_frames x sampling_rate /
fps seconds (2.56 s for 16 frames at stride 4 and 25 fps) shows the model the frame rate it was
trained at.

Output folder (`write_features` / `load_features`):
  features.npy        float32 [N, F]      one row per window (per clip without windows)
  <piece>.npy         with per_layer: video_layers / audio_layers [N, L, D] (every block's
                      LayerNormed output, mean-pooled), video_hff, audio_hff, fused_video,
                      fused_audio [N, D]
  metadata.json       rows [{clip_id, label, window, start_frame, end_frame, start_seconds,
                      end_seconds, ...}], class_names, the checkpoint, the options; written last
"""
from __future__ import annotations

import dataclasses
import io
import json
import logging
import os
import queue
import threading
import time
from typing import Any, Callable, Iterable, Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from hicmae_jax import experiments, io_utils, paths
from hicmae_jax.checkpoints import weights as weights_lib
from hicmae_jax.data import clip_loader, sampling, schema, split_reader, stages, video_io
from hicmae_jax.data.options import AudioOptions, VideoOptions
from hicmae_jax.data.split_file import SplitEntry

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
METADATA_FILENAME = "metadata.json"
FEATURES_FILENAME = "features.npy"
FEATURE_KEY = "feature"
PIECES = ("video_hff", "audio_hff", "fused_video", "fused_audio", "video_layers",
          "audio_layers")


# ------------------------------------------------------------------------------- features --

class FeatureExtractor:
  """Runs the fine-tuning model's feature path with given weights.

  `__call__(video [B, T, S, S, 3], audio [B, A, M])` (normalised inputs, numpy) -> {name:
  float32 numpy [B, ...]}: "feature" [B, F] and, with per_layer, the pieces of PIECES that the
  model has. One compile per batch shape."""

  def __init__(self, weights: weights_lib.Weights, *, per_layer: bool = False, seed: int = 0):
    self.weights = weights
    self.model_cfg = weights_lib.finetune_model_config(weights.model)
    view, self.params = weights_lib.bind(weights, seed=seed)
    self.per_layer = per_layer

    @jax.jit
    def run(params, video, audio):
      out = view.merge(params).features(video, audio, deterministic=True,
                                        return_layers=per_layer)
      keep = (FEATURE_KEY,) + (PIECES if per_layer else ())
      return {k: v.astype(jnp.float32) for k, v in out.items() if k in keep}
    self._run = run

  def __call__(self, video: np.ndarray, audio: np.ndarray) -> dict[str, np.ndarray]:
    m = self.model_cfg
    want_v = (m.num_frames, m.input_size, m.input_size, 3)
    want_a = (m.audio_frames, m.audio_mel_bins)
    if tuple(video.shape[1:]) != want_v or tuple(audio.shape[1:]) != want_a:
      raise ValueError(f"inputs video {video.shape[1:]} / audio {audio.shape[1:]} do not fit "
                       f"the model (video {want_v}, audio {want_a}): build the inputs with "
                       f"ClipOptions.for_model(model config)")
    out = self._run(self.params, video, audio)
    return {k: np.asarray(v) for k, v in out.items()}


# ----------------------------------------------------------------------------------- inputs --

@dataclasses.dataclass(frozen=True)
class ClipOptions:
  """How clips become model inputs (the sizes must match the model; see `for_model`)."""
  num_frames: int = 16
  sampling_rate: int = 4
  input_size: int = 160
  audio_frames: int = 256
  num_mel_bins: int = 128
  window_seconds: float = 0.0  # 0: one view per clip (the validation sampler)
  stride_seconds: float = 0.0  # 0: the window length (windows side by side)
  default_fps: float = 25.0    # for clips without a frame rate (frames folders)

  @classmethod
  def for_model(cls, model_cfg, *, sampling_rate: int = 4, **kw) -> "ClipOptions":
    return cls(num_frames=model_cfg.num_frames, sampling_rate=sampling_rate,
               input_size=model_cfg.input_size, audio_frames=model_cfg.audio_frames,
               num_mel_bins=model_cfg.audio_mel_bins, **kw)

  def validate(self) -> None:
    if self.window_seconds < 0 or self.stride_seconds < 0:
      raise ValueError(f"window_seconds={self.window_seconds} and stride_seconds="
                       f"{self.stride_seconds} must be >= 0")
    if self.stride_seconds and not self.window_seconds:
      raise ValueError("stride_seconds needs window_seconds > 0")
    if self.default_fps <= 0:
      raise ValueError(f"fps={self.default_fps} must be > 0")


@dataclasses.dataclass(frozen=True)
class Window:
  """Frames [start_frame, end_frame) of a clip; frame_ids [num_frames] are the model's frames."""
  index: int
  start_frame: int
  end_frame: int
  frame_ids: np.ndarray


def clip_windows(num_available: int, fps: float, opts: ClipOptions) -> list[Window]:
  """The windows of a clip of `num_available` frames at `fps` (see the module docstring)."""
  n = int(num_available)
  if n < 1:
    raise ValueError("a clip without frames has no windows")
  if opts.window_seconds <= 0:
    ids, (f0, _) = sampling.segment_frame_indices(n, num_frames=opts.num_frames,
                                                  sampling_rate=opts.sampling_rate)
    end = min(f0 + opts.num_frames * opts.sampling_rate, n)
    return [Window(0, f0, end, ids)]
  length = max(1, int(round(opts.window_seconds * fps)))
  stride = max(1, int(round((opts.stride_seconds or opts.window_seconds) * fps)))
  starts = list(range(0, max(n - length, 0) + 1, stride))
  if starts[-1] + length < n:
    starts.append(n - length)  # the tail: a last window ending at the clip's end
  windows = []
  for k, s in enumerate(starts):
    e = min(s + length, n)
    ids = s + np.round(np.linspace(0, e - s - 1, opts.num_frames)).astype(np.int64)
    windows.append(Window(k, s, e, ids))
  return windows


def clip_views(clip: schema.Clip, opts: ClipOptions) -> Iterator[tuple[dict, np.ndarray,
                                                                       np.ndarray]]:
  """Yields (row, video float32 [T, S, S, 3], audio float32 [A, M]) per window of a clip.

  The evaluation stages (`data/stages.py`): frames PIL bilinear to S x S and normalised;
  audio: the window's span by relative position, Kaldi fbank, no augmentation. Frames are
  decoded per window, so a long video never sits decoded in memory."""
  fps = clip.fps if clip.fps > 0 else opts.default_fps
  n = clip.num_frames
  wave = schema.audio_to_float(clip.audio)
  video_opts = VideoOptions(num_frames=opts.num_frames, sampling_rate=opts.sampling_rate,
                            input_size=opts.input_size)
  audio_opts = AudioOptions(audio_frames=opts.audio_frames, num_mel_bins=opts.num_mel_bins,
                            magnitude=False, roll=False)
  for w in clip_windows(n, fps, opts):
    view = stages.View(w.frame_ids, (w.start_frame, min(w.end_frame, n - 1)))
    try:
      video = stages.eval_video(stages.view_frames(clip, [view]), view, video_opts)
      audio = stages.audio_input(clip, wave, view, None, audio_opts)
    except Exception as e:  # noqa: BLE001 - name the clip and window, keep the cause
      raise ValueError(f"clip {clip.clip_id!r} window {w.index} (frames {w.start_frame}:"
                       f"{w.end_frame}): {type(e).__name__}: {e}") from e
    row = {"clip_id": clip.clip_id, "label": int(clip.label), "window": w.index,
           "start_frame": w.start_frame, "end_frame": w.end_frame,
           "start_seconds": round(w.start_frame / fps, 4),
           "end_seconds": round(w.end_frame / fps, 4)}
    if len(clip.targets):
      row["targets"] = [float(t) for t in clip.targets]
    yield row, np.asarray(video, np.float32), np.asarray(audio, np.float32)


def split_clips(split_dir: str, limit: int = 0) -> Iterator[schema.Clip]:
  """The clips of a prepared split in order (the first `limit` when > 0)."""
  for i, clip in enumerate(split_reader.iterate_clips(split_dir)):
    if limit and i >= limit:
      return
    yield clip


def raw_clip(*, video: str = "", frames_dir: str = "", wav: str = "", label: int = -1,
             clip_id: str = "", face=None, face_mode: str = "") -> schema.Clip:
  """One clip from raw files: a video file (its own audio track unless `wav` is given) or a
  frames folder with a wav. Uses prepare's reader (clip_loader), so it is read exactly as
  `prepare` would (face, face_mode: as raw_clip_with_face)."""
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
    clip, report = clip_loader.load_clip_with_report(
        entry, face=face, face_auto=face is not None and face_mode == "auto")
  except video_io.ClipError as e:
    raise ValueError(str(e)) from None
  report = dict(report or {})
  choice = report.pop("auto", None)
  if choice is None and face_mode == "none":
    decision = clip_loader.check_face_none(clip, source)
    choice = decision.to_dict() if decision is not None else None
  if choice is None and (face is not None or face_mode):
    choice = {"choice": "align" if face is not None else "as_is",
              "reason": f"--face={face_mode or face.detector}"}
  if choice is None:
    return clip, None
  return clip, {"mode": face_mode or ("dlib" if face is not None else "none"), **choice,
                "face": report or None}


# ---------------------------------------------------------------------------------- running --

def _batches(views: Iterable[tuple[dict, np.ndarray, np.ndarray]], batch_size: int
             ) -> Iterator[tuple[list[dict], np.ndarray, np.ndarray]]:
  """Groups views into batches of exactly batch_size (the last one padded with copies of its
  last view, so one compiled shape serves all); rows lists only the real ones."""
  rows, videos, audios = [], [], []
  for row, video, audio in views:
    rows.append(row)
    videos.append(video)
    audios.append(audio)
    if len(rows) == batch_size:
      yield rows, np.stack(videos), np.stack(audios)
      rows, videos, audios = [], [], []
  if rows:
    pad = batch_size - len(rows)
    yield rows, np.stack(videos + videos[-1:] * pad), np.stack(audios + audios[-1:] * pad)


def _prefetch(iterator: Iterator, size: int = 2) -> Iterator:
  """Runs `iterator` in a background thread, `size` items ahead (decoding and fbank overlap
  the model); its exceptions are re-raised here."""
  q: queue.Queue = queue.Queue(maxsize=size)
  done = object()
  stop = threading.Event()

  def work():
    try:
      for item in iterator:
        while not stop.is_set():
          try:
            q.put(("item", item), timeout=0.1)
            break
          except queue.Full:
            continue
        if stop.is_set():
          return
      q.put(("done", done))
    except BaseException as e:  # noqa: BLE001 - handed to the consumer
      q.put(("error", e))

  thread = threading.Thread(target=work, daemon=True)
  thread.start()
  try:
    while True:
      kind, value = q.get()
      if kind == "done":
        return
      if kind == "error":
        raise value
      yield value
  finally:
    stop.set()


# What `extract` runs on a batch of windows: video [B, T, S, S, 3], audio [B, A, M] (numpy,
# normalised) -> {name: numpy [B, ...]}. A FeatureExtractor is one, and so is prediction's
# Predictor (class scores or regression outputs).
WindowFn = Callable[[np.ndarray, np.ndarray], dict[str, np.ndarray]]


def extract(extractors: dict[str, WindowFn], clips: Iterable[schema.Clip],
            opts: ClipOptions, *, batch_size: int = 32
            ) -> tuple[dict[str, dict[str, np.ndarray]], list[dict]]:
  """Runs every extractor (a FeatureExtractor, a Predictor, ...: any WindowFn) over the
  windows of `clips` (inputs are built once for all).

  Returns ({extractor name: {array name: [N, ...]}}, rows [N])."""
  opts.validate()
  if batch_size < 1:
    raise ValueError(f"batch_size={batch_size} must be >= 1")
  views = (v for clip in clips for v in clip_views(clip, opts))
  outs: dict[str, dict[str, list]] = {name: {} for name in extractors}
  rows: list[dict] = []
  t0 = time.time()
  for batch_rows, video, audio in _prefetch(_batches(views, batch_size)):
    n = len(batch_rows)
    for name, fn in extractors.items():
      for key, value in fn(video, audio).items():
        outs[name].setdefault(key, []).append(value[:n])
    rows.extend(batch_rows)
    if len(rows) % (20 * batch_size) < n:
      log.info("features: %d windows (%.1f windows/s)", len(rows),
               len(rows) / max(time.time() - t0, 1e-9))
  if not rows:
    raise ValueError("no clip to extract features from (empty split?)")
  arrays = {name: {k: np.concatenate(v) for k, v in d.items()} for name, d in outs.items()}
  return arrays, rows


# ------------------------------------------------------------------------------------ files --

def write_features(output_dir: str, arrays: dict[str, np.ndarray], rows: Sequence[dict],
                   meta: dict[str, Any]) -> None:
  """features.npy (arrays["feature"]), <name>.npy for the other arrays, metadata.json last
  (its presence marks a complete export). output_dir may be in a bucket (gs://...)."""
  if FEATURE_KEY not in arrays:
    raise ValueError(f"arrays lack {FEATURE_KEY!r}: {sorted(arrays)}")
  for name, value in arrays.items():
    if value.shape[0] != len(rows):
      raise ValueError(f"array {name} has {value.shape[0]} rows, metadata {len(rows)}")
  paths.makedirs(output_dir)
  meta_path = os.path.join(output_dir, METADATA_FILENAME)
  paths.remove(meta_path)  # the folder is being rewritten: not complete until the end
  files = {}
  for name, value in arrays.items():
    fname = FEATURES_FILENAME if name == FEATURE_KEY else f"{name}.npy"
    array = np.asarray(value, np.float32)
    io_utils.atomic_write(os.path.join(output_dir, fname), lambda f, a=array: np.save(f, a))
    files[name] = {"file": fname, "shape": list(value.shape)}
  doc = {"format_version": FORMAT_VERSION, "num_rows": len(rows), "arrays": files,
         **meta, "rows": list(rows)}
  text = json.dumps(doc, indent=1, default=str)
  io_utils.atomic_write(meta_path, lambda f: f.write(text.encode("utf-8")))


@dataclasses.dataclass
class FeatureSet:
  """An exported features folder: features [N, F], labels [N] (-1 = none), clip_ids [N]."""
  directory: str
  features: np.ndarray
  labels: np.ndarray
  clip_ids: list[str]
  rows: list[dict]
  meta: dict[str, Any]

  @property
  def class_names(self) -> list[str]:
    names = list(self.meta.get("class_names") or [])
    if not names and (self.labels >= 0).any():
      names = [str(i) for i in range(int(self.labels.max()) + 1)]
    return names

  def array(self, name: str) -> np.ndarray:
    files = self.meta["arrays"]
    if name not in files:
      raise KeyError(f"{self.directory} has no {name!r} array (has {sorted(files)}); export "
                     f"with --per_layer for the per-layer pieces")
    return _load_npy(os.path.join(self.directory, files[name]["file"]))


def _load_npy(path: str) -> np.ndarray:
  return np.load(io.BytesIO(paths.read_bytes(path)))


def load_features(directory: str) -> FeatureSet:
  """Reads a folder written by `write_features`; clear errors for unfinished or foreign ones."""
  path = os.path.join(directory, METADATA_FILENAME)
  if not paths.isdir(directory):
    raise FileNotFoundError(f"features folder {directory!r} not found: create it with "
                            f"`python -m hicmae_jax.tools.export_features`")
  if not paths.exists(path):
    raise FileNotFoundError(f"{path} not found: {directory!r} is not a finished feature export "
                            f"(re-run `python -m hicmae_jax.tools.export_features`)")
  meta = io_utils.read_json(path)
  if meta.get("format_version") != FORMAT_VERSION:
    raise ValueError(f"{path}: format_version {meta.get('format_version')!r}, this code reads "
                     f"{FORMAT_VERSION}")
  features = _load_npy(os.path.join(directory, meta["arrays"][FEATURE_KEY]["file"]))
  rows = meta["rows"]
  if features.shape[0] != len(rows):
    raise ValueError(f"{directory}: features.npy has {features.shape[0]} rows, metadata "
                     f"{len(rows)}")
  return FeatureSet(directory, features, np.array([r["label"] for r in rows], np.int64),
                    [r["clip_id"] for r in rows], rows, meta)


# ---------------------------------------------------------------------------------- command --

def export_features(*, output_dir: str, checkpoint: str = "", step: int | None = None,
                    random_init: bool = False, config=None, split_dir: str = "",
                    video: str = "", frames_dir: str = "", wav: str = "", label: int = -1,
                    clip_id: str = "", window_seconds: float = 0.0,
                    stride_seconds: float = 0.0, fps: float = 25.0, per_layer: bool = False,
                    batch_size: int = 0, limit: int = 0, face=None,
                    face_mode: str = "") -> dict:
  """`python -m hicmae_jax.tools.export_features` as a function (its flags are the arguments;
  face, face_mode: of a raw clip, see raw_clip_with_face); writes the folder and returns a
  summary."""
  t0 = time.time()
  if bool(split_dir) + bool(video or frames_dir) != 1:
    raise ValueError("give one input: --split_dir=<prepared split>, or --video=<file> / "
                     "--frames_dir=<folder> --wav=<file>")
  if random_init:
    if checkpoint:
      raise ValueError("--random_init and --checkpoint exclude each other")
    if config is None:
      raise ValueError("--random_init needs --config (its model and seed)")
    experiment = experiments.experiment_for_kind(config, "pretrain")
    weights = weights_lib.random_weights(experiment.model, experiment.seed)
  else:
    weights = weights_lib.load_weights(checkpoint, step, model_hint=config)
    experiment = (experiments.experiment_for_kind(config, weights.kind) if config is not None
                  else None)
  train_config = weights.source.pop("config", None) or {}
  sampling_rate = (experiment.data.sampling_rate if experiment is not None else
                   train_config.get("data", {}).get("sampling_rate", 4))
  if not batch_size:
    batch_size = (experiment.eval_batch_size if experiment is not None
                  else train_config.get("eval_batch_size", 32))
  opts = ClipOptions.for_model(weights.model, sampling_rate=sampling_rate,
                               window_seconds=window_seconds, stride_seconds=stride_seconds,
                               default_fps=fps)
  opts.validate()
  class_names: list[str] = []
  if split_dir:
    info = schema.DatasetInfo.load(split_dir)  # names the folder when it is not a split
    class_names = list(info.class_names)
    clips = split_clips(split_dir, limit)
    source = {"split_dir": os.path.abspath(split_dir), "dataset": info.name,
              "split": info.split}
  else:
    clip, face_choice = raw_clip_with_face(video=video, frames_dir=frames_dir, wav=wav,
                                           label=label, clip_id=clip_id, face=face,
                                           face_mode=face_mode)
    clips = [clip]
    source = {"video": os.path.abspath(video) if video else "",
              "frames_dir": os.path.abspath(frames_dir) if frames_dir else "",
              "wav": os.path.abspath(wav) if wav else "", "face_choice": face_choice}
  extractor = FeatureExtractor(weights, per_layer=per_layer)
  arrays, rows = extract({"model": extractor}, clips, opts, batch_size=batch_size)
  arrays = arrays["model"]
  header = {"kind": weights.kind, "weights": weights.source, "input": source,
            "class_names": class_names, "options": dataclasses.asdict(opts),
            "model": weights.model.to_dict(), "num_clips": len({r["clip_id"] for r in rows})}
  write_features(output_dir, arrays, rows, header)
  summary = {"output_dir": output_dir, "num_rows": len(rows), "num_clips": header["num_clips"],
             "feature_dim": int(arrays[FEATURE_KEY].shape[1]), "kind": weights.kind,
             "arrays": sorted(arrays), "seconds": round(time.time() - t0, 1)}
  log.info("features written: %s", summary)
  return summary
