"""The size table (test/tiny/small/base) and the model config built from a size name.

Lives next to the models (configs/common.py re-exports it): the checkpoint reader needs the
sizes too, and the package never imports the repo's configs/. ml_collections only.
"""
import ml_collections

# width, heads, encoder depths, fusion depth, decoder (per modality) width/heads/depth, hierarchy.
SIZES = {
    # CPU-sized, for the test suite (same structure as the fixtures' tiny original models).
    "test": dict(dim=32, num_heads=2, video_depth=4, audio_depth=4, fusion_depth=1,
                 decoder_dim=16, decoder_heads=2, decoder_depth=4, hierarchy_layers=(1, 2, 3)),
    # Not in the public release: decoder 192 wide / 3 heads like Small (25,360,640 params).
    "tiny": dict(dim=256, num_heads=4, video_depth=10, audio_depth=10, fusion_depth=2,
                 decoder_dim=192, decoder_heads=3, decoder_depth=4, hierarchy_layers=(3, 6, 9)),
    "small": dict(dim=384, num_heads=6, video_depth=10, audio_depth=10, fusion_depth=2,
                  decoder_dim=192, decoder_heads=3, decoder_depth=4, hierarchy_layers=(3, 6, 9)),
    "base": dict(dim=512, num_heads=8, video_depth=10, audio_depth=10, fusion_depth=2,
                 decoder_dim=384, decoder_heads=6, decoder_depth=4, hierarchy_layers=(3, 6, 9)),
}

# The sizes the original release registers models for (pretrain_hicmae_dim384/512_...,
# avit_dim384/512_...): their head counts are the original's (SPEC 1). Tiny's decoder is ours.
REGISTERED_SIZES = ("small", "base")


def model_config(size: str = "base") -> ml_collections.ConfigDict:
  """Model hyper-parameters for one size (pre-training and fine-tuning share them)."""
  if size not in SIZES:
    raise ValueError(f"unknown model size {size!r}; allowed: {sorted(SIZES)}")
  m = ml_collections.ConfigDict()
  m.size = size
  m.update(SIZES[size])
  m.hierarchy_layers = tuple(m.hierarchy_layers)
  m.mlp_ratio = 4.0
  m.layer_norm_eps = 1e-6
  # Input geometry.
  m.num_frames = 16
  m.input_size = 160
  m.patch_size = 16
  m.tubelet_size = 2
  m.audio_frames = 256
  m.audio_mel_bins = 128
  m.audio_patch_size = 16
  # Pre-training masks (SPEC 5.1): tube masking 0.9 for video, random 0.8 for audio.
  m.video_mask_ratio = 0.9
  m.audio_mask_ratio = 0.8
  # Regularisation (pre-training: none; fine-tuning configs set drop_path 0.1).
  m.drop_path = 0.0
  m.head_dropout = 0.0
  # Fine-tuning head.
  m.task = "classification"  # or "regression"
  m.num_classes = 0
  m.num_targets = 0
  m.head_activation = "none"  # regression output: none | sigmoid | tanh | relu
  # Scale: compute dtype (parameters stay float32), attention kernel, rematerialisation.
  m.dtype = "float32"  # float32 | bfloat16
  m.param_dtype = "float32"
  m.attention_impl = "native"  # native (einsum) | xla | cudnn (jax.nn.dot_product_attention)
  m.remat = False
  return m


def model_config_for_tests(**overrides) -> ml_collections.ConfigDict:
  """The CPU test size with the fixtures' input geometry (32x32 frames, 64x32 spectrogram)."""
  m = model_config("test")
  m.input_size = 32
  m.audio_frames = 64
  m.audio_mel_bins = 32
  m.update(overrides)
  return m


def registered_size_of_width(dim: int) -> str | None:
  """The registered size whose encoder is `dim` wide (None for other widths)."""
  for size in REGISTERED_SIZES:
    if SIZES[size]["dim"] == dim:
      return size
  return None
