"""Reconstruction pictures: the pre-training model's predictions back in pixels and spectrogram,
and the training-time job that writes them to TensorBoard.

The model predicts each masked patch in target space: per-patch normalised values (video: per
channel over the tubelet's 2 x 16 x 16 pixels, with frame t >= 1 of a tubelet replaced by its
difference to frame t - 1; audio: over the 16 x 16 spectrogram values). To show it, the
frame difference is undone (a cumulative sum over the tubelet's frames) and each patch is
un-normalised with the mean and std of the true patch, as VideoMAE's visualisation does: the
normalised target carries no patch brightness, so the model is never asked for it. Visible
patches are shown as they were given.

`reconstruction_figure` draws, per clip, the original frames, the masked input (masked
patches grey) and the reconstruction, each row ending with the matching spectrogram.
`ReconstructionJob` writes that figure to TensorBoard during pre-training every
`config.recon_every_steps` steps (a periodic job of train.TASKS). The command on a checkpoint
(`tools/reconstruct`) is representations/reconstruction.py, over this module.
"""
from __future__ import annotations

import logging
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from matplotlib import gridspec
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from hicmae_jax import objectives, periodic, pixels, runtime, sharding, targets
from hicmae_jax.models.encoders import gather_tokens
from hicmae_jax.patches import patchify_audio, patchify_video, unpatchify_audio, unpatchify_video

log = logging.getLogger(__name__)

MASK_GREY = 0.5


