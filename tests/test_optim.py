"""Optimiser: schedule, weight-decay groups and layer decay against the original's tables,
accumulation, clipping, freezing, and use through nnx.Optimizer."""
import re

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from flax import nnx

from configs.common import model_config, model_config_for_tests
from hicmae_jax import optim
from hicmae_jax.checkpoints import mapping
from hicmae_jax.models.classifier import FinetuneModel
from hicmae_jax.models.hicmae import PretrainModel


def read_groups(path):
  """{torch name: (ndim, weight_decay, lr_scale)} from a keys_*.txt table."""
  table = {}
  for line in open(path):
    if line.startswith("#") or not line.strip():
      continue
    name, shape, _, _, wd, scale = line.rstrip("\n").split("\t")
    ndim = len(re.findall(r"\d+", shape))
    table[name] = (ndim, float(wd), float(scale))
  return table


@pytest.fixture(scope="module")
def base_finetune_state():
  cfg = model_config("base")
  cfg.num_classes = 6
  abstract = nnx.eval_shape(lambda: FinetuneModel(cfg, rngs=nnx.Rngs(0)))
  return nnx.state(abstract, nnx.Param)


@pytest.fixture(scope="module")
def small_model():
  """The CPU test-size fine-tuning model (built once: the first build compiles its init ops)."""
  return FinetuneModel(model_config_for_tests(num_classes=5), rngs=nnx.Rngs(0))


def optim_cfg(**kw):
  o = ml_collections.ConfigDict(dict(
      lr=1e-2, min_lr=1e-3, warmup_epochs=0, weight_decay=0.05, b1=0.9, b2=0.999, eps=1e-8,
      layer_decay=1.0, clip_grad_norm=0.0, accum_steps=1, freeze="none"))
  o.update(kw)
  return o


# ---- schedule -----------------------------------------------------------------------------------

def test_schedule_values():
  base, final, warm, total = 1e-3, 1e-6, 10, 110
  sched = optim.lr_schedule(base, final, warm, total)
  # Warm-up is np.linspace(0, base, 10): step 0 -> 0, step 9 -> base, step 5 -> 5/9 base.
  assert float(sched(0)) == 0.0
  np.testing.assert_allclose(float(sched(5)), base * 5 / 9, rtol=1e-6)
  np.testing.assert_allclose(float(sched(9)), base, rtol=1e-6)
  # Cosine starts at base (i = 0), is halfway at i = 50 of 100, and ends at min.
  np.testing.assert_allclose(float(sched(10)), base, rtol=1e-6)
  np.testing.assert_allclose(float(sched(60)), (base + final) / 2, rtol=1e-6)
  # Last step of the original's table: i = 99 of 100.
  np.testing.assert_allclose(float(sched(109)),
                             final + 0.5 * (base - final) * (1 + np.cos(np.pi * 99 / 100)),
                             rtol=0, atol=1e-10)  # float32: cancellation near cos = -1
  np.testing.assert_allclose(float(sched(110)), final, rtol=1e-6)
  np.testing.assert_allclose(float(sched(500)), final, rtol=1e-6)
  # Every step equals the original's numpy table.
  table = optim.schedule_table(base, final, warm, total)
  ours = np.array(jax.vmap(sched)(jnp.arange(total)))
  np.testing.assert_allclose(ours, table, rtol=1e-5, atol=1e-10)


def test_schedule_without_warmup_and_scaled_lr():
  sched = optim.lr_schedule(2.0, 0.0, 0, 4)
  np.testing.assert_allclose([float(sched(i)) for i in range(5)],
                             [2.0, 1 + np.cos(np.pi / 4), 1.0, 1 + np.cos(3 * np.pi / 4), 0.0],
                             rtol=1e-6, atol=1e-7)
  assert optim.scaled_lr(3e-4, 160) == pytest.approx(1.875e-4)  # SPEC 6
  assert optim.scaled_lr(1e-3, 56) == pytest.approx(2.1875e-4)   # SPEC 7
  cfg = _recipe_optim()
  sched = optim.make_schedule(cfg, total_steps=100, steps_per_epoch=4, global_batch_size=56)
  np.testing.assert_allclose(float(sched(19)), 2.1875e-4, rtol=1e-6)  # end of 5-epoch warm-up
  np.testing.assert_allclose(float(sched(100)), 1e-6 * 56 / 256, rtol=1e-6)


# ---- parameter groups vs the original's tables --------------------------------------------------

