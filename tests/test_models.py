"""Model structure: parameter counts and names against the official Base checkpoints, shapes for
every size, gradients, eval determinism, bfloat16 vs float32, unimodal variants."""
import re

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from configs.common import SIZES, model_config, model_config_for_tests
from hicmae_jax import objectives
from hicmae_jax.checkpoints import mapping
from hicmae_jax.models import layers, params as params_lib
from hicmae_jax.models.classifier import FinetuneModel
from hicmae_jax.models.hicmae import PretrainModel


def read_keys(path):
  """{name: shape} from a spec/keys_*.txt table."""
  table = {}
  for line in open(path):
    if line.startswith("#") or not line.strip():
      continue
    name, shape = line.split("\t")[:2]
    table[name] = tuple(int(x) for x in re.findall(r"\d+", shape))
  return table


def abstract_shapes(build):
  return params_lib.param_shapes(nnx.eval_shape(build))


@pytest.mark.parametrize("kind,total", [("pretrain", 99_609_344), ("finetune", 80_792_602)])
def test_base_matches_official_checkpoint_tensor_by_tensor(data_dir, kind, total):
  cfg = model_config("base")
  cfg.num_classes = 6
  cls = PretrainModel if kind == "pretrain" else FinetuneModel
  shapes = abstract_shapes(lambda: cls(cfg, rngs=nnx.Rngs(0)))
  assert sum(int(np.prod(s)) for s in shapes.values()) == total
  official = read_keys(data_dir / f"keys_{kind}_base.txt")
  ours = {mapping.path_to_torch_key(p): s for p, s in shapes.items()}
  assert set(ours) == set(official)
  for name, shape in official.items():
    assert int(np.prod(ours[name])) == int(np.prod(shape)), name
  # Layout conversion gives the official shapes exactly.
  converted = {mapping.path_to_torch_key(p): mapping.flax_to_torch_array(
      p, np.empty(s, np.uint8)).shape for p, s in shapes.items()}
  assert converted == official


@pytest.mark.parametrize("size,pre,fine", [("tiny", 25_360_640, 20_473_370),
                                           ("small", 50_584_576, 45_652_250)])
def test_param_counts_other_sizes(size, pre, fine):
  cfg = model_config(size)
  cfg.num_classes = 6
  count = lambda shapes: sum(int(np.prod(s)) for s in shapes.values())
  assert count(abstract_shapes(lambda: PretrainModel(cfg, rngs=nnx.Rngs(0)))) == pre
  assert count(abstract_shapes(lambda: FinetuneModel(cfg, rngs=nnx.Rngs(0)))) == fine


@pytest.mark.parametrize("size", sorted(SIZES))
def test_output_shapes_every_size(size):
  cfg = model_config(size)
  cfg.num_classes = 7
  b = 2
  video = jax.ShapeDtypeStruct((b, 16, 160, 160, 3), jnp.float32)
  audio = jax.ShapeDtypeStruct((b, 256, 128), jnp.float32)
  mask_v = jax.ShapeDtypeStruct((b, 800), jnp.bool_)
  mask_a = jax.ShapeDtypeStruct((b, 128), jnp.bool_)

  def pretrain(v, a, mv, ma):
    return PretrainModel(cfg, rngs=nnx.Rngs(0))(v, a, mv, ma)

  out = jax.eval_shape(pretrain, video, audio, mask_v, mask_a)
  levels = len(cfg.hierarchy_layers)
  assert out["rec_video"].shape == (b, 720, 1536)
  assert out["rec_audio"].shape == (b, 102, 256)
  assert out["video_levels"].shape == (levels, b, cfg.dim)

  def finetune(v, a):
    return FinetuneModel(cfg, rngs=nnx.Rngs(0))(v, a)

  out = jax.eval_shape(finetune, video, audio)
  assert out["logits"].shape == (b, 7)
  assert out["feature"].shape == (b, 4 * cfg.dim)


def loss_config(**kw):
  c = ml_collections.ConfigDict(dict(
      frame_difference=True, contrastive_temperature=0.07, contrastive_group_size=0,
      video_weight=1.0, audio_weight=1.0, contrastive_weight=0.0025))
  c.update(kw)
  return c


def shallow_config(**kw):
  """Fewer layers (2 per encoder, 2 decoder layers) to keep compile times low on CPU."""
  return model_config_for_tests(video_depth=2, audio_depth=2, decoder_depth=2,
                                hierarchy_layers=(1,), **kw)


