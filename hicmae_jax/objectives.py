"""Training objectives: the pre-training loss (masked reconstruction + hierarchical contrastive)
and the fine-tuning losses, each a function of (model, batch, randomness) -> (loss, metrics)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from hicmae_jax import losses, masking, pixels, targets
from hicmae_jax.models.encoders import gather_tokens
from hicmae_jax.models.hicmae import PretrainModel


def draw_masks(model: PretrainModel, key: jax.Array, batch: int) -> tuple[jax.Array, jax.Array]:
  """Tube mask for video and random mask for audio at the model's configured ratios."""
  kv, ka = jax.random.split(key)
  return (masking.tube_mask(kv, batch, model.geo.video_grid, model.video_mask_ratio),
          masking.random_mask(ka, batch, model.geo.num_audio_tokens, model.audio_mask_ratio))


def pretrain_loss(model: PretrainModel, batch: dict[str, jax.Array], *,
                  loss_cfg: ml_collections.ConfigDict, key: jax.Array | None,
                  deterministic: bool) -> tuple[jax.Array, dict[str, jax.Array]]:
  """batch: video [B, T, H, W, 3] (normalised float or uint8 frames; with video_crop_size
  [B, 2], uint8 crops the device resizes: `pixels.batch_video`), audio [B, time, freq],
  optional mask_video/mask_audio.

  key drives the masks (when the batch has none) and drop path. Returns (loss, aux) where aux
  holds the scalar losses and the model outputs.
  """
  # uint8 frames are normalised once here: the model and the targets see the same floats.
  video, audio = pixels.batch_video(batch, model.geo.input_size), batch["audio"]
  b = video.shape[0]
  if key is None:
    key = jax.random.key(0)
  mask_key, drop_key = jax.random.split(key)
  if "mask_video" in batch:
    mask_v, mask_a = batch["mask_video"], batch["mask_audio"]
  else:
    mask_v, mask_a = draw_masks(model, mask_key, b)
  rngs = None if deterministic else nnx.Rngs(dropout=drop_key)
  out = model(video, audio, mask_v, mask_a, rngs=rngs, deterministic=deterministic)
  geo = model.geo
  target_v = gather_tokens(
      targets.video_targets(video, tubelet=geo.tubelet, patch=geo.patch,
                            frame_difference=loss_cfg.frame_difference),
      out["masked_ids_video"])
  target_a = gather_tokens(targets.audio_targets(audio, patch=geo.audio_patch),
                           out["masked_ids_audio"])
  loss_v = losses.masked_mse(out["rec_video"], jax.lax.stop_gradient(target_v))
  loss_a = losses.masked_mse(out["rec_audio"], jax.lax.stop_gradient(target_a))
  loss_c, logits = losses.hierarchical_contrastive_loss(
      out["video_levels"], out["audio_levels"], temperature=loss_cfg.contrastive_temperature,
      group_size=loss_cfg.contrastive_group_size)
  loss = (loss_cfg.video_weight * loss_v + loss_cfg.audio_weight * loss_a
          + loss_cfg.contrastive_weight * loss_c)
  aux = {"loss": loss, "loss_video": loss_v, "loss_audio": loss_a, "loss_contrastive": loss_c,
         "logits": logits, "target_video": target_v, "target_audio": target_a, **out}
  return loss, aux


def soft_cross_entropy(logits: jax.Array, target_dist: jax.Array) -> jax.Array:
  """Mean over the batch of -sum(target * log_softmax(logits)) (mixup / label smoothing)."""
  logp = jax.nn.log_softmax(logits.astype(jnp.promote_types(logits.dtype, jnp.float32)))
  return -jnp.mean(jnp.sum(target_dist * logp, axis=-1))


def classification_targets(batch: dict[str, jax.Array], num_classes: int,
                           label_smoothing: float) -> jax.Array:
  """The batch's soft targets ('targets', from mixup) or smoothed one-hot labels [B, C]."""
  if "targets" in batch:
    return batch["targets"]
  one_hot = jax.nn.one_hot(batch["label"], num_classes)
  return one_hot * (1.0 - label_smoothing) + label_smoothing / num_classes