def test_layer_ids_base():
  kw = dict(num_encoder_layers=10, num_fusion_layers=2)
  assert optim.layer_id(("encoder", "patch_embed", "proj", "kernel"), **kw) == 0
  assert optim.layer_id(("encoder_audio", "patch_embed", "proj", "bias"), **kw) == 0
  assert optim.layer_id(("encoder", "blocks", 0, "attn", "qkv", "kernel"), **kw) == 1
  assert optim.layer_id(("encoder_audio", "blocks", 9, "norm1", "scale"), **kw) == 10
  assert optim.layer_id(("encoder_fusion", "blocks", 0, "mlp", "fc1", "kernel"), **kw) == 11
  assert optim.layer_id(("encoder_fusion", "blocks_audio", 1, "attn", "q_bias"), **kw) == 12
  for other in [("encoder", "norm", "bias"), ("encoder_fusion", "norm", "scale"),
                ("encoder_fusion", "norm_audio", "bias"), ("video_layer_weights",),
                ("fc_norm", "scale"), ("head", "kernel"),
                ("decoder", "blocks", 0, "norm1", "scale"), ("mask_token",)]:
    assert optim.layer_id(other, **kw) == 13, other
  assert optim.layer_id("encoder.blocks.3.attn.q_bias", **kw) == 4  # dotted flat-dict names


def test_groups_match_original_finetune_table(data_dir, base_finetune_state):
  """For every tensor of the official Base fine-tuning model: lr scale and weight decay as the
  original's optimizer factory assigns them (layer decay 0.75)."""
  table = read_groups(data_dir / "keys_finetune_base.txt")
  state = base_finetune_state
  assert optim.count_layers(state) == (10, 2)
  wd = optim.flat_leaves(optim.weight_decay_mask(state))
  scales = optim.flat_leaves(optim.layer_decay_scales(state, 0.75, 10, 2))
  assert len(wd) == len(scales) == len(table) == 370
  for name, (ndim, want_wd, want_scale) in table.items():
    path = mapping.torch_key_to_path(name, ndim)
    np.testing.assert_allclose(scales[path], want_scale, rtol=1e-6, err_msg=name)
    assert wd[path] == (want_wd > 0), name


def test_weight_decay_matches_original_pretrain_table(data_dir):
  cfg = model_config("base")
  abstract = nnx.eval_shape(lambda: PretrainModel(cfg, rngs=nnx.Rngs(0)))
  wd = optim.flat_leaves(optim.weight_decay_mask(nnx.state(abstract, nnx.Param)))
  table = read_groups(data_dir / "keys_pretrain_base.txt")
  assert len(wd) == len(table) == 540
  for name, (ndim, want_wd, want_scale) in table.items():
    assert want_scale == 1.0   # no layer decay in pre-training
    path = mapping.torch_key_to_path(name, ndim)
    if name == "mask_token_audio":
      # The original decays it by accident (exact-name skip list); we do not (SPEC 11).
      assert want_wd > 0 and not wd[path]
      continue
    assert wd[path] == (want_wd > 0), name


def test_mask_and_scales_on_real_model_all_tree_forms(small_model):
  state = nnx.state(small_model, nnx.Param)
  assert optim.count_layers(state) == (4, 1)
  forms = [state, nnx.as_pure(state),
           {".".join(map(str, p)): v.get_value() for p, v in nnx.to_flat_state(state)}]
  results = [optim.flat_leaves(optim.weight_decay_mask(t)) for t in forms]
  assert results[0] == results[1] == results[2]
  wd = results[0]
  assert wd[("encoder", "blocks", 0, "attn", "qkv", "kernel")]
  assert wd[("encoder_audio", "patch_embed", "proj", "kernel")]
  assert wd[("head", "kernel")]
  assert not wd[("head", "bias")] and not wd[("video_layer_weights",)]
  assert not wd[("encoder", "blocks", 0, "attn", "q_bias")]
  assert not wd[("fc_norm", "scale")]
  scales = optim.flat_leaves(optim.layer_decay_scales(state, 0.5, 4, 1))
  assert scales[("encoder", "patch_embed", "proj", "kernel")] == 0.5 ** 6
  assert scales[("encoder_audio", "blocks", 3, "mlp", "fc2", "bias")] == 0.5 ** 2
  assert scales[("encoder_fusion", "blocks_audio", 0, "attn", "qkv", "kernel")] == 0.5
  assert scales[("head", "bias")] == 1.0


