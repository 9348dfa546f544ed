"""data/transforms/mixing.py: label smoothing, Mixup/CutMix targets and lambda, and the audio
switch."""
import numpy as np
import pytest

from hicmae_jax.data.transforms import mixing


def _batch(b=6, c=5):
  rng = np.random.default_rng(0)
  return {"video": rng.standard_normal((b, 4, 16, 16, 3)).astype(np.float32),
          "audio": rng.standard_normal((b, 32, 8)).astype(np.float32),
          "label": np.array([0, 1, 2, 3, 4, 0][:b], np.int32)}


def test_label_smoothing_without_mixing():
  batch = _batch()
  out = mixing.mixup_cutmix(batch, np.random.default_rng(0), num_classes=5, mixup_alpha=0.0,
                       cutmix_alpha=0.0, label_smoothing=0.1)
  t = out["targets"]
  assert t.dtype == np.float32 and t.shape == (6, 5)
  np.testing.assert_allclose(t[np.arange(6), batch["label"]], 0.9 + 0.02, rtol=1e-6)
  np.testing.assert_allclose(t.sum(1), 1.0, rtol=1e-6)
  assert np.isclose(t[0, 1], 0.02)
  np.testing.assert_array_equal(out["video"], batch["video"])


@pytest.mark.parametrize("seed", range(6))
def test_mixup_cutmix_targets_lam_and_modalities(seed):
  batch = _batch()
  params = mixing.sample_mix_params(np.random.default_rng(seed), 16, 16)
  out = mixing.mixup_cutmix(batch, np.random.default_rng(seed), num_classes=5)
  lam = params.lam
  assert 0.0 <= lam <= 1.0
  t = out["targets"]
  np.testing.assert_allclose(t.sum(1), 1.0, rtol=1e-5)
  on, off = 0.9 + 0.02, 0.02
  # Sample 1 (label 1) pairs with sample 4 (label 4): targets = lam * y1 + (1 - lam) * y4.
  np.testing.assert_allclose(t[1, 1], lam * on + (1 - lam) * off, rtol=1e-5)
  np.testing.assert_allclose(t[1, 4], (1 - lam) * on + lam * off, rtol=1e-5)
  np.testing.assert_array_equal(out["audio"], batch["audio"])  # audio untouched by default
  v, flipped = batch["video"], batch["video"][::-1]
  if params.use_cutmix:
    yl, yh, xl, xh = params.box
    np.testing.assert_array_equal(out["video"][:, :, yl:yh, xl:xh],
                                  flipped[:, :, yl:yh, xl:xh])
    outside = np.ones((16, 16), bool)
    outside[yl:yh, xl:xh] = False
    np.testing.assert_array_equal(out["video"][:, :, outside], v[:, :, outside])
    np.testing.assert_allclose(lam, 1 - (yh - yl) * (xh - xl) / 256)
  else:
    np.testing.assert_allclose(out["video"], lam * v + (1 - lam) * flipped, atol=1e-6)
  assert out["video"].dtype == np.float32
  np.testing.assert_array_equal(batch["video"], _batch()["video"])  # input not modified


def test_mix_audio_switch():
  batch = _batch()
  params = mixing.sample_mix_params(np.random.default_rng(2), 16, 16)
  out = mixing.mixup_cutmix(batch, np.random.default_rng(2), num_classes=5, mix_audio=True)
  a = batch["audio"]
  np.testing.assert_allclose(out["audio"], params.lam * a + (1 - params.lam) * a[::-1],
                             atol=1e-6)