def small_batch(b=2, key=0):
  kv, ka = jax.random.split(jax.random.key(key))
  return {"video": jax.random.normal(kv, (b, 16, 32, 32, 3)),
          "audio": jax.random.normal(ka, (b, 64, 32))}


def test_every_pretraining_parameter_gets_a_gradient():
  model = PretrainModel(shallow_config(drop_path=0.1), rngs=nnx.Rngs(0))
  batch = small_batch(4)

  def loss_fn(m):
    return objectives.pretrain_loss(m, batch, loss_cfg=loss_config(contrastive_weight=1.0),
                                    key=jax.random.key(1), deterministic=False)[0]

  grads = nnx.jit(nnx.grad(loss_fn))(model)
  flat = nnx.to_flat_state(grads)
  zero = [p for p, g in flat if not np.any(np.asarray(g.get_value()) != 0)]
  assert not zero, f"parameters without gradient: {zero}"
  assert len(flat) == len(params_lib.param_shapes(model))


def test_eval_mode_is_deterministic_and_train_mode_is_not():
  cfg = model_config_for_tests(drop_path=0.5, num_classes=3, head_dropout=0.5)
  model = FinetuneModel(cfg, rngs=nnx.Rngs(0))
  batch = small_batch()
  a = model(batch["video"], batch["audio"])["logits"]
  b = model(batch["video"], batch["audio"])["logits"]
  np.testing.assert_array_equal(a, b)
  t1 = model(batch["video"], batch["audio"], rngs=nnx.Rngs(dropout=1), deterministic=False)
  t2 = model(batch["video"], batch["audio"], rngs=nnx.Rngs(dropout=2), deterministic=False)
  assert not np.allclose(t1["logits"], t2["logits"])


def test_bfloat16_forward_close_to_float32():
  cfg32 = model_config_for_tests(num_classes=3)
  cfg16 = model_config_for_tests(num_classes=3, dtype="bfloat16")
  m32 = FinetuneModel(cfg32, rngs=nnx.Rngs(0))
  m16 = FinetuneModel(cfg16, rngs=nnx.Rngs(0))
  params_lib.assign_params(m16, params_lib.flat_params(m32))
  for p, v in params_lib.flat_params(m16).items():
    assert v.dtype == jnp.float32, p  # float32 master weights
  batch = small_batch()
  f32 = m32(batch["video"], batch["audio"])
  f16 = m16(batch["video"], batch["audio"])
  assert f16["logits"].dtype == jnp.bfloat16
  np.testing.assert_allclose(np.asarray(f16["feature"], np.float32), f32["feature"], atol=0.1)
  np.testing.assert_allclose(np.asarray(f16["logits"], np.float32), f32["logits"], atol=0.1)
  # and it is not trivially equal (the compute really ran in bfloat16)
  assert not np.array_equal(np.asarray(f16["feature"], np.float32), np.asarray(f32["feature"]))


def test_remat_gives_the_same_loss_and_gradients():
  """Rematerialisation (per block, the model's `remat` switch) changes memory, not numbers."""
  from hicmae_jax.models.layers import Block, BlockOptions, CSBlock, run_block, xavier_uniform
  opts = BlockOptions(mlp_ratio=4.0, eps=1e-6, dtype=jnp.float32, param_dtype=jnp.float32,
                      attention_impl="native", kernel_init=xavier_uniform)
  block = Block(16, 2, opts, drop_path=0.0, rngs=nnx.Rngs(0))
  cs = CSBlock(16, 2, opts, context_dim=16, drop_path=0.0, rngs=nnx.Rngs(1))
  x = jax.random.normal(jax.random.key(0), (2, 5, 16))
  c = jax.random.normal(jax.random.key(1), (2, 3, 16))
  results = []
  for remat in (False, True):
    def loss_fn(b, s):
      y = run_block(b, x, remat=remat, rngs=None, deterministic=True)
      y = run_block(s, y, c, remat=remat, rngs=None, deterministic=True)
      return jnp.sum(jnp.sin(y))
    loss, grads = nnx.value_and_grad(loss_fn, argnums=(0, 1))(block, cs)
    results.append((loss, jax.tree.leaves(grads)))
  np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-6)
  for a, b in zip(results[0][1], results[1][1]):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  # and the whole model builds and runs with the switch on
  cfg = shallow_config(remat=True)
  out = jax.eval_shape(lambda: PretrainModel(cfg, rngs=nnx.Rngs(0))(
      **{k: v for k, v in zip(("video", "audio"), small_batch().values())},
      mask_video=jnp.zeros((2, 32), bool).at[:, :24].set(True),
      mask_audio=jnp.zeros((2, 8), bool).at[:, :6].set(True)))
  assert out["rec_video"].shape == (2, 24, 1536)


