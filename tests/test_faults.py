"""Fault injection: preemption (SIGTERM), Ctrl-C (SIGINT, once and twice), kill -9, damaged,
empty and missing checkpoint folders, a workdir of another run, non-finite values, missing
shards. Each test injects the fault and checks what the user sees."""
import os
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from configs import test_pretrain
from hicmae_jax import checkpointing, preemption, sharding, train
from hicmae_jax.data.format import schema
from hicmae_jax.data.prepare import synthetic

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def synthetic_dir(tmp_path_factory):
  d = str(tmp_path_factory.mktemp("faults_synthetic"))
  c = test_pretrain.get_config().data
  synthetic.generate(d, num_train=c.synthetic_num_train, num_val=c.synthetic_num_val,
                     num_test=c.synthetic_num_test, num_classes=c.synthetic_num_classes,
                     frame_size=c.synthetic_frame_size, num_frames=c.synthetic_num_frames,
                     seed=0, verbose=False)
  return d


def _start(workdir, synthetic_dir, *flags):
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             JAX_COMPILATION_CACHE_DIR=os.environ.get("HICMAE_TEST_JAX_CACHE",
                                                      "/tmp/hicmae_jax_test_cache"))
  cmd = [sys.executable, "-m", "hicmae_jax.main", "--config=configs/test_pretrain.py",
         f"--workdir={workdir}", f"--config.data.synthetic_dir={synthetic_dir}",
         "--config.log_every_steps=1", *flags]
  return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)


def _wait_for(proc, text, timeout):
  """Reads the process output until `text` appears; returns everything read."""
  seen, deadline = [], time.time() + timeout
  while time.time() < deadline:
    line = proc.stdout.readline()
    if not line:
      if proc.poll() is not None:
        break
      continue
    seen.append(line)
    if text in line:
      return "".join(seen)
  proc.kill()
  raise AssertionError(f"{text!r} not seen within {timeout}s:\n" + "".join(seen)[-3000:])


@pytest.mark.slow
def test_sigterm_saves_and_exits_zero_then_kill9_leaves_a_restorable_checkpoint(
    tmp_path, synthetic_dir):
  workdir = str(tmp_path / "run")
  # 1. SIGTERM in the middle of a long run: a checkpoint at the current step, exit code 0.
  proc = _start(workdir, synthetic_dir, "--config.num_train_steps=100000",
                "--config.checkpoint_every_steps=100000")
  _wait_for(proc, "step 3/", timeout=600)
  proc.send_signal(signal.SIGTERM)
  out, _ = proc.communicate(timeout=120)
  assert proc.returncode == 0, out[-3000:]
  assert "preempted at step" in out
  step = checkpointing.manager(checkpointing.checkpoint_dir(workdir),
                               read_only=True).latest_step()
  assert step is not None and step >= 3
  # 2. The run resumes from it, saves every step, and is killed with SIGKILL mid-run.
  proc = _start(workdir, synthetic_dir, "--config.num_train_steps=100000",
                "--config.checkpoint_every_steps=1", "--config.async_checkpointing=True")
  out = _wait_for(proc, f"step {step + 3}/", timeout=600)
  assert "resumed from" in out and f"step {step}" in out
  proc.send_signal(signal.SIGKILL)
  proc.wait(timeout=60)
  # 3. Whatever was being written, the latest complete checkpoint restores (the resumed run
  # itself is what test_train_e2e checks).
  mngr = checkpointing.manager(checkpointing.checkpoint_dir(workdir), read_only=True)
  last = mngr.latest_step()
  assert last is not None and last > step
  assert not [d for d in os.listdir(checkpointing.checkpoint_dir(workdir))
              if d.isdigit() and int(d) > last]  # no half-written step is visible as a step
  _, meta = checkpointing.read_meta(checkpointing.checkpoint_dir(workdir), last)
  assert meta["step"] == last
  restored = mngr.restore(last, args=ocp.args.Composite(
      params=ocp.args.StandardRestore(), train=ocp.args.StandardRestore()))
  assert int(restored["train"]["step"]) == last
  assert all(np.all(np.isfinite(np.asarray(v))) for v in restored["params"].values())


def _latest_step(workdir):
  return checkpointing.manager(checkpointing.checkpoint_dir(workdir),
                               read_only=True).latest_step()


