"""The HiCMAE pre-training model: masked encoders with a hierarchy, fusion, hierarchical
decoders."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from hicmae_jax import masking, pixels
from hicmae_jax.models.decoders import HierarchicalDecoder
from hicmae_jax.models.embed import AudioPatchEmbed, VideoPatchEmbed
from hicmae_jax.models.encoders import Encoder, FusionEncoder, gather_tokens, positions
from hicmae_jax.models.layers import linear, xavier_uniform
from hicmae_jax.models.options import block_options, dtype_from_name, geometry

CONTRASTIVE_FEATURES_SCOPE = "contrastive_features"


def _mask_token_init(key, shape, dtype):
  # The original: trunc_normal_(std=0.02, a=-0.02, b=0.02), i.e. cut at one std.
  return 0.02 * jax.random.truncated_normal(key, -1.0, 1.0, shape, dtype)


class PretrainModel(nnx.Module):
  """Predicts masked video tubelets and spectrogram patches; exposes the contrastive features.

  Parameter tree (mirrors the original): encoder, encoder_audio, encoder_fusion, decoder,
  decoder_audio, encoder_to_decoder, encoder_to_decoder_audio, mask_token, mask_token_audio.
  """

  def __init__(self, cfg: ml_collections.ConfigDict, *, rngs: nnx.Rngs):
    geo = geometry(cfg)
    self.geo = geo
    self.hierarchy_layers = tuple(cfg.hierarchy_layers)
    if len(self.hierarchy_layers) != cfg.decoder_depth - 1:
      raise ValueError(f"model.hierarchy_layers {self.hierarchy_layers} must have "
                       f"decoder_depth - 1 = {cfg.decoder_depth - 1} entries")
    for depth_key in ("video_depth", "audio_depth"):
      if any(not 0 <= i < cfg[depth_key] for i in self.hierarchy_layers):
        raise ValueError(f"model.hierarchy_layers {self.hierarchy_layers} must lie in "
                         f"[0, {depth_key}={cfg[depth_key]})")
    self.video_mask_ratio = cfg.video_mask_ratio
    self.audio_mask_ratio = cfg.audio_mask_ratio
    self.num_visible_video = geo.num_video_tokens - masking.num_masked(
        geo.video_grid[1] * geo.video_grid[2], cfg.video_mask_ratio) * geo.video_grid[0]
    self.num_visible_audio = geo.num_audio_tokens - masking.num_masked(
        geo.num_audio_tokens, cfg.audio_mask_ratio)
    dtype = dtype_from_name(cfg.dtype)
    pdtype = dtype_from_name(cfg.param_dtype)
    opts = block_options(cfg, xavier_uniform)
    self.encoder = Encoder(
        VideoPatchEmbed(cfg.dim, tubelet=geo.tubelet, patch=geo.patch, dtype=dtype,
                        param_dtype=pdtype, rngs=rngs),
        num_patches=geo.num_video_tokens, dim=cfg.dim, depth=cfg.video_depth,
        num_heads=cfg.num_heads, opts=opts, drop_path=cfg.drop_path, remat=cfg.remat, rngs=rngs)
    self.encoder_audio = Encoder(
        AudioPatchEmbed(cfg.dim, patch=geo.audio_patch, dtype=dtype, param_dtype=pdtype,
                        rngs=rngs),
        num_patches=geo.num_audio_tokens, dim=cfg.dim, depth=cfg.audio_depth,
        num_heads=cfg.num_heads, opts=opts, drop_path=cfg.drop_path, remat=cfg.remat, rngs=rngs)
    self.encoder_fusion = FusionEncoder(dim=cfg.dim, depth=cfg.fusion_depth,
                                        num_heads=cfg.num_heads, opts=opts,
                                        drop_path=cfg.drop_path, remat=cfg.remat, rngs=rngs)
    dec = dict(dim=cfg.decoder_dim, depth=cfg.decoder_depth, num_heads=cfg.decoder_heads,
               opts=opts, remat=cfg.remat, rngs=rngs)
    self.decoder = HierarchicalDecoder(out_dim=geo.video_patch_dim, **dec)
    self.decoder_audio = HierarchicalDecoder(out_dim=geo.audio_patch_dim, **dec)
    proj = dict(use_bias=False, kernel_init=xavier_uniform, dtype=dtype, param_dtype=pdtype,
                rngs=rngs)
    self.encoder_to_decoder = linear(cfg.dim, cfg.decoder_dim, **proj)
    self.encoder_to_decoder_audio = linear(cfg.dim, cfg.decoder_dim, **proj)
    self.mask_token = nnx.Param(_mask_token_init(rngs.params(), (1, 1, cfg.decoder_dim), pdtype))
    self.mask_token_audio = nnx.Param(
        _mask_token_init(rngs.params(), (1, 1, cfg.decoder_dim), pdtype))
    self.decoder_dim = cfg.decoder_dim
    self.dtype = dtype

  def _decode(self, decoder, to_decoder, mask_token, fused, hierarchy, visible_ids, masked_ids,
              num_tokens, rngs, deterministic):
    b = fused.shape[0]
    pos = jnp.broadcast_to(positions(num_tokens, self.decoder_dim, self.dtype),
                           (b, num_tokens, self.decoder_dim))
    pos_vis = gather_tokens(pos, visible_ids)   # [B, K, Dd]
    pos_mask = gather_tokens(pos, masked_ids)   # [B, M, Dd]
    x = jnp.concatenate([to_decoder(fused) + pos_vis,
                         mask_token[...].astype(self.dtype) + pos_mask], axis=1)
    context = [to_decoder(h) + pos_vis for h in reversed(hierarchy)]  # deepest first
    return decoder(x, context, masked_ids.shape[1], rngs=rngs, deterministic=deterministic)

  def __call__(self, video: jax.Array, audio: jax.Array, mask_video: jax.Array,
               mask_audio: jax.Array, *, rngs: nnx.Rngs | None = None,
               deterministic: bool = True) -> dict[str, jax.Array]:
    """video [B, T, H, W, 3] (normalised float, or uint8 frames: `pixels.model_input`),
    audio [B, time, freq] (normalised fbank),
    mask_video [B, Nv] / mask_audio [B, Na] bool (True = masked).

    Returns rec_video [B, Mv, 2*16*16*3], rec_audio [B, Ma, 256] (masked tokens, raster order),
    video_levels / audio_levels [L, B, D] (mean-pooled hierarchy features, shallow to deep),
    masked_ids_video [B, Mv], masked_ids_audio [B, Ma].
    """
    video = pixels.model_input(video)  # uint8 frames from the pipeline: normalised here
    vis_v, masked_v = masking.mask_to_ids(mask_video, self.num_visible_video)
    vis_a, masked_a = masking.mask_to_ids(mask_audio, self.num_visible_audio)
    enc_v, hier_v = self.encoder(video.astype(self.dtype), visible_ids=vis_v,
                                 keep_layers=self.hierarchy_layers, rngs=rngs,
                                 deterministic=deterministic)
    enc_a, hier_a = self.encoder_audio(audio.astype(self.dtype), visible_ids=vis_a,
                                       keep_layers=self.hierarchy_layers, rngs=rngs,
                                       deterministic=deterministic)
    fused_v, fused_a = self.encoder_fusion(enc_v, enc_a, rngs=rngs, deterministic=deterministic)
    rec_v = self._decode(self.decoder, self.encoder_to_decoder, self.mask_token, fused_v,
                         hier_v, vis_v, masked_v, self.geo.num_video_tokens, rngs, deterministic)
    rec_a = self._decode(self.decoder_audio, self.encoder_to_decoder_audio,
                         self.mask_token_audio, fused_a, hier_a, vis_a, masked_a,
                         self.geo.num_audio_tokens, rngs, deterministic)
    # Named: the contrastive loss gathers these pooled features across devices, and XLA may
    # place that all-gather at the pooling (tools/aot_compile allows gathers by this name).
    with jax.named_scope(CONTRASTIVE_FEATURES_SCOPE):
      video_levels = jnp.stack([h.mean(axis=1) for h in hier_v])
      audio_levels = jnp.stack([h.mean(axis=1) for h in hier_a])
    return {
        "rec_video": rec_v,
        "rec_audio": rec_a,
        "video_levels": video_levels,
        "audio_levels": audio_levels,
        "masked_ids_video": masked_v,
        "masked_ids_audio": masked_a,
    }