def test_mask_tokens_never_decay():
  params = {"mask_token": jnp.zeros((1, 1, 4)), "mask_token_audio": jnp.zeros((1, 1, 4)),
            "encoder_to_decoder": {"kernel": jnp.zeros((4, 4)), "bias": jnp.zeros(4)}}
  assert optim.weight_decay_mask(params) == {
      "mask_token": False, "mask_token_audio": False,
      "encoder_to_decoder": {"kernel": True, "bias": False}}


# ---- the transformation -------------------------------------------------------------------------

def test_zero_grad_step_is_scaled_weight_decay(small_model):
  """With zero gradients Adam's direction is 0, so one step is -lr * scale * wd * p on decayed
  tensors and nothing elsewhere: checks the wd mask and the layer scales inside the chain."""
  model = nnx.clone(small_model)
  cfg = optim_cfg(lr=0.1, layer_decay=0.5, weight_decay=0.3)
  state = nnx.state(model, nnx.Param)
  tx = optim.make_optimizer(cfg, state, total_steps=10, steps_per_epoch=5)
  opt = nnx.Optimizer(model, tx, wrt=nnx.Param)
  before = {p: np.array(v) for p, v in optim.flat_leaves(state).items()}

  @nnx.jit
  def step(model, opt):
    grads = jax.tree.map(jnp.zeros_like, nnx.state(model, nnx.Param))
    opt.update(model, grads)

  step(model, opt)
  after = optim.flat_leaves(nnx.state(model, nnx.Param))
  for path, p0 in before.items():
    s = optim.layer_scale(path, 0.5, 4, 1)
    want = p0 * (1 - 0.1 * s * 0.3) if p0.ndim > 1 else p0
    np.testing.assert_allclose(np.array(after[path]), want, rtol=1e-6, atol=1e-9,
                               err_msg=str(path))
  np.testing.assert_allclose(float(optim.current_lr(opt.opt_state)), 0.1, rtol=1e-6)


class Toy(nnx.Module):
  """encoder -> fc_norm -> head, named like the real model's parts."""

  def __init__(self, rngs):
    self.encoder = nnx.Linear(3, 4, rngs=rngs)
    self.fc_norm = nnx.LayerNorm(4, rngs=rngs)
    self.head = nnx.Linear(4, 2, rngs=rngs)

  def __call__(self, x):
    return self.head(self.fc_norm(jnp.tanh(self.encoder(x))))


def _loss(model, x, y):
  return jnp.mean((model(x) - y) ** 2)


@nnx.jit
def _train_step(model, opt, x, y):
  loss, grads = nnx.value_and_grad(_loss)(model, x, y)
  opt.update(model, grads)
  return loss


def _toy_data():
  rng = np.random.default_rng(0)
  return (jnp.asarray(rng.normal(size=(3, 8, 3)), jnp.float32),
          jnp.asarray(rng.normal(size=(3, 8, 2)), jnp.float32))


def test_accumulation_equals_doubled_batch():
  xs, ys = _toy_data()
  kw = dict(total_steps=6, steps_per_epoch=2)
  cfg = optim_cfg(lr=0.05, min_lr=0.01, warmup_epochs=1)  # lr changes every update
  big, small = Toy(nnx.Rngs(0)), Toy(nnx.Rngs(0))
  opt_big = nnx.Optimizer(big, optim.make_optimizer(cfg, nnx.state(big, nnx.Param), **kw),
                          wrt=nnx.Param)
  cfg_acc = optim_cfg(lr=0.05, min_lr=0.01, warmup_epochs=1, accum_steps=2)
  opt_small = nnx.Optimizer(small, optim.make_optimizer(cfg_acc, nnx.state(small, nnx.Param), **kw),
                            wrt=nnx.Param)
  for x, y in zip(xs, ys):
    _train_step(big, opt_big, x, y)
    _train_step(small, opt_small, x[:4], y[:4])
    _train_step(small, opt_small, x[4:], y[4:])
    np.testing.assert_allclose(float(optim.current_lr(opt_small.opt_state)),
                               float(optim.current_lr(opt_big.opt_state)), rtol=1e-7)
  a = optim.flat_leaves(nnx.state(big, nnx.Param))
  b = optim.flat_leaves(nnx.state(small, nnx.Param))
  start = optim.flat_leaves(nnx.state(Toy(nnx.Rngs(0)), nnx.Param))
  for path in a:
    assert not np.allclose(np.array(a[path]), np.array(start[path]))  # they did move
    np.testing.assert_allclose(np.array(b[path]), np.array(a[path]), atol=1e-6, err_msg=str(path))


