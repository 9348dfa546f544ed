"""End to end on synthetic data: pre-train, checkpoint, resume (identical continuation),
fine-tune from the checkpoint, eval-only from the fine-tuned checkpoint; the test split scored
on the best-validation weights; the trainer's imports."""
import json
import os
import subprocess
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from configs import test_pretrain
from hicmae_jax import checkpointing, eval_main, evaluate, sharding, train, writers
from hicmae_jax.models import params as params_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _params(workdir, step):
  mngr = checkpointing.manager(checkpointing.checkpoint_dir(workdir), read_only=True)
  raw = mngr.restore(step, args=ocp.args.Composite(params=ocp.args.StandardRestore()))["params"]
  mngr.close()
  return {k: np.asarray(v) for k, v in raw.items()}


@pytest.fixture(scope="module")
def synthetic_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("synthetic"))


def pretrain_config(synthetic_dir, steps):
  c = test_pretrain.get_config()
  c.data.synthetic_dir = synthetic_dir
  c.num_train_steps = steps
  return c


@pytest.mark.slow
def test_pretrain_resume_is_exact_then_finetune_and_eval(tmp_path, synthetic_dir):
  # Uninterrupted: 4 steps.
  full = str(tmp_path / "full")
  train.run(pretrain_config(synthetic_dir, 4), full)
  # Interrupted: 2 steps, then a new process-like run continues from the workdir to 4.
  part = str(tmp_path / "part")
  train.run(pretrain_config(synthetic_dir, 2), part)
  assert checkpointing.manager(checkpointing.checkpoint_dir(part),
                               read_only=True).latest_step() == 2
  train.run(pretrain_config(synthetic_dir, 4), part)
  a, b = _params(full, 4), _params(part, 4)
  assert a.keys() == b.keys()
  for k in a:
    np.testing.assert_array_equal(a[k], b[k], err_msg=k)
  # and training changed the weights
  first = _params(full, 2)
  assert any(not np.array_equal(first[k], a[k]) for k in a)

  # Fine-tune from the pre-trained checkpoint (weights only: encoders + fusion).
  ft = test_pretrain.get_config("finetune")
  ft.data.synthetic_dir = synthetic_dir
  ft.init_from = full
  ft.num_train_steps = 6   # 6 steps of 4 = one epoch of 24 clips: one validation pass
  ft_dir = str(tmp_path / "ft")
  results = train.run(ft, ft_dir)
  assert {"val", "test"} <= set(results)
  assert results["test"]["num_clips"] == 8
  tuned = _params(ft_dir, 6)
  assert any(k.startswith("encoder.") for k in tuned)
  assert not any(k.startswith("decoder") for k in tuned)
  assert json.load(open(os.path.join(ft_dir, "results.json")))["test"]["num_clips"] == 8
  # Hand check of the reported metrics from the confusion matrix (rows = true class).
  cm = np.array(results["test"]["confusion_matrix"])
  assert cm.sum() == 8
  assert results["test"]["war"] == pytest.approx(100 * np.trace(cm) / cm.sum())
  recalls = [cm[i, i] / cm[i].sum() for i in range(len(cm)) if cm[i].sum()]
  assert results["test"]["uar"] == pytest.approx(100 * np.mean(recalls))

  # One validation, at the last step: the last weights are the selected ones.
  assert results["best_val_step"] == 6 and results["test_weights"]["selected_by"] == "best_val"
  assert results["test"] == results["test_last"]
  assert "encoder.patch_embed" in open(os.path.join(ft_dir, "parameters.txt")).read()

  # Eval-only from the fine-tuned checkpoint reproduces the final test numbers and writes
  # nothing into the checkpoint folder.
  ckpt_dir = checkpointing.checkpoint_dir(ft_dir)
  before = sorted(os.walk(ckpt_dir))
  out = str(tmp_path / "eval.json")
  ev = test_pretrain.get_config("finetune")
  ev.data.test_dir = os.path.join(synthetic_dir, "test")
  report = eval_main.evaluate_checkpoint(ev, ft_dir, results_path=out)
  assert sorted(os.walk(ckpt_dir)) == before
  for key in ("war", "uar", "weighted_f1"):
    assert report[key] == pytest.approx(results["test"][key], abs=1e-9)
  assert json.load(open(out))["num_clips"] == 8


@pytest.mark.slow
def test_linear_probe_moves_only_the_head(tmp_path, synthetic_dir):
  pre = str(tmp_path / "pre")
  train.run(pretrain_config(synthetic_dir, 1), pre)
  probe = test_pretrain.get_config("linear_probe")
  probe.data.synthetic_dir = synthetic_dir
  probe.init_from = pre
  probe.num_train_steps = 2
  probe.optim.base_lr = 1e-2
  out = str(tmp_path / "probe")
  results = train.run(probe, out)
  assert results["test"]["num_clips"] == 8
  before, after = _params(pre, 1), _params(out, 2)
  for k, v in after.items():
    if k.startswith(("encoder.", "encoder_audio.", "encoder_fusion.")):
      np.testing.assert_array_equal(v, before[k], err_msg=k)
  model = train.build_model(probe, probe.seed)
  initial = {k: np.asarray(v) for k, v in params_lib.ParamsView(model).flat(model).items()}
  assert not np.allclose(after["head.kernel"], initial["head.kernel"])  # the head was trained


