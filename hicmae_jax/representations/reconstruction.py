"""The reconstruction picture of a checkpoint: `python -m hicmae_jax.tools.reconstruct` as a
function. The maths, the figure and the training-time job are hicmae_jax/reconstruction.py
(the training layer), so the trainer reaches its job without importing this package.
"""
from __future__ import annotations

import itertools

import jax
import numpy as np

from hicmae_jax.checkpoints import weights as weights_lib
from hicmae_jax.data.format import split_reader
from hicmae_jax.data.pipeline import windows
from hicmae_jax.data.prepare import clip_loader
from hicmae_jax.models.hicmae import PretrainModel
from hicmae_jax.reconstruction import make_reconstruct_fn, reconstruction_figure
from hicmae_jax.representations import figures

# ---------------------------------------------------------------------------------- command --

def reconstruction_png(*, checkpoint: str, output: str, config=None, step=None,
                       split_dir: str = "", video: str = "", frames_dir: str = "",
                       wav: str = "", window_seconds: float = 0.0, num_clips: int = 3,
                       max_frames: int = 8, seed: int = 0, title: str = "") -> dict:
  """`python -m hicmae_jax.tools.reconstruct` as a function (its flags are the arguments);
  writes the PNG and returns the clips drawn and their masked-patch MSE."""



  if bool(split_dir) + bool(video or frames_dir) != 1:
    raise ValueError("give one input: --split_dir=<prepared split>, or --video=<file> / "
                     "--frames_dir=<folder> --wav=<file>")
  if num_clips < 1:
    raise ValueError(f"--num_clips={num_clips} must be >= 1")
  weights = weights_lib.load_weights(checkpoint, step,
                           model_hint=config)
  if weights.kind != "pretrain":
    raise ValueError(f"{checkpoint} is a {weights.kind} checkpoint: it has no decoders to "
                     f"reconstruct with. Pass a pre-training checkpoint (a pretrain run's "
                     f"workdir or an original pre-training .pth)")
  train_config = weights.source.pop("config", None) or {}
  if config is not None:
    sampling_rate, frame_difference = config.data.sampling_rate, config.loss.frame_difference
  else:
    sampling_rate = train_config.get("data", {}).get("sampling_rate", 4)
    frame_difference = train_config.get("loss", {}).get("frame_difference", True)
  opts = windows.ClipOptions.for_model(weights.model, sampling_rate=sampling_rate,
                                 window_seconds=window_seconds if not split_dir else 0.0)
  if split_dir:
    clips = split_reader.iterate_clips(split_dir, num_clips)
  else:
    clips = [clip_loader.raw_clip(video=video, frames_dir=frames_dir, wav=wav)]
  views = list(itertools.islice((v for c in clips for v in windows.clip_views(c, opts)),
                                num_clips))
  if not views:
    raise ValueError("no clip to draw (empty split?)")
  rows = [r for r, _, _ in views]
  video_in = np.stack([v for _, v, _ in views])
  audio_in = np.stack([a for _, _, a in views])
  view, params = weights_lib.bind(weights, PretrainModel)
  fn = make_reconstruct_fn(view, frame_difference=frame_difference)
  out = jax.device_get(fn(params, video_in, audio_in, jax.random.key(seed)))
  labels = [r["clip_id"] + (f" @{r['start_seconds']:.1f}s" if window_seconds else "")
            for r in rows]
  fig = reconstruction_figure(out, clip_ids=labels, max_frames=max_frames, title=title)
  figures.save_figure(fig, output)
  return {"output": output, "clips": labels,
          "mse_video": [round(float(v), 4) for v in out["loss_video"]],
          "mse_audio": [round(float(v), 4) for v in out["loss_audio"]],
          "frame_difference": bool(frame_difference)}