def _adam_mu(state):
  found = []
  jax.tree_util.tree_map(lambda s: found.append(s) if isinstance(s, optax.ScaleByAdamState)
                         else None, state,
                         is_leaf=lambda s: isinstance(s, optax.ScaleByAdamState))
  return found[0].mu


def test_clipping_limits_the_gradient():
  params = {"encoder": {"kernel": jnp.ones((3, 4))}, "head": {"bias": jnp.ones(2)}}
  grads = jax.tree.map(lambda p: 100.0 * p, params)    # global norm 100 * sqrt(14)
  for clip, want in [(1.0, 1.0), (0.0, 100.0 * np.sqrt(14))]:
    tx = optim.make_optimizer(optim_cfg(clip_grad_norm=clip), params, total_steps=10,
                              steps_per_epoch=5)
    updates, state = jax.jit(tx.update)(grads, tx.init(params), params)
    # Adam's first moment after one step is (1 - b1) * the (clipped) gradient.
    norm = float(optax.tree.norm(_adam_mu(state))) / (1 - 0.9)
    np.testing.assert_allclose(norm, want, rtol=1e-5)
  # Clipping also bounds the update when eps dominates (update ~ lr * g / eps).
  big = optim.make_optimizer(optim_cfg(eps=1e4, weight_decay=0.0), params, total_steps=10,
                             steps_per_epoch=5)
  clipped = optim.make_optimizer(optim_cfg(eps=1e4, weight_decay=0.0, clip_grad_norm=1.0),
                                 params, total_steps=10, steps_per_epoch=5)
  u_big = optax.tree.norm(big.update(grads, big.init(params), params)[0])
  u_clip = optax.tree.norm(clipped.update(grads, clipped.init(params), params)[0])
  assert float(u_clip) < float(u_big) / 100


def test_frozen_encoders_do_not_move():
  """Linear probe ('encoders'): only fc_norm and head move, with clipping and layer decay on."""
  xs, ys = _toy_data()
  model = Toy(nnx.Rngs(0))
  cfg = optim_cfg(freeze="encoders", layer_decay=0.75, clip_grad_norm=1.0, accum_steps=2)
  state = nnx.state(model, nnx.Param)
  opt = nnx.Optimizer(model, optim.make_optimizer(cfg, state, total_steps=10, steps_per_epoch=5),
                      wrt=nnx.Param)
  before = {p: np.array(v) for p, v in optim.flat_leaves(state).items()}
  for x, y in zip(xs, ys):
    _train_step(model, opt, x, y)
  after = optim.flat_leaves(nnx.state(model, nnx.Param))
  for path, p0 in before.items():
    moved = not np.array_equal(np.array(after[path]), p0)
    assert moved == (path[0] in ("fc_norm", "head")), path
  # No Adam moments are kept for the frozen parameters.
  mu = optim.flat_leaves(_adam_mu(nnx.as_pure(opt.opt_state)))
  assert {p for p, v in mu.items() if not isinstance(v, optax.MaskedNode)} == {
      ("fc_norm", "scale"), ("fc_norm", "bias"), ("head", "kernel"), ("head", "bias")}


def test_unknown_freeze_name():
  with pytest.raises(ValueError, match="optim.freeze"):
    optim.make_optimizer(optim_cfg(freeze="everything"), {"head": {"bias": jnp.zeros(2)}},
                         total_steps=10, steps_per_epoch=5)


def test_base_lr_needs_global_batch():
  cfg = _recipe_optim()
  with pytest.raises(ValueError, match="global_batch_size"):
    optim.make_optimizer(cfg, {"head": {"bias": jnp.zeros(2)}}, total_steps=10, steps_per_epoch=5)


def test_optimizer_state_for_abstract_base(base_finetune_state):
  """init traces on the abstract Base model (no arrays), with every option on."""
  cfg = _recipe_optim()
  cfg.accum_steps = 2
  cfg.clip_grad_norm = 3.0
  tx = optim.make_optimizer(cfg, base_finetune_state, total_steps=1000, steps_per_epoch=100,
                            global_batch_size=56)
  shapes = jax.eval_shape(tx.init, nnx.as_pure(base_finetune_state))
  assert float(optim.current_lr(tx.init({"head": {"bias": jnp.zeros(2)}}))) == 0.0
  assert optim.current_lr(shapes) is not None


def _recipe_optim():
  """The fine-tuning recipe's optimizer section (SPEC 7), from the config files themselves."""
  from configs import finetune_crema_d
  return finetune_crema_d.get_config().optim.copy_and_resolve_references()
