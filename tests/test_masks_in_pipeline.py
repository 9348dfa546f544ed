"""config.data.masks_in_pipeline end to end: pre-training steps on synthetic data with the masks
drawn by the input pipeline; the masks that reach the loss have the model's exact counts."""
import jax
import numpy as np
import pytest

from configs import test_pretrain
from hicmae_jax import objectives, train

pytestmark = pytest.mark.slow  # trains a model or starts processes


def test_pipeline_masks_reach_the_loss_with_exact_counts(tmp_path, monkeypatch):
  config = test_pretrain.get_config()
  config.data.synthetic_dir = str(tmp_path / "synthetic")
  config.data.synthetic_num_train = 8  # two batches of 4; no val/test split to generate
  config.data.synthetic_num_val = config.data.synthetic_num_test = 0
  config.data.masks_in_pipeline = True
  config.num_train_steps = 2
  seen = []
  loss = objectives.pretrain_loss

  def spy(model, batch, **kw):
    # Traced once: the step's batch carries the pipeline's masks, so the model draws none.
    assert {"mask_video", "mask_audio"} <= set(batch)
    jax.debug.callback(lambda v, a: seen.append((np.asarray(v), np.asarray(a))),
                       batch["mask_video"], batch["mask_audio"])
    return loss(model, batch, **kw)

  def no_device_masks(*args, **kw):
    raise AssertionError("masks drawn on device although the pipeline draws them")

  monkeypatch.setattr(objectives, "pretrain_loss", spy)
  monkeypatch.setattr(objectives, "draw_masks", no_device_masks)
  train.run(config, str(tmp_path / "run"))
  assert len(seen) == 2  # one batch per step
  for mask_video, mask_audio in seen:
    assert mask_video.shape == (4, 16) and mask_audio.shape == (4, 32)
    # video: 4 tubelet slots x int(0.75 * 2 * 2) = 12; audio: int(0.75 * (64/16) * (128/16)) = 24
    assert (mask_video.sum(1) == 12).all() and (mask_audio.sum(1) == 24).all()
    tubes = mask_video.reshape(4, 4, 4)
    assert (tubes == tubes[:, :1]).all()  # one spatial mask shared over time
  assert not np.array_equal(seen[0][1], seen[1][1])  # fresh masks every batch

