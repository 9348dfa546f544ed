"""checkpoints/weights.py: bind puts weights into a fine-tuning or pre-training model by name,
and refuses what does not fit, naming it."""
import numpy as np
import pytest

from hicmae_jax.checkpoints import weights as weights_lib
from hicmae_jax.models import sizes
from hicmae_jax.models.classifier import FinetuneModel
from hicmae_jax.models.hicmae import PretrainModel


@pytest.fixture(scope="module")
def drawn():
  return weights_lib.random_weights(sizes.model_config_for_tests(), seed=3)


def test_bind_into_the_pretraining_model_takes_every_tensor(drawn):
  view, params = weights_lib.bind(drawn, PretrainModel)
  assert set(params) == set(drawn.params)
  for k, v in drawn.params.items():
    np.testing.assert_array_equal(np.asarray(params[k]), v)
  assert view.merge(params) is not None


def test_bind_into_the_finetuning_model_takes_the_encoders(drawn):
  _, params = weights_lib.bind(drawn)  # FinetuneModel by default
  shared = [k for k in params if k.startswith(("encoder.", "encoder_audio.", "encoder_fusion."))]
  assert shared and all(np.array_equal(np.asarray(params[k]), drawn.params[k]) for k in shared)
  assert not any(k.startswith("decoder") for k in params)


def test_bind_refuses_what_does_not_fit(drawn):
  tuned = weights_lib.Weights("finetune", drawn.model, {}, {"checkpoint": "x"})
  with pytest.raises(ValueError, match="has no decoders"):
    weights_lib.bind(tuned, PretrainModel)
  lacking = weights_lib.Weights("pretrain", drawn.model,
                                {k: v for k, v in drawn.params.items()
                                 if not k.startswith("encoder.")}, {"checkpoint": "y"})
  with pytest.raises(ValueError, match="do not fit the FinetuneModel.*lacks"):
    weights_lib.bind(lacking, FinetuneModel)
  with pytest.raises(ValueError, match="model_cls must be"):
    weights_lib.bind(drawn, dict)