@pytest.mark.slow
def test_ctrl_c_saves_at_the_reported_step_and_exits_zero(tmp_path, synthetic_dir):
  workdir = str(tmp_path / "run")
  proc = _start(workdir, synthetic_dir, "--config.num_train_steps=100000",
                "--config.checkpoint_every_steps=100000")
  before = _wait_for(proc, "step 3/", timeout=600)
  proc.send_signal(signal.SIGINT)
  out, _ = proc.communicate(timeout=120)
  out = before + out
  assert proc.returncode == 0, out[-3000:]
  assert "SIGINT received during step" in out and "finishing that step" in out
  assert "KeyboardInterrupt" not in out
  stopped = int(out.rsplit("preempted at step ", 1)[1].split(":")[0])
  assert "checkpoint saved in" in out
  assert _latest_step(workdir) == stopped >= 3
  # The parameter table is in a file, one line in the log points to it.
  assert "parameter table" in out and "| Name" not in out
  assert "| Name" in open(os.path.join(workdir, "parameters.txt")).read()


@pytest.mark.slow
def test_a_second_ctrl_c_stops_at_once(tmp_path, synthetic_dir):
  proc = _start(str(tmp_path / "run"), synthetic_dir, "--config.num_train_steps=100000",
                "--config.checkpoint_every_steps=100000")
  _wait_for(proc, "step 2/", timeout=600)
  proc.send_signal(signal.SIGINT)
  _wait_for(proc, "SIGINT received", timeout=120)
  proc.send_signal(signal.SIGINT)
  t0 = time.time()
  out, _ = proc.communicate(timeout=60)
  # Killed by the signal (the default action); 0 only if the first one's save and exit were
  # already through when the second came.
  assert proc.returncode in (-signal.SIGINT, 0), (proc.returncode, out[-3000:])
  assert time.time() - t0 < 30
  assert "Traceback" not in out and "KeyboardInterrupt" not in out


def test_sigint_handler_asks_for_a_save_then_leaves_the_next_one_to_the_kernel():
  previous = signal.getsignal(signal.SIGINT)
  with preemption.Preemption() as preempt:
    preempt.step = 7
    assert signal.getsignal(signal.SIGINT) == preempt._handle
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(0.1)  # the Python-level handler runs at the next bytecode boundary
    assert preempt.reached(7)
    assert preempt.seconds_since_notice() >= 0
    assert signal.getsignal(signal.SIGINT) == signal.SIG_DFL
  # after a Ctrl-C, another one still ends the process at once while it winds down
  assert signal.getsignal(signal.SIGINT) == signal.SIG_DFL
  signal.signal(signal.SIGINT, previous)
  with preemption.Preemption() as preempt:
    assert not preempt.reached(1)
  assert signal.getsignal(signal.SIGINT) == previous   # restored when no signal came


def test_missing_empty_and_unfinished_checkpoint_folders_get_their_own_message(tmp_path):
  with pytest.raises(FileNotFoundError, match="does not exist"):
    checkpointing.read_meta(str(tmp_path / "nowhere"))
  empty = tmp_path / "empty"
  empty.mkdir()
  with pytest.raises(FileNotFoundError, match="holds no checkpoint"):
    checkpointing.read_meta(str(empty))
  (empty / "5.orbax-checkpoint-tmp-1").mkdir()
  with pytest.raises(FileNotFoundError, match="only unfinished saves"):
    checkpointing.read_meta(str(empty))
  with pytest.raises(FileNotFoundError, match="does not exist"):
    checkpointing.resolve_start(str(tmp_path / "run"), "", str(tmp_path / "nowhere"))
  # a workdir resolves to its checkpoints/ folder, a folder of steps to itself
  (tmp_path / "wd" / "checkpoints" / "4").mkdir(parents=True)
  assert checkpointing.resolve_checkpoint_dir(str(tmp_path / "wd")) == str(
      tmp_path / "wd" / "checkpoints")
  assert checkpointing.resolve_checkpoint_dir(str(tmp_path / "wd" / "checkpoints")) == str(
      tmp_path / "wd" / "checkpoints")


@pytest.mark.slow
def test_damaged_checkpoint_is_named_and_fallback_uses_the_previous(tmp_path, synthetic_dir):
  workdir = str(tmp_path / "run")
  config = test_pretrain.get_config()
  config.data.synthetic_dir = synthetic_dir
  config.num_train_steps = 2
  config.checkpoint_every_steps = 1
  train.run(config, workdir)
  ckpt = checkpointing.checkpoint_dir(workdir)
  # Truncate every data file of the latest step's parameters.
  for root, _, files in os.walk(os.path.join(ckpt, "2", "params")):
    for name in files:
      path = os.path.join(root, name)
      if os.path.getsize(path) > 16:
        with open(path, "r+b") as f:
          f.truncate(8)
  config.num_train_steps = 3
  with pytest.raises(RuntimeError, match=os.path.join(ckpt, "2")):
    train.run(config.copy_and_resolve_references(), workdir)
  config.checkpoint_fallback = True
  results = train.run(config, workdir)
  assert results["step"] == 3


