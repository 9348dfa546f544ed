"""Numerical parity with the original PyTorch HiCMAE (tiny models in tests/data, see FIXTURES.md).

The original-format checkpoints are read without torch, mapped onto our models, and run on the
reference inputs; outputs must match the original's float32 run (and float64 run, with x64).
"""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from hicmae_jax import objectives
from hicmae_jax.checkpoints import mapping
from hicmae_jax.checkpoints.pth_reader import read_torch_checkpoint
from hicmae_jax.models import layers, params as params_lib
from hicmae_jax.models.classifier import FinetuneModel
from hicmae_jax.models.hicmae import PretrainModel
from hicmae_jax.models.sizes import model_config_for_tests
from tests import tolerances


def fixture_model_config(dtype: str, **overrides):
  # The fixtures mask 24 of 32 video tokens (3 of 4 per slot) and 6 of 8 audio tokens.
  return model_config_for_tests(video_mask_ratio=0.75, audio_mask_ratio=0.75, dtype=dtype,
                                param_dtype=dtype, num_classes=5, **overrides)


def loss_config():
  return ml_collections.ConfigDict(dict(
      frame_difference=True, contrastive_temperature=0.07, contrastive_group_size=0,
      video_weight=1.0, audio_weight=1.0, contrastive_weight=0.0025))


@pytest.fixture(scope="module")
def ref(data_dir):
  return dict(np.load(data_dir / "tiny_reference.npz"))


def _load(model, path, **kw):
  state_dict = read_torch_checkpoint(str(path))["model"]
  params, dropped = mapping.state_dict_to_params(state_dict, params_lib.param_shapes(model), **kw)
  params_lib.assign_params(model, params)
  return dropped


def _inputs(ref, dtype):
  return dict(video=jnp.asarray(ref["input/video"].transpose(0, 2, 3, 4, 1), dtype),
              audio=jnp.asarray(ref["input/audio"][:, 0], dtype),
              mask_video=jnp.asarray(ref["input/mask"]),
              mask_audio=jnp.asarray(ref["input/mask_audio"]))


def _pretrain_comparisons(ref, data_dir, config, suffix):
  """[(name, ours, reference, kind)] for the pre-training model; kind picks the tolerance."""
  model = PretrainModel(config, rngs=nnx.Rngs(0))
  _load(model, data_dir / "pretrain_tiny.pth")
  run = nnx.jit(lambda m, batch: objectives.pretrain_loss(
      m, batch, loss_cfg=loss_config(), key=None, deterministic=True)[1])
  aux = run(model, _inputs(ref, config.dtype))
  r = lambda k: ref[f"pretrain/{k}{suffix}"]
  logits = np.asarray(aux["logits"])[:, 0]  # one group = the whole batch of 3
  out = [(k, aux[k], r(k), "outputs")
         for k in ("rec_video", "rec_audio", "target_video", "target_audio")]
  out += [("logits_per_video", logits, r("logits_per_video"), "logits"),
          ("logits_per_audio", logits.transpose(0, 2, 1), r("logits_per_audio"), "logits")]
  out += [(k, aux[k], r(k), "losses")
          for k in ("loss_video", "loss_audio", "loss_contrastive", "loss")]
  return out


def _finetune_comparisons(ref, data_dir, config, suffix):
  model = FinetuneModel(config, rngs=nnx.Rngs(0))
  _load(model, data_dir / "finetune_tiny.pth")
  batch = _inputs(ref, config.dtype)
  out = nnx.jit(lambda m, v, a: m(v, a))(model, batch["video"], batch["audio"])
  return [("feature", out["feature"], ref[f"finetune/feature{suffix}"], "outputs"),
          ("logits", out["logits"], ref[f"finetune/logits{suffix}"], "logits")]


F32 = dict(outputs=tolerances.F32_OUTPUTS, logits=tolerances.F32_LOGITS,
           losses=tolerances.F32_LOSSES)
F64 = dict(outputs=tolerances.F64, logits=tolerances.F64, losses=tolerances.F64)


def _assert_all_close(comparisons, tols):
  for name, ours, reference, kind in comparisons:
    tolerances.assert_close(ours, reference, tols[kind], name)


def _out_of_tolerance(comparisons, tols):
  return [name for name, ours, reference, kind in comparisons
          if tolerances.excess(ours, reference, tols[kind]) > 0]


