"""The HiCMAE fine-tuning model: full-token encoders, hierarchical feature fusion, fusion encoder,
LayerNormed feature and a classification or regression head.

Unimodal variants: with `audio_depth = 0` the model is video-only (and `video_depth = 0`
audio-only): no fusion encoder, feature = LayerNorm(HFF of that modality) [B, D].
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from hicmae_jax import pixels
from hicmae_jax.models.embed import AudioPatchEmbed, VideoPatchEmbed
from hicmae_jax.models.encoders import Encoder, FusionEncoder
from hicmae_jax.models.layers import LayerNorm, linear, torch_default_uniform, xavier_uniform
from hicmae_jax.models.options import block_options, dtype_from_name, geometry

HEAD_ACTIVATIONS = {"none": lambda x: x, "sigmoid": jax.nn.sigmoid, "tanh": jnp.tanh,
                    "relu": jax.nn.relu}

# The original's fine-tuning encoders use truncated normal(0.02), cut at +-2 (i.e. effectively
# untruncated at std 0.02); the fusion encoder keeps xavier-uniform.
_encoder_init = nnx.initializers.truncated_normal(stddev=0.02, lower=-2.0 / 0.02,
                                                  upper=2.0 / 0.02)


def hierarchical_feature_fusion(levels: list[jax.Array], layer_weights: jax.Array) -> jax.Array:
  """levels: L tensors [B, N, D] (LayerNormed block outputs), layer_weights [L]
  -> sum_l softmax(w)_l * mean_tokens(level_l): [B, D]."""
  ct = jnp.promote_types(levels[0].dtype, jnp.float32)
  pooled = jnp.stack([lvl.astype(ct).mean(axis=1) for lvl in levels], axis=1)  # [B, L, D]
  weights = jax.nn.softmax(layer_weights.astype(ct))
  return jnp.einsum("bld,l->bd", pooled, weights)


def _pooled_levels(levels: list[jax.Array], dtype) -> jax.Array:
  """L tensors [B, N, D] -> [B, L, D], each mean-pooled over its tokens."""
  return jnp.stack([lvl.astype(dtype).mean(axis=1) for lvl in levels], axis=1)


class FinetuneModel(nnx.Module):
  """Parameter tree (mirrors the original): encoder, encoder_audio, encoder_fusion,
  video_layer_weights, audio_layer_weights, fc_norm, head."""

  def __init__(self, cfg: ml_collections.ConfigDict, *, rngs: nnx.Rngs):
    geo = geometry(cfg)
    self.geo = geo
    dtype = dtype_from_name(cfg.dtype)
    pdtype = dtype_from_name(cfg.param_dtype)
    self.dtype = dtype
    if cfg.video_depth == 0 and cfg.audio_depth == 0:
      raise ValueError("model.video_depth and model.audio_depth are both 0: no encoder left")
    num_outputs = cfg.num_classes if cfg.task == "classification" else cfg.num_targets
    if num_outputs <= 0:
      raise ValueError(f"model.task={cfg.task!r} needs model.num_classes / model.num_targets "
                       f"> 0, got {num_outputs}")
    if cfg.head_activation not in HEAD_ACTIVATIONS:
      raise ValueError(f"model.head_activation={cfg.head_activation!r}; allowed: "
                       f"{sorted(HEAD_ACTIVATIONS)}")
    enc_opts = block_options(cfg, _encoder_init)
    fusion_opts = block_options(cfg, xavier_uniform)
    self.has_video = cfg.video_depth > 0
    self.has_audio = cfg.audio_depth > 0
    common = dict(dim=cfg.dim, num_heads=cfg.num_heads, opts=enc_opts, drop_path=cfg.drop_path,
                  remat=cfg.remat, rngs=rngs)
    if self.has_video:
      self.encoder = Encoder(
          VideoPatchEmbed(cfg.dim, tubelet=geo.tubelet, patch=geo.patch, dtype=dtype,
                          param_dtype=pdtype, rngs=rngs),
          num_patches=geo.num_video_tokens, depth=cfg.video_depth, **common)
      self.video_layer_weights = nnx.Param(
          jnp.full((cfg.video_depth,), 1.0 / cfg.video_depth, pdtype))
    if self.has_audio:
      self.encoder_audio = Encoder(
          AudioPatchEmbed(cfg.dim, patch=geo.audio_patch, dtype=dtype, param_dtype=pdtype,
                          rngs=rngs),
          num_patches=geo.num_audio_tokens, depth=cfg.audio_depth, **common)
      self.audio_layer_weights = nnx.Param(
          jnp.full((cfg.audio_depth,), 1.0 / cfg.audio_depth, pdtype))
    self.multimodal = self.has_video and self.has_audio
    if self.multimodal:
      self.encoder_fusion = FusionEncoder(dim=cfg.dim, depth=cfg.fusion_depth,
                                          num_heads=cfg.num_heads, opts=fusion_opts,
                                          drop_path=cfg.drop_path, remat=cfg.remat, rngs=rngs)
    feature_dim = 4 * cfg.dim if self.multimodal else cfg.dim
    self.feature_dim = feature_dim
    self.fc_norm = LayerNorm(feature_dim, eps=cfg.layer_norm_eps, param_dtype=pdtype, rngs=rngs)
    self.head_dropout = nnx.Dropout(cfg.head_dropout)
    head_init = torch_default_uniform(feature_dim)  # PyTorch's default Linear init
    self.head = linear(feature_dim, num_outputs, kernel_init=head_init, bias_init=head_init,
                       dtype=dtype, param_dtype=pdtype, rngs=rngs)
    self.head_activation = cfg.head_activation

  def features(self, video: jax.Array | None, audio: jax.Array | None, *,
               rngs: nnx.Rngs | None = None, deterministic: bool = True,
               return_layers: bool = False) -> dict[str, jax.Array]:
    """Returns the pieces of the clip representation (all [B, D] except `feature`):
    video_hff, audio_hff, fused_video, fused_audio, feature (LayerNormed concat, [B, F]).

    return_layers adds video_layers / audio_layers [B, L, D]: every block's LayerNormed output
    mean-pooled over tokens (the inputs of the hierarchical feature fusion)."""
    out = {}
    parts = []
    kw = dict(rngs=rngs, deterministic=deterministic)
    if self.has_video:
      enc = self.encoder
      video = pixels.model_input(video)  # uint8 frames from the pipeline: normalised here
      _, levels_v = enc(video.astype(self.dtype), keep_layers=range(enc.depth), **kw)
      out["video_hff"] = hierarchical_feature_fusion(levels_v, self.video_layer_weights[...])
      parts.append(out["video_hff"])
      if return_layers:
        out["video_layers"] = _pooled_levels(levels_v, out["video_hff"].dtype)
    if self.has_audio:
      enc = self.encoder_audio
      _, levels_a = enc(audio.astype(self.dtype), keep_layers=range(enc.depth), **kw)
      out["audio_hff"] = hierarchical_feature_fusion(levels_a, self.audio_layer_weights[...])
      parts.append(out["audio_hff"])
      if return_layers:
        out["audio_layers"] = _pooled_levels(levels_a, out["audio_hff"].dtype)
    if self.multimodal:
      # The last level is the encoder's LayerNormed output: it feeds the fusion encoder.
      fused_v, fused_a = self.encoder_fusion(levels_v[-1], levels_a[-1], **kw)
      ct = out["video_hff"].dtype
      out["fused_video"] = fused_v.astype(ct).mean(axis=1)
      out["fused_audio"] = fused_a.astype(ct).mean(axis=1)
      parts += [out["fused_video"], out["fused_audio"]]
    out["feature"] = self.fc_norm(jnp.concatenate(parts, axis=-1))
    return out

  def __call__(self, video: jax.Array | None, audio: jax.Array | None, *,
               rngs: nnx.Rngs | None = None, deterministic: bool = True) -> dict[str, jax.Array]:
    """video [B, T, H, W, 3], audio [B, time, freq] -> {logits [B, C], feature [B, F], ...}."""
    out = self.features(video, audio, rngs=rngs, deterministic=deterministic)
    x = out["feature"]
    if not deterministic:  # dropout is the identity at inference: not called, so an exporter
      x = self.head_dropout(x, deterministic=False, rngs=rngs)  # (jax2onnx) sees no Dropout
    out["logits"] = HEAD_ACTIVATIONS[self.head_activation](self.head(x.astype(self.dtype)))
    return out
