"""Which experiment (and model) of a config applies to a checkpoint kind; the demo's features."""
import os

import ml_collections
import numpy as np
import pytest
import soundfile
from PIL import Image

from configs import demo, finetune_crema_d
from hicmae_jax import experiments
from hicmae_jax.data.format import schema
from hicmae_jax.data.prepare import synthetic
from hicmae_jax.models.sizes import model_config_for_tests
from hicmae_jax.representations.features import export_features

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_nested_experiments_decide_the_model():
  config = demo.get_config()
  assert "model" not in config  # the demo's top level holds only its two runs
  assert experiments.experiment_for_kind(config, "pretrain") is config.pretrain
  assert experiments.model_config_for_kind(config, "finetune").dim == 64
  assert experiments.model_config_for_kind(config, "finetune").num_classes == 4
  assert experiments.experiment_for_kind(config, "linear_probe") is config.finetune
  flat = finetune_crema_d.get_config()
  assert experiments.experiment_for_kind(flat, "pretrain") is flat
  model = model_config_for_tests()
  assert experiments.model_config_for_kind(model, "finetune") is model


def test_a_config_whose_model_cannot_be_told_is_refused():
  only_pretrain = ml_collections.ConfigDict({"pretrain": demo.get_config().pretrain})
  with pytest.raises(ValueError, match=r"nests the experiments \['pretrain'\], none of them "
                                       r"for a finetune model"):
    experiments.experiment_for_kind(only_pretrain, "finetune")
  with pytest.raises(ValueError, match="no model section"):
    experiments.experiment_for_kind(ml_collections.ConfigDict({"seed": 0}), "pretrain")
  with pytest.raises(ValueError, match="unknown checkpoint kind"):
    experiments.experiment_for_kind(demo.get_config(), "random")


def test_load_config_file():
  reduced = experiments.load_config_file(os.path.join(REPO, "configs", "learning_check.py")
                                         + ":reduced")
  assert reduced.model.dim == 32 and reduced.num_train_steps == 30
  with pytest.raises(FileNotFoundError, match="not found"):
    experiments.load_config_file(os.path.join(REPO, "configs", "missing.py"))


def test_random_init_features_of_the_demo_use_the_demos_model(tmp_path):
  frames, audio = synthetic.render_clip(1, 4, np.random.default_rng(0), frame_size=64,
                                        num_frames=40)
  frames_dir = tmp_path / "frames"
  frames_dir.mkdir()
  for i, frame in enumerate(frames, start=1):
    Image.fromarray(frame).save(frames_dir / f"{i:05d}.jpg", quality=95)
  wav = str(tmp_path / "clip.wav")
  soundfile.write(wav, audio, schema.AUDIO_SAMPLE_RATE, subtype="PCM_16")
  summary = export_features(output_dir=str(tmp_path / "features"), random_init=True,
                            config=demo.get_config(), frames_dir=str(frames_dir), wav=wav)
  assert summary["feature_dim"] == 4 * 64  # the demo's width, not the placeholder's 32