def _patch_stats(p: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Mean and unbiased std over axis 2 (the targets' per-patch normalisation)."""
  mean = p.mean(axis=2, keepdims=True)
  std = jnp.sqrt(jnp.var(p, axis=2, keepdims=True, ddof=1))
  return mean, std


def _gather(x: jax.Array, ids: jax.Array) -> jax.Array:
  """x [B, N, ...], ids [B, M] -> [B, M, ...]."""
  return jnp.take_along_axis(x, ids.reshape(ids.shape + (1,) * (x.ndim - 2)), axis=1)


def _scatter(x: jax.Array, ids: jax.Array, values: jax.Array) -> jax.Array:
  """x [B, N, ...] with rows ids [B, M] replaced by values [B, M, ...]."""
  return jax.vmap(lambda a, i, v: a.at[i].set(v))(x, ids, values)


def video_to_pixels(video: jax.Array, pred: jax.Array, masked_ids: jax.Array, *, tubelet: int,
                    patch: int, frame_difference: bool,
                    mean: Sequence[float] = pixels.IMAGENET_MEAN,
                    std: Sequence[float] = pixels.IMAGENET_STD) -> dict[str, jax.Array]:
  """video [B, T, H, W, C] ImageNet-normalised, pred [B, M, tubelet*patch*patch*C] (the model's
  rec_video, in target space), masked_ids [B, M].

  Returns original, masked, reconstruction: pixels [B, T, H, W, C] in [0, 1] (masked patches
  grey in `masked`; predicted in `reconstruction`, visible ones as given)."""
  ct = jnp.promote_types(video.dtype, jnp.float32)
  x = video.astype(ct) * jnp.asarray(std, ct) + jnp.asarray(mean, ct)
  b, t, h, w, c = x.shape
  p = patchify_video(x, tubelet, patch)
  n = p.shape[1]
  p = p.reshape(b, n, tubelet * patch * patch, c)
  mu, sd = _patch_stats(p)
  m = masked_ids.shape[1]
  q = pred.astype(ct).reshape(b, m, tubelet, patch * patch, c)
  if frame_difference:
    q = jnp.cumsum(q, axis=2)  # targets hold norm(t) - norm(t-1) for t >= 1
  q = q.reshape(b, m, tubelet * patch * patch, c)
  q = q * (_gather(sd, masked_ids) + targets.PATCH_NORM_EPS) + _gather(mu, masked_ids)
  grey = jnp.full_like(q, MASK_GREY)
  back = lambda patches: jnp.clip(unpatchify_video(
      patches.reshape(b, n, -1), (b, t, h, w, c), tubelet, patch), 0.0, 1.0)
  return {"original": jnp.clip(x, 0.0, 1.0),
          "masked": back(_scatter(p, masked_ids, grey)),
          "reconstruction": back(_scatter(p, masked_ids, q))}


def audio_to_values(audio: jax.Array, pred: jax.Array, masked_ids: jax.Array, *,
                    patch: int) -> dict[str, jax.Array]:
  """audio [B, A, M] normalised fbank, pred [B, K, patch*patch] (rec_audio), masked_ids [B, K].

  Returns original, masked (masked patches NaN: drawn blank), reconstruction [B, A, M] in the
  fbank's normalised units."""
  ct = jnp.promote_types(audio.dtype, jnp.float32)
  a = audio.astype(ct)
  p = patchify_audio(a, patch)
  mu, sd = _patch_stats(p)
  q = pred.astype(ct) * (_gather(sd, masked_ids) + targets.PATCH_NORM_EPS) + _gather(
      mu, masked_ids)
  blank = jnp.full_like(q, jnp.nan)
  return {"original": a,
          "masked": unpatchify_audio(_scatter(p, masked_ids, blank), a.shape, patch),
          "reconstruction": unpatchify_audio(_scatter(p, masked_ids, q), a.shape, patch)}


def reconstruct(model, video: jax.Array, audio: jax.Array, mask_video: jax.Array,
                mask_audio: jax.Array, *, frame_difference: bool) -> dict[str, jax.Array]:
  """Runs a PretrainModel (deterministic) on masked inputs and maps its predictions back.

  video [B, T, H, W, 3], audio [B, A, M], masks [B, Nv] / [B, Na] (True = masked). Returns
  video_{original,masked,reconstruction} [B, T, H, W, 3] in [0, 1],
  audio_{original,masked,reconstruction} [B, A, M], and the per-clip masked-patch MSE in
  target space (the pre-training loss terms) loss_video / loss_audio [B]."""
  video = pixels.model_input(video)  # uint8 frames from the pipeline: normalised here
  out = model(video, audio, mask_video, mask_audio, deterministic=True)
  geo = model.geo
  v = video_to_pixels(video, out["rec_video"], out["masked_ids_video"], tubelet=geo.tubelet,
                      patch=geo.patch, frame_difference=frame_difference)
  a = audio_to_values(audio, out["rec_audio"], out["masked_ids_audio"], patch=geo.audio_patch)
  target_v = gather_tokens(targets.video_targets(video, tubelet=geo.tubelet, patch=geo.patch,
                                                 frame_difference=frame_difference),
                           out["masked_ids_video"])
  target_a = gather_tokens(targets.audio_targets(audio, patch=geo.audio_patch),
                           out["masked_ids_audio"])
  err = lambda pred, tgt: jnp.mean(jnp.square(pred.astype(jnp.float32) - tgt), axis=(1, 2))
  return {**{f"video_{k}": x for k, x in v.items()}, **{f"audio_{k}": x for k, x in a.items()},
          "loss_video": err(out["rec_video"], target_v),
          "loss_audio": err(out["rec_audio"], target_a)}


def make_reconstruct_fn(view, *, frame_difference: bool, out_shardings=None):
  """jit(params, video, audio, key) -> `reconstruct` output, masks drawn from `key` at the
  model's ratios (tube mask for video, random for audio)."""

  def fn(params, video, audio, key):
    model = view.merge(params)
    mask_v, mask_a = objectives.draw_masks(model, key, video.shape[0])
    return reconstruct(model, video, audio, mask_v, mask_a, frame_difference=frame_difference)
  if out_shardings is None:
    return jax.jit(fn)
  return jax.jit(fn, out_shardings=out_shardings)


# ----------------------------------------------------------------------------------- figure --

def reconstruction_figure(result: dict[str, Any], *, clip_ids: Sequence[str] = (),
                          max_frames: int = 8, title: str = ""):
  """A matplotlib Figure (Agg, no pyplot) of `reconstruct`'s output (numpy or jax arrays):
  per clip three rows (original / masked / reconstruction), each with up to `max_frames`
  evenly spaced frames and the spectrogram (time across, frequency up)."""

  r = {k: np.asarray(v) for k, v in result.items()}
  num_clips, num_frames = r["video_original"].shape[:2]
  shown = np.unique(np.round(np.linspace(0, num_frames - 1, min(max_frames, num_frames)))
                    .astype(int))
  f = len(shown)
  spec_cols = 3.0
  rows = 3 * num_clips
  height = 0.95 * rows + 0.3 + (0.3 if title else 0.0)
  fig = Figure(figsize=(0.9 * (f + spec_cols) + 1.0, height), dpi=80)
  FigureCanvasAgg(fig)
  grid = gridspec.GridSpec(rows, f + 1, figure=fig, width_ratios=[1.0] * f + [spec_cols],
                           wspace=0.04, hspace=0.08, left=0.1, right=0.99,
                           bottom=0.1 / height, top=1.0 - (0.25 + (0.3 if title else 0.0)) / height)
  names = ("original", "masked", "reconstruction")
  for i in range(num_clips):
    spec = r["audio_original"][i]
    lo, hi = float(np.nanmin(spec)), float(np.nanmax(spec))
    for j, name in enumerate(names):
      row = 3 * i + j
      for col, t in enumerate(shown):
        ax = fig.add_subplot(grid[row, col])
        ax.imshow(r[f"video_{name}"][i, t], interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        if col == 0:
          label = name if j else f"{clip_ids[i] if i < len(clip_ids) else f'clip {i}'}\n{name}"
          if j == 2 and "loss_video" in r:
            label += f"\nmse v {r['loss_video'][i]:.2f}, a {r['loss_audio'][i]:.2f}"
          ax.set_ylabel(label, fontsize=7)
        if row == 0:
          ax.set_title(f"frame {t}", fontsize=7)
      ax = fig.add_subplot(grid[row, f])
      ax.imshow(r[f"audio_{name}"][i].T, origin="lower", aspect="auto", cmap="magma",
                vmin=lo, vmax=hi, interpolation="nearest")
      ax.set_xticks([])
      ax.set_yticks([])
      if row == 0:
        ax.set_title("spectrogram (time ->, mel bins ^)", fontsize=7)
  if title:
    fig.suptitle(title, fontsize=9)
  return fig


def figure_to_rgb(fig) -> np.ndarray:
  """Renders a matplotlib Figure (Agg canvas) -> uint8 [H, W, 3]."""
  fig.canvas.draw()
  return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


# ------------------------------------------------------------------------ the training job --

class ReconstructionJob(periodic.Job):
  """Writes the reconstruction figure to TensorBoard every `config.recon_every_steps` steps.

  The clips are the first `config.recon_num_clips` of the first batch it sees (process 0's,
  broadcast so every process computes the same: the parameters may be sharded over all of
  them), with one fixed mask draw, so successive figures show the same inputs. Only process 0
  writes."""

  def __init__(self, config, view, mesh, writer):
    """view: the model's params.ParamsView; mesh: the run's Mesh; writer: its MetricWriter."""
    self.every_steps = int(config.recon_every_steps)
    self.num_clips = max(1, int(config.recon_num_clips))
    self.writer = writer
    self._key = jax.random.key(config.seed)
    self._input_size = int(config.model.input_size)
    self._replicated = sharding.replicated(mesh)
    # Across processes the output must be replicated to be read on process 0; on one process
    # the plain jit compiles to the same program as the command's (one persistent-cache entry).
    self._fn = runtime.compile_then_meet(make_reconstruct_fn(
        view, frame_difference=config.loss.frame_difference,
        out_shardings=self._replicated if jax.process_count() > 1 else None), "reconstruction")
    self._inputs = None

  def run(self, step: int, state: dict, batch: dict[str, Any]) -> None:
    if self._inputs is None:
      keys = ("video", "audio") + (("video_crop_size",) if "video_crop_size" in batch else ())
      clips = {k: np.asarray(batch[k][:self.num_clips]) for k in keys}
      if "video_crop_size" in clips:  # crops the train step resizes on the device: same here
        clips["video"] = np.asarray(jax.jit(pixels.resize_crops, static_argnums=2)(
            clips["video"], clips.pop("video_crop_size"), self._input_size))
      if jax.process_count() > 1:
        clips = multihost_utils.broadcast_one_to_all(clips)
      self._inputs = jax.device_put(clips, self._replicated)
    out = self._fn(state["params"], self._inputs["video"], self._inputs["audio"], self._key)
    if jax.process_index() != 0:
      return
    out = jax.device_get(out)
    fig = reconstruction_figure(out, title=f"step {step}")
    self.writer.write_images(step, {"reconstruction": figure_to_rgb(fig)})
    self.writer.write_scalars(step, {"recon_mse_video": float(np.mean(out["loss_video"])),
                                     "recon_mse_audio": float(np.mean(out["loss_audio"]))})


def reconstruction_job(config, ctx: periodic.Context) -> ReconstructionJob | None:
  """A pre-training run's figure job (train.TASKS) when config.recon_every_steps > 0."""
  if not config.get("recon_every_steps", 0):
    return None
  return ReconstructionJob(config, ctx.view, ctx.mesh, ctx.writer)
