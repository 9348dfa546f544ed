"""Targets and losses against the original's reference values (tiny_reference.npz)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hicmae_jax import losses, masking, targets
from hicmae_jax.models.encoders import gather_tokens
from tests.tolerances import F32_LOSSES, F32_OUTPUTS, assert_close


@pytest.fixture(scope="module")
def ref(data_dir):
  return dict(np.load(data_dir / "tiny_reference.npz"))


def _inputs(ref):
  video = ref["input/video"].transpose(0, 2, 3, 4, 1)  # [B, C, T, H, W] -> [B, T, H, W, C]
  audio = ref["input/audio"][:, 0]                      # [B, 1, time, freq] -> [B, time, freq]
  return video, audio


def test_targets_match_reference(ref):
  video, audio = _inputs(ref)
  _, ids_v = masking.mask_to_ids(jnp.asarray(ref["input/mask"]), 8)
  _, ids_a = masking.mask_to_ids(jnp.asarray(ref["input/mask_audio"]), 2)
  tv = gather_tokens(targets.video_targets(jnp.asarray(video), tubelet=2, patch=16,
                                           frame_difference=True), ids_v)
  ta = gather_tokens(targets.audio_targets(jnp.asarray(audio), patch=16), ids_a)
  assert_close(tv, ref["pretrain/target_video"], F32_OUTPUTS)
  assert_close(ta, ref["pretrain/target_audio"], F32_OUTPUTS)


def test_frame_difference_flag_changes_second_frame_only():
  video = jax.random.normal(jax.random.key(0), (1, 2, 16, 16, 3))
  plain = targets.video_targets(video, tubelet=2, patch=16, frame_difference=False)
  diff = targets.video_targets(video, tubelet=2, patch=16, frame_difference=True)
  half = 16 * 16 * 3
  np.testing.assert_allclose(diff[..., :half], plain[..., :half])
  np.testing.assert_allclose(diff[..., half:], plain[..., half:] - plain[..., :half], atol=1e-6)


def test_reconstruction_losses_match_reference(ref):
  lv = losses.masked_mse(ref["pretrain/rec_video"], ref["pretrain/target_video"])
  la = losses.masked_mse(ref["pretrain/rec_audio"], ref["pretrain/target_audio"])
  assert_close(lv, ref["pretrain/loss_video"], F32_LOSSES)
  assert_close(la, ref["pretrain/loss_audio"], F32_LOSSES)


def test_contrastive_loss_from_reference_logits(ref):
  logits = ref["pretrain/logits_per_video"]          # [L, B, B]
  np.testing.assert_allclose(ref["pretrain/logits_per_audio"], logits.transpose(0, 2, 1))
  loss = losses.symmetric_cross_entropy(jnp.asarray(logits)[:, None]).sum()
  assert_close(loss, ref["pretrain/loss_contrastive"], F32_LOSSES)
  total = (ref["pretrain/loss_video"] + ref["pretrain/loss_audio"]
           + 0.0025 * ref["pretrain/loss_contrastive"])
  assert_close(total, ref["pretrain/loss"], F32_LOSSES)


def test_group_equal_to_batch_is_global():
  key_v, key_a = jax.random.split(jax.random.key(3))
  v = jax.random.normal(key_v, (3, 8, 16))
  a = jax.random.normal(key_a, (3, 8, 16))
  full, logits_full = losses.hierarchical_contrastive_loss(v, a, temperature=0.07, group_size=8)
  glob, logits_glob = losses.hierarchical_contrastive_loss(v, a, temperature=0.07, group_size=0)
  np.testing.assert_allclose(full, glob, rtol=1e-6)
  assert logits_full.shape == (3, 1, 8, 8)
  grouped, logits_g = losses.hierarchical_contrastive_loss(v, a, temperature=0.07, group_size=4)
  assert logits_g.shape == (3, 2, 4, 4)
  # Groups see fewer negatives, so the loss differs; each group equals its own global loss.
  first, _ = losses.hierarchical_contrastive_loss(v[:, :4], a[:, :4], temperature=0.07,
                                                  group_size=0)
  second, _ = losses.hierarchical_contrastive_loss(v[:, 4:], a[:, 4:], temperature=0.07,
                                                   group_size=0)
  np.testing.assert_allclose(grouped, 0.5 * (first + second), rtol=1e-6)
  with pytest.raises(ValueError, match="does not divide"):
    losses.hierarchical_contrastive_loss(v, a, temperature=0.07, group_size=3)


def test_contrastive_loss_perfect_alignment_is_low():
  v = jnp.eye(4)[None] * 10
  loss, _ = losses.hierarchical_contrastive_loss(v, v, temperature=0.07, group_size=0)
  assert float(loss) < 1e-5  # log(1 + 3 exp(-1/0.07))