def test_pretrain_parity_float32(ref, data_dir):
  _assert_all_close(_pretrain_comparisons(ref, data_dir, fixture_model_config("float32"), ""),
                    F32)


def test_finetune_parity_float32(ref, data_dir):
  _assert_all_close(_finetune_comparisons(ref, data_dir, fixture_model_config("float32"), ""),
                    F32)


def test_pretrain_parity_float64(ref, data_dir, x64):
  _assert_all_close(
      _pretrain_comparisons(ref, data_dir, fixture_model_config("float64"), "__f64"), F64)


def test_finetune_parity_float64(ref, data_dir, x64):
  _assert_all_close(
      _finetune_comparisons(ref, data_dir, fixture_model_config("float64"), "__f64"), F64)


def test_tolerances_catch_a_wrong_layernorm_eps(ref, data_dir):
  """The float32 bounds are tight enough to see eps 1e-5 instead of the original's 1e-6."""
  config = fixture_model_config("float32", layer_norm_eps=1e-5)
  bad = (_out_of_tolerance(_pretrain_comparisons(ref, data_dir, config, ""), F32)
         + _out_of_tolerance(_finetune_comparisons(ref, data_dir, config, ""), F32))
  assert {"logits_per_video", "feature"} <= set(bad), bad


def test_tolerances_catch_tanh_gelu(ref, data_dir, monkeypatch):
  """... and a tanh-approximated GELU instead of the exact one."""
  monkeypatch.setattr(layers, "gelu_exact", lambda x: jax.nn.gelu(x, approximate=True))
  config = fixture_model_config("float32")
  bad = (_out_of_tolerance(_pretrain_comparisons(ref, data_dir, config, ""), F32)
         + _out_of_tolerance(_finetune_comparisons(ref, data_dir, config, ""), F32))
  assert {"rec_video", "rec_audio", "logits_per_video", "loss_contrastive", "feature",
          "logits"} <= set(bad), bad


def test_pretrained_weights_into_finetune_model(ref, data_dir):
  """Encoders and fusion map by name; decoders, projections and mask tokens are dropped."""
  model = FinetuneModel(fixture_model_config("float32"), rngs=nnx.Rngs(0))
  state_dict = read_torch_checkpoint(str(data_dir / "pretrain_tiny.pth"))["model"]
  expected = params_lib.param_shapes(model)
  encoder_only = {p: s for p, s in expected.items()
                  if p[0] in ("encoder", "encoder_audio", "encoder_fusion")}
  params, dropped = mapping.state_dict_to_params(
      state_dict, encoder_only, drop_prefixes=mapping.PRETRAIN_ONLY_PREFIXES)
  assert set(params) == set(encoder_only)
  assert any(k.startswith("decoder.") for k in dropped) and "mask_token" in dropped
  assert "encoder_to_decoder.weight" in dropped
  np.testing.assert_array_equal(
      params[("encoder", "blocks", 0, "attn", "qkv", "kernel")],
      state_dict["encoder.blocks.0.attn.qkv.weight"].T)


def test_mapping_errors_name_the_tensors(data_dir):
  model = FinetuneModel(fixture_model_config("float32"), rngs=nnx.Rngs(0))
  state_dict = dict(read_torch_checkpoint(str(data_dir / "finetune_tiny.pth"))["model"])
  state_dict.pop("fc_norm.bias")
  state_dict["head.weight"] = np.zeros((7, 128), np.float32)
  state_dict["extra.thing"] = np.zeros(3, np.float32)
  with pytest.raises(mapping.MappingError) as err:
    mapping.state_dict_to_params(state_dict, params_lib.param_shapes(model))
  msg = str(err.value)
  assert "fc_norm.bias" in msg and "extra.thing" in msg
  assert "head.weight: checkpoint (7, 128), model expects (5, 128)" in msg


def test_export_import_round_trip_is_exact(data_dir):
  state_dict = read_torch_checkpoint(str(data_dir / "pretrain_tiny.pth"))["model"]
  model = PretrainModel(fixture_model_config("float32"), rngs=nnx.Rngs(0))
  params, _ = mapping.state_dict_to_params(state_dict, params_lib.param_shapes(model))
  back = mapping.params_to_state_dict(params)
  assert list(back) == list(state_dict)
  for k in state_dict:
    np.testing.assert_array_equal(back[k], state_dict[k])
