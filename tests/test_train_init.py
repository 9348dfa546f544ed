"""The trainer's weights-only start (`config.init_from`): an original .pth, our checkpoint and
an exported folder go through checkpoints/weights (load_weights, transfer_into) the same way;
the tensors the file lacks keep their fresh, sharded values."""
import numpy as np
import pytest

from configs import test_pretrain
from hicmae_jax import checkpointing, sharding, train
from hicmae_jax.checkpoints import weights as weights_lib
from hicmae_jax.models.sizes import model_config_for_tests

SHARED = ("encoder.", "encoder_audio.", "encoder_fusion.")


def _fixture_finetune_config():
  """A fine-tuning config whose model is the tiny fixtures' (tests/data/FIXTURES.md)."""
  config = test_pretrain.get_config("finetune")
  model = model_config_for_tests(num_classes=config.model.num_classes, task="classification")
  config.model = model
  return config


def _start(config, init_from):
  mesh = sharding.make_mesh(config.mesh)
  _, _, state, state_sh, _ = train.init_state(config, mesh, 10, 5)
  fresh = {k: np.asarray(v) for k, v in state["params"].items()}
  start = checkpointing.resolve_start("/nonexistent-workdir", "", init_from)
  got = train.initial_state(config, start, None, state, state_sh, None)
  return start, fresh, got["params"], state_sh["params"]


def test_finetuning_starts_from_an_original_pth(data_dir):
  pth = str(data_dir / "pretrain_tiny.pth")
  config = _fixture_finetune_config()
  start, fresh, params, shardings = _start(config, pth)
  assert (start.mode, start.directory, start.step) == ("init_from", pth, None)
  weights = weights_lib.load_weights(pth, model_hint=config)
  assert weights.kind == "pretrain"
  encoders = [k for k in params if k.startswith(SHARED)]
  assert len(encoders) > 20
  for k in encoders:  # the file's values, exactly, placed as the run shards them
    np.testing.assert_array_equal(np.asarray(params[k]), weights.params[k], err_msg=k)
    assert params[k].sharding == shardings[k], k
  rest = [k for k in params if not k.startswith(SHARED)]
  assert "head.kernel" in rest
  for k in rest:  # what the file lacks keeps the run's initialisation
    np.testing.assert_array_equal(np.asarray(params[k]), fresh[k], err_msg=k)
  assert not any(k.startswith("decoder") for k in params)


def test_the_pth_converted_starts_the_same(data_dir, tmp_path):
  from hicmae_jax.checkpoints import conversion
  pth = str(data_dir / "pretrain_tiny.pth")
  config = _fixture_finetune_config()
  folder = str(tmp_path / "converted")
  conversion.convert_to_orbax(pth, folder, config=config)
  start, _, from_folder, _ = _start(config, folder)
  assert start.mode == "init_from" and start.step is not None
  _, _, from_pth, _ = _start(config, pth)
  for k in from_pth:
    if k.startswith(SHARED):
      np.testing.assert_array_equal(np.asarray(from_folder[k]), np.asarray(from_pth[k]), k)


def test_a_pth_is_weights_only():
  with pytest.raises(ValueError, match="config.resume=.* holds weights only.*init_from"):
    checkpointing.resolve_start("/nonexistent-workdir", __file__, "")


@pytest.mark.slow
def test_linear_probe_run_from_a_pth_keeps_its_encoders(data_dir, tmp_path, dataset_info_reads):
  from tests.test_train_e2e import _params
  pth = str(data_dir / "pretrain_tiny.pth")
  config = _fixture_finetune_config()
  config.kind = "linear_probe"
  config.data.synthetic_dir = str(tmp_path / "synthetic")
  config.init_from = pth
  config.num_train_steps = 2
  config.optim.base_lr = 1e-2
  train.ensure_synthetic_data(config)  # sets the split folders
  config.data.synthetic_dir = ""  # the run then reads them as a run on real data does
  reads = dataset_info_reads
  reads.clear()  # the reads of writing the synthetic splits do not count
  out = str(tmp_path / "probe")
  results = train.run(config, out)
  assert results["test"]["num_clips"] == 8
  assert reads.count(config.data.train_dir) == 1, reads  # the train split's dataset_info, read once
  weights = weights_lib.load_weights(pth, model_hint=config)
  after = _params(out, 2)
  for k, v in after.items():
    if k.startswith(SHARED):  # frozen in a linear probe: still the file's values
      np.testing.assert_array_equal(v, weights.params[k], err_msg=k)