@pytest.mark.slow
def test_refuses_a_workdir_of_another_run(tmp_path, synthetic_dir):
  workdir = str(tmp_path / "run")
  config = test_pretrain.get_config()
  config.data.synthetic_dir = synthetic_dir
  config.num_train_steps = 1
  train.run(config, workdir)
  # Starting the finished run again is harmless: it resumes at its last step, saves nothing new.
  assert train.run(config.copy_and_resolve_references(), workdir)["step"] == 1
  other = test_pretrain.get_config()
  other.data.synthetic_dir = synthetic_dir
  other.model.dim = 48
  other.num_train_steps = 2
  with pytest.raises(ValueError, match="allow_config_change"):
    train.run(other, workdir)


def test_nonfinite_update_is_skipped_and_stop_names_the_step(tmp_path, synthetic_dir):
  config = test_pretrain.get_config()
  config.data.synthetic_dir = synthetic_dir
  train.ensure_synthetic_data(config)
  mesh = sharding.make_mesh(config.mesh)
  view, tx, state, state_sh, _ = train.init_state(config, mesh, 10, 5)
  before = {k: np.asarray(v) for k, v in state["params"].items()}
  moments_before = [np.asarray(x) for x in jax.tree.leaves(state["opt_state"])]
  step = train.make_train_step(config, view, tx, state_sh, mesh)
  rng = np.random.default_rng(0)
  batch = {"video": rng.normal(size=(4, 8, 32, 32, 3)).astype(np.float32),
           "audio": rng.normal(size=(4, 64, 128)).astype(np.float32)}
  batch["audio"][1, 3, 5] = np.nan
  state, metrics = step(state, sharding.global_batch(batch, mesh))
  assert not np.isfinite(float(metrics["loss"]))
  assert int(state["nonfinite"]) == 1 and int(state["first_nonfinite_step"]) == 0
  for k, v in state["params"].items():
    np.testing.assert_array_equal(np.asarray(v), before[k])  # the update was not applied
  # nor were the optimizer's moments and step count touched
  for got, want in zip(jax.tree.leaves(state["opt_state"]), moments_before, strict=True):
    np.testing.assert_array_equal(np.asarray(got), want)
  # and a finite batch afterwards does update them (the lr is still 0 at the first counted
  # step of the warm-up, so the moments show it, not the parameters)
  batch["audio"][1, 3, 5] = 0.0
  state, metrics = step(state, sharding.global_batch(batch, mesh))
  assert np.isfinite(float(metrics["loss"])) and int(state["nonfinite"]) == 1
  assert any(not np.array_equal(np.asarray(got), want) for got, want in
             zip(jax.tree.leaves(state["opt_state"]), moments_before, strict=True))


@pytest.mark.slow
def test_nonfinite_loss_stops_the_run_naming_the_step(tmp_path, synthetic_dir, monkeypatch):
  config = test_pretrain.get_config()
  config.data.synthetic_dir = synthetic_dir
  config.log_every_steps = 1
  rng = np.random.default_rng(0)

  class NaNData:
    def __iter__(self):
      return self

    def __next__(self):
      audio = rng.normal(size=(4, 64, 128)).astype(np.float32)
      audio[0, 0, 0] = np.inf
      return {"video": rng.normal(size=(4, 8, 32, 32, 3)).astype(np.float32), "audio": audio}

  monkeypatch.setattr(train, "train_dataset", lambda *a, **k: NaNData())
  with pytest.raises(train.NonFiniteError, match="at step 1"):
    train.run(config, str(tmp_path / "run"))


def test_missing_shard_is_named_at_start(tmp_path, synthetic_dir):
  split = str(tmp_path / "train")
  shutil.copytree(os.path.join(synthetic_dir, "train"), split)
  info = schema.DatasetInfo.load(split)
  os.remove(os.path.join(split, info.shards[-1]))
  config = test_pretrain.get_config("finetune")
  config.data.synthetic_dir = ""
  config.data.train_dir = split
  with pytest.raises(FileNotFoundError, match=info.shards[-1]):
    train.run(config, str(tmp_path / "run"))


def test_finished_steps_skip_half_written_checkpoints(tmp_path):
  ckpts = tmp_path / "checkpoints"
  assert checkpointing.finished_steps(str(ckpts)) == []
  assert checkpointing.resolve_start(str(tmp_path), "", "").mode == "scratch"
  for name in ("3", "7.orbax-checkpoint-tmp-123", "notes"):  # 7: killed while writing
    (ckpts / name).mkdir(parents=True)
  assert checkpointing.finished_steps(str(ckpts)) == [3]
  start = checkpointing.resolve_start(str(tmp_path), "", "")
  assert (start.mode, start.step) == ("workdir", 3)