def test_train_step_stays_on_device_and_donates_the_state():
  config = test_pretrain.get_config()
  mesh = sharding.make_mesh(config.mesh)
  view, tx, state, state_sh, _ = train.init_state(config, mesh, 10, 5)
  step = train.make_train_step(config, view, tx, state_sh, mesh)
  rng = np.random.default_rng(0)
  host = {"video": rng.normal(size=(4, 8, 32, 32, 3)).astype(np.float32),
          "audio": rng.normal(size=(4, 64, 128)).astype(np.float32)}
  batch = sharding.global_batch(host, mesh)
  old = jax.tree.leaves(state)
  step.lower(state, batch).compile()  # compile outside the guard (it may read constants)
  with jax.transfer_guard("disallow"):  # no host round-trip inside the step
    state, metrics = step(state, batch)
    jax.block_until_ready((state, metrics))
  assert all(x.is_deleted() for x in old)  # every state buffer was donated to the new state
  assert int(state["step"]) == 1 and np.isfinite(float(metrics["loss"]))


@pytest.mark.slow
def test_test_split_is_scored_on_the_best_validation_weights(tmp_path, synthetic_dir,
                                                               monkeypatch):
  # Two validations (steps 6 and 12, an epoch being 6 steps). Their UAR is scripted so the
  # first one is the best: the selection is then known, while every test number is computed.
  real, scripted = evaluate.run_eval, iter([90.0, 50.0])

  def run_eval(config, params, view, mesh, split_dir, mode, **kwargs):
    report = real(config, params, view, mesh, split_dir, mode, **kwargs)
    return dict(report, uar=next(scripted)) if mode == "val" else report

  monkeypatch.setattr(evaluate, "run_eval", run_eval)
  config = test_pretrain.get_config("finetune")
  config.data.synthetic_dir = synthetic_dir
  config.num_train_steps = 12
  workdir = str(tmp_path / "ft")
  results = train.run(config, workdir)
  assert (results["best_val_step"], results["best_val_epoch"]) == (6, 1)
  assert results["test_weights"] == {"selected_by": "best_val", "step": 6, "epoch": 1}
  assert results["val"]["uar"] == 50.0   # the last weights' validation, at step 12
  assert checkpointing.finished_steps(checkpointing.best_dir(workdir)) == [6]

  # The reported test numbers are those of the best-validation checkpoint (step 6) and of the
  # last one (step 12), each evaluated on its own.
  ev = test_pretrain.get_config("finetune")
  ev.data.test_dir = os.path.join(synthetic_dir, "test")
  for name, checkpoint, step in (("test", checkpointing.best_dir(workdir), 6),
                                 ("test_last", workdir, 12)):
    report = eval_main.evaluate_checkpoint(ev, checkpoint, results_path=str(tmp_path / "e.json"))
    assert report["step"] == step
    assert report["confusion_matrix"] == results[name]["confusion_matrix"], name
    for key in ("war", "uar", "weighted_f1", "macro_f1"):
      assert report[key] == pytest.approx(results[name][key], abs=1e-9), (name, key)

  # A validation point per validation, the test points once.
  scalars = writers.read_event_scalars(workdir)
  assert scalars["val_uar"] == [(6, 90.0), (12, 50.0)]
  assert [s for s, _ in scalars["test_war"]] == [12] == [s for s, _ in scalars["test_last_war"]]

  # Started again, the finished run evaluates nothing, keeps results.json as it was and adds
  # nothing to TensorBoard.
  before = open(train.results_path(workdir)).read()
  again = train.run(config.copy_and_resolve_references(), workdir)
  assert again["best_val_epoch"] == 1 and again == results
  assert open(train.results_path(workdir)).read() == before
  assert writers.read_event_scalars(workdir) == scalars


@pytest.mark.slow
def test_trainer_does_not_import_representations():
  code = ("import sys, hicmae_jax.train; "
          "print(sorted(m for m in sys.modules if m.startswith('hicmae_jax.representations')))")
  out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                       check=True, env=dict(os.environ, JAX_PLATFORMS="cpu")).stdout
  assert out.strip() == "[]"


@pytest.mark.slow
def test_finetune_with_float_augment_in_the_train_step(tmp_path, synthetic_dir):
  """finetune_float_augment='device' (what 'auto' picks on GPU/TPU): the pipeline sends uint8
  frames and the host's draws, the train step augments. The first batch's loss equals the
  host-augmented one's (the inputs agree to 1-2 ulp), and a short run trains and evaluates."""
  from hicmae_jax.data.pipeline import factories as pipeline
  from hicmae_jax.models import params as params_lib

  def config(where):
    c = test_pretrain.get_config("finetune")
    c.data.synthetic_dir = synthetic_dir
    c.data.erase_prob = 0.0  # erasing's noise is drawn differently (jax.random vs numpy)
    c.data.finetune_float_augment = where
    c.num_train_steps = 2
    return c

  train.run(config("host"), str(tmp_path / "host"))  # makes the synthetic splits if absent
  losses = []
  for where in ("host", "device"):
    c = config(where)
    ds = pipeline.train_dataset_from_config(c, os.path.join(synthetic_dir, "train"),
                                            batch_size=4, seed=0)
    batch = next(iter(ds))
    assert batch["video"].dtype == (np.uint8 if where == "device" else np.float32)
    model = train.build_model(c, c.seed)
    view = params_lib.ParamsView(model)
    loss_fn = train._finetune_loss(c, view)
    losses.append(float(jax.jit(loss_fn, static_argnums=3)(
        view.flat(model), batch, jax.random.key(0), True)[0]))
  assert losses[1] == pytest.approx(losses[0], rel=1e-5)
  results = train.run(config("device"), str(tmp_path / "device"))
  assert results["test"]["num_clips"] == 8 and np.isfinite(results["test"]["war"])
