"""Every config loads, validates, and builds its model (abstractly); bad values are named."""
import glob
import importlib
import os

import pytest
from flax import nnx

from hicmae_jax import config_validation, train

CONFIGS = sorted(os.path.basename(p)[:-3] for p in glob.glob(
    os.path.join(os.path.dirname(__file__), "..", "configs", "*.py"))
                 if not p.endswith(("common.py", "__init__.py")))


@pytest.mark.parametrize("name", CONFIGS)
def test_config_validates_and_builds(name):
  config = importlib.import_module(f"configs.{name}").get_config()
  parts = [config.pretrain, config.finetune] if config.get("demo") else [config]
  for c in parts:
    c.data.train_dir = c.data.train_dir or "/data/x"
    config_validation.validate_config(c)
    nnx.eval_shape(lambda: train.build_model(c, 0))
  assert importlib.import_module(f"configs.{name}").__doc__.count("python -m") >= 1


@pytest.mark.parametrize("key,value,match", [
    ("model.video_mask_ratio", 1.0, "video_mask_ratio"),
    ("model.input_size", 150, "input_size"),
    ("model.hierarchy_layers", (3, 6), "hierarchy_layers"),
    ("model.hierarchy_layers", (3, 6, 12), "hierarchy_layers"),
    ("loss.contrastive_group_size", 48, "contrastive_group_size"),
    ("kind", "distill", "kind"),
    ("nonfinite", "ignore", "nonfinite"),
    ("model.attention_impl", "flash", "attention_impl.*allowed"),
    ("model.attention_impl", "cudnn", "needs an NVIDIA GPU"),  # the tests run on CPU
])
def test_bad_values_are_named(key, value, match):
  from configs import pretrain_base
  config = pretrain_base.get_config()
  config.data.train_dir = "/data/x"
  section, _, leaf = key.rpartition(".")
  target = config[section] if section else config
  target[leaf] = value
  with pytest.raises(ValueError, match=match):
    config_validation.validate_config(config)