@pytest.mark.parametrize("missing", ["audio_depth", "video_depth"])
def test_unimodal_variants(missing):
  cfg = model_config_for_tests(num_classes=4, **{missing: 0})
  model = FinetuneModel(cfg, rngs=nnx.Rngs(0))
  batch = small_batch()
  video = None if missing == "video_depth" else batch["video"]
  audio = None if missing == "audio_depth" else batch["audio"]
  out = model(video, audio)
  assert out["logits"].shape == (2, 4) and out["feature"].shape == (2, cfg.dim)
  names = {p[0] for p in params_lib.param_shapes(model)}
  assert "encoder_fusion" not in names


def test_regression_head_activation():
  cfg = model_config_for_tests(task="regression", num_targets=3, head_activation="sigmoid")
  out = FinetuneModel(cfg, rngs=nnx.Rngs(0))(*small_batch().values())
  assert out["logits"].shape == (2, 3)
  assert np.all((np.asarray(out["logits"]) > 0) & (np.asarray(out["logits"]) < 1))


def test_bad_hierarchy_config_is_named():
  with pytest.raises(ValueError, match="hierarchy_layers"):
    PretrainModel(model_config_for_tests(hierarchy_layers=(1, 2)), rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="hierarchy_layers"):
    PretrainModel(model_config_for_tests(hierarchy_layers=(1, 2, 7)), rngs=nnx.Rngs(0))


def _einsum_attention(q, k, v):
  logits = jnp.einsum("bqhd,bkhd->bhqk", q, k)
  return jnp.einsum("bhqk,bkhd->bqhd", jax.nn.softmax(logits, axis=-1), v)


def test_native_attention_backward_equals_autodiff_in_float64():
  """The hand-written attention backward (layers._native_attention) against autodiff of the
  plain einsums, in float64 (exact up to rounding), with cross-attention shapes."""
  jax.config.update("jax_enable_x64", True)
  try:
    keys = jax.random.split(jax.random.key(0), 4)
    q = jax.random.normal(keys[0], (2, 7, 3, 4), jnp.float64) * 2
    k = jax.random.normal(keys[1], (2, 5, 3, 4), jnp.float64) * 2
    v = jax.random.normal(keys[2], (2, 5, 3, 4), jnp.float64)
    w = jax.random.normal(keys[3], (2, 7, 3, 4), jnp.float64)
    ours = jax.grad(lambda *a: jnp.sum(layers.attention_core(*a, "native") * w), (0, 1, 2))
    ref = jax.grad(lambda *a: jnp.sum(_einsum_attention(*a) * w), (0, 1, 2))
    np.testing.assert_allclose(layers.attention_core(q, k, v, "native"),
                               _einsum_attention(q, k, v), rtol=1e-12, atol=1e-12)
    for a, b in zip(ours(q, k, v), ref(q, k, v)):
      np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
  finally:
    jax.config.update("jax_enable_x64", False)


def test_materialize_cotangent_is_an_identity_with_its_gradient():
  x = jnp.arange(6.0).reshape(2, 3)
  f = lambda x: jnp.sum(jnp.sin(layers.materialize_cotangent(x)) * x)  # noqa: E731
  g = lambda x: jnp.sum(jnp.sin(x) * x)  # noqa: E731
  np.testing.assert_array_equal(layers.materialize_cotangent(x), x)
  np.testing.assert_allclose(jax.grad(f)(x), jax.grad(g)(x), rtol=1e-6)
  # and under the CPU compiler options the barrier survives to fusion (and still compiles)
  from hicmae_jax import sharding
  mesh = sharding.make_mesh(ml_collections.ConfigDict({"data": -1, "fsdp": 1}))
  opts = sharding.compiler_options(mesh)
  assert opts == {"xla_disable_hlo_passes": "cse_barrier_expander"}
  compiled = jax.jit(jax.grad(f), compiler_options=opts).lower(x).compile()
  assert "opt-barrier" in compiled.as_text()
  np.testing.assert_allclose(compiled(x), jax.grad(g)(x), rtol=1e-6)
