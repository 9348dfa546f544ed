"""Clip features of bound weights: the encoders over a clip's windows, and the features folder.

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

Clips become windows and model inputs in `data/pipeline/windows.py` (the evaluation stages, one
view per clip by default or windows of `window_seconds`); this module runs the encoders over
them.

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
import time
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from hicmae_jax import experiments, io_utils, paths
from hicmae_jax.checkpoints import weights as weights_lib
from hicmae_jax.data.format import schema, split_reader
from hicmae_jax.data.pipeline import windows
from hicmae_jax.data.prepare import clip_loader

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
                       f"windows.ClipOptions.for_model(model config)")
    out = self._run(self.params, video, audio)
    return {k: np.asarray(v) for k, v in out.items()}


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
  face, face_mode: of a raw clip, see clip_loader.raw_clip_with_face); writes the folder and
  returns a summary."""
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
  opts = windows.ClipOptions.for_model(weights.model, sampling_rate=sampling_rate,
                                       window_seconds=window_seconds,
                                       stride_seconds=stride_seconds, default_fps=fps)
  opts.validate()
  class_names: list[str] = []
  if split_dir:
    info = schema.DatasetInfo.load(split_dir)  # names the folder when it is not a split
    class_names = list(info.class_names)
    clips = split_reader.iterate_clips(split_dir, limit)
    source = {"split_dir": os.path.abspath(split_dir), "dataset": info.name,
              "split": info.split}
  else:
    clip, face_choice = clip_loader.raw_clip_with_face(
        video=video, frames_dir=frames_dir, wav=wav, label=label, clip_id=clip_id, face=face,
        face_mode=face_mode)
    clips = [clip]
    source = {"video": os.path.abspath(video) if video else "",
              "frames_dir": os.path.abspath(frames_dir) if frames_dir else "",
              "wav": os.path.abspath(wav) if wav else "", "face_choice": face_choice}
  extractor = FeatureExtractor(weights, per_layer=per_layer)
  arrays, rows = windows.apply({"model": extractor}, clips, opts, batch_size=batch_size)
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
