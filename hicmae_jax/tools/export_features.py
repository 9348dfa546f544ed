"""Exports per-clip features of a checkpoint over a prepared split or raw files (.npy + JSON).

  # a prepared split, one view per clip (the evaluation sampler)
  python -m hicmae_jax.tools.export_features --checkpoint=ckpt/hicmae_base \
      --split_dir=/data/crema_d/fold1/test --output_dir=features/crema_test [--per_layer]
  # one long video (its own audio track), cut into 2.56 s windows every 1 s
  python -m hicmae_jax.tools.export_features --checkpoint=model.pth --video=talk.mp4 \
      --window_seconds=2.56 --stride_seconds=1 --output_dir=features/talk
  # a frames folder with its wav; the untrained baseline of a config
  python -m hicmae_jax.tools.export_features --config=configs/demo.py:pretrain --random_init \
      --frames_dir=clip01/ --wav=clip01.wav --output_dir=features/clip01_random

--checkpoint takes a run's workdir, its checkpoints/ folder, a converted checkpoint folder or an
original PyTorch .pth, pre-trained or fine-tuned (see hicmae_jax/representations/features.py for
what the feature is in each case). The model sizes come from the checkpoint; --config (optional)
gives the frame sampling rate and batch size, else the checkpoint's own training config does.
Writes features.npy [N, F], metadata.json (clip ids, labels, windows) and with --per_layer the
per-layer pooled features per modality.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
import time

from absl import app, flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config (data.sampling_rate, eval_batch_size; with "
    "--random_init also the model). Optional with --checkpoint.", lock_config=False)
_CHECKPOINT = flags.DEFINE_string("checkpoint", "", "Workdir, checkpoint folder or .pth file.")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: latest).")
_RANDOM_INIT = flags.DEFINE_bool("random_init", False, "Use the config's model at its "
                                 "pre-training initialisation (seed config.seed) instead of a "
                                 "checkpoint: the untrained baseline.")
_SPLIT_DIR = flags.DEFINE_string("split_dir", "", "A prepared split folder.")
_VIDEO = flags.DEFINE_string("video", "", "A video file (audio from its track unless --wav).")
_FRAMES_DIR = flags.DEFINE_string("frames_dir", "", "A folder of frames (needs --wav).")
_WAV = flags.DEFINE_string("wav", "", "The audio of --frames_dir (or to replace --video's).")
_LABEL = flags.DEFINE_integer("label", -1, "Class label recorded for a raw clip.")
_CLIP_ID = flags.DEFINE_string("clip_id", "", "Id of a raw clip (default: the file name).")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Where the .npy and metadata.json go.")
_WINDOW = flags.DEFINE_float("window_seconds", 0.0, "Cut clips into windows of this length "
                             "(0: one view per clip, the evaluation sampler).")
_STRIDE = flags.DEFINE_float("stride_seconds", 0.0, "Window start every this many seconds "
                             "(0: the window length).")
_FPS = flags.DEFINE_float("fps", 25.0, "Frame rate of clips that do not record one (frames "
                          "folders).")
_PER_LAYER = flags.DEFINE_bool("per_layer", False, "Also write per-layer pooled features per "
                               "modality and the HFF / fusion pieces.")
_BATCH = flags.DEFINE_integer("batch_size", 0, "Clips per forward pass (0: the config's "
                              "eval_batch_size, else 32).")
_LIMIT = flags.DEFINE_integer("limit", 0, "Only the first N clips of the split (0: all).")
flags.mark_flags_as_required(["output_dir"])

log = logging.getLogger("hicmae_jax.export_features")


def export_features(*, output_dir: str, checkpoint: str = "", step: int | None = None,
                    random_init: bool = False, config=None, split_dir: str = "",
                    video: str = "", frames_dir: str = "", wav: str = "", label: int = -1,
                    clip_id: str = "", window_seconds: float = 0.0,
                    stride_seconds: float = 0.0, fps: float = 25.0, per_layer: bool = False,
                    batch_size: int = 0, limit: int = 0) -> dict:
  """The command as a function; returns a summary (also the metadata's header)."""
  from hicmae_jax.data import schema
  from hicmae_jax.representations import features as F

  t0 = time.time()
  if bool(split_dir) + bool(video or frames_dir) != 1:
    raise ValueError("give one input: --split_dir=<prepared split>, or --video=<file> / "
                     "--frames_dir=<folder> --wav=<file>")
  if random_init:
    if checkpoint:
      raise ValueError("--random_init and --checkpoint exclude each other")
    if config is None:
      raise ValueError("--random_init needs --config (its model and seed)")
    weights = F.random_weights(config.model, config.seed)
  else:
    weights = F.load_weights(checkpoint, step)
  train_config = weights.source.pop("config", None) or {}
  sampling_rate = (config.data.sampling_rate if config is not None else
                   train_config.get("data", {}).get("sampling_rate", 4))
  if not batch_size:
    batch_size = (config.eval_batch_size if config is not None
                  else train_config.get("eval_batch_size", 32))
  opts = F.ClipOptions.for_model(weights.model, sampling_rate=sampling_rate,
                                 window_seconds=window_seconds, stride_seconds=stride_seconds,
                                 default_fps=fps)
  opts.validate()
  class_names: list[str] = []
  if split_dir:
    info = schema.DatasetInfo.load(split_dir)  # names the folder when it is not a split
    class_names = list(info.class_names)
    clips = F.split_clips(split_dir, limit)
    source = {"split_dir": os.path.abspath(split_dir), "dataset": info.name,
              "split": info.split}
  else:
    clip = F.raw_clip(video=video, frames_dir=frames_dir, wav=wav, label=label,
                      clip_id=clip_id)
    clips = [clip]
    source = {"video": os.path.abspath(video) if video else "",
              "frames_dir": os.path.abspath(frames_dir) if frames_dir else "",
              "wav": os.path.abspath(wav) if wav else ""}
  extractor = F.FeatureExtractor(weights, per_layer=per_layer)
  arrays, rows = F.extract({"model": extractor}, clips, opts, batch_size=batch_size)
  arrays = arrays["model"]
  header = {"kind": weights.kind, "weights": weights.source, "input": source,
            "class_names": class_names, "options": dataclasses.asdict(opts),
            "model": weights.model.to_dict(), "num_clips": len({r["clip_id"] for r in rows})}
  F.write_features(output_dir, arrays, rows, header)
  summary = {"output_dir": output_dir, "num_rows": len(rows), "num_clips": header["num_clips"],
             "feature_dim": int(arrays[F.FEATURE_KEY].shape[1]), "kind": weights.kind,
             "arrays": sorted(arrays), "seconds": round(time.time() - t0, 1)}
  log.info("features written: %s", summary)
  return summary


def main(argv):
  del argv
  from hicmae_jax import runtime
  runtime.setup_logging(None)
  try:
    summary = export_features(
        output_dir=_OUTPUT_DIR.value, checkpoint=_CHECKPOINT.value, step=_STEP.value,
        random_init=_RANDOM_INIT.value, config=_CONFIG.value, split_dir=_SPLIT_DIR.value,
        video=_VIDEO.value, frames_dir=_FRAMES_DIR.value, wav=_WAV.value, label=_LABEL.value,
        clip_id=_CLIP_ID.value, window_seconds=_WINDOW.value, stride_seconds=_STRIDE.value,
        fps=_FPS.value, per_layer=_PER_LAYER.value, batch_size=_BATCH.value,
        limit=_LIMIT.value)
  except (FileNotFoundError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  print(json.dumps(summary, indent=2))
  return 0


if __name__ == "__main__":
  app.run(main)
