"""Real multi-process runs on localhost (issue 6), started by launch/local_multiprocess.sh:
jax.distributed with gloo CPU collectives, several fake CPU devices per process.

- 2 processes x 2 devices, pre-empted (SIGTERM to one process) and resumed, and 4 processes x
  1 device on a data 2 x fsdp 2 mesh end with the parameters of a one-process run with the same
  global batch and seed.
- Each process writing its own local workdir stops the job before the first step with one
  error line naming the fix (the shared case passes the check in the runs above).
- Killing one process stops the others with a clear error in bounded time, and the last
  complete checkpoint restores. A process that raises exits at once with its traceback, and
  the others stop too (no wait at the shutdown barrier).
"""
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import orbax.checkpoint as ocp
import pytest

from configs import test_pretrain
from hicmae_jax import checkpointing, train

# The slowest part of the suite (about 3 min on a 2-core machine): `-m "not slow"` leaves it out.
pytestmark = pytest.mark.slow

REPO = pathlib.Path(__file__).resolve().parents[1]
STEPS = 6
# Large enough that 6 steps move the weights far more than any summation-order difference.
OVERRIDES = {"num_train_steps": STEPS, "optim.warmup_epochs": 0, "optim.base_lr": 0.05,
             "log_every_steps": 1, "checkpoint_every_steps": 2}
HEARTBEAT_S = 5  # the kill test: the others must stop this soon after a death
# Runs where nobody dies get a slack heartbeat: on a busy 2-core machine, 4 processes compiling
# at once must not be mistaken for dead ones.
CALM_HEARTBEAT_S = 60


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _launch(workdir, log_dir, *, processes, devices, synthetic_dir, overrides=OVERRIDES,
            heartbeat_s=CALM_HEARTBEAT_S, extra_env=None):
  flags = [f"--config={REPO / 'configs' / 'test_pretrain.py'}", f"--workdir={workdir}",
           f"--config.data.synthetic_dir={synthetic_dir}",
           f"--heartbeat_timeout_s={heartbeat_s}"]
  flags += [f"--config.{k}={v}" for k, v in overrides.items()]
  env = dict(os.environ, PYTHON=sys.executable, PYTHONUNBUFFERED="1",
             JAX_COMPILATION_CACHE_DIR=os.environ.get("HICMAE_TEST_JAX_CACHE",
                                                      "/tmp/hicmae_jax_test_cache"),
             **(extra_env or {}))
  cmd = ["bash", str(REPO / "launch" / "local_multiprocess.sh"),
         f"--num_processes={processes}", f"--devices_per_process={devices}",
         f"--port={_free_port()}", f"--log_dir={log_dir}", "--", *flags]
  return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, start_new_session=True)


def _finish(proc, timeout=420):
  try:
    out, _ = proc.communicate(timeout=timeout)
  except subprocess.TimeoutExpired:
    os.killpg(proc.pid, signal.SIGKILL)
    out, _ = proc.communicate()
    pytest.fail(f"multi-process run did not finish in {timeout}s:\n{out.decode()[-4000:]}")
  return proc.returncode, out.decode()


def _outputs(procs, timeout, what) -> list[str]:
  """The text output of processes started by hand; all are killed if one runs past `timeout`."""
  outs = []
  for proc in procs:
    try:
      outs.append(proc.communicate(timeout=timeout)[0])
    except subprocess.TimeoutExpired:
      for p in procs:
        os.killpg(p.pid, signal.SIGKILL)
      pytest.fail(f"{what} did not finish within {timeout} s:\n{proc.communicate()[0][-4000:]}")
  return outs


def _log(log_dir, process) -> str:
  path = pathlib.Path(log_dir) / f"process_{process}.log"
  return path.read_text() if path.exists() else ""


def _wait_for(log_dir, text, proc, timeout=300):
  deadline = time.time() + timeout
  while time.time() < deadline:
    if text in _log(log_dir, 0):
      return
    if proc.poll() is not None:
      break
    time.sleep(0.2)
  pytest.fail(f"{text!r} never appeared in process 0's log:\n{_log(log_dir, 0)[-4000:]}")


def _pid_of(process, workdir) -> int:
  """The pid of one train process of a job (read from /proc: no pgrep needed)."""
  want = [f"--process_id={process}", f"--workdir={workdir}"]
  for entry in pathlib.Path("/proc").iterdir():
    if not entry.name.isdigit():
      continue
    try:
      args = (entry / "cmdline").read_bytes().split(b"\0")
    except OSError:  # the process ended meanwhile
      continue
    args = [a.decode(errors="replace") for a in args]
    if "hicmae_jax.main" in args and all(w in args for w in want):
      return int(entry.name)
  pytest.fail(f"process {process} of {workdir} is not running")


def _params(workdir, step=None):
  ckpt_dir = checkpointing.checkpoint_dir(workdir)
  if step is None:
    step = max(ocp.utils.checkpoint_steps(ckpt_dir))
  raw = checkpointing.restore_params_as_saved(ckpt_dir, step)  # saved on another topology
  return step, {k: np.asarray(v) for k, v in raw.items()}


def _assert_same_params(got, want, start):
  """Equal up to summation order. Adam turns the last-bit differences of a few near-zero
  gradients into visible ones (measured: 0.003 % of the elements above 1e-6), so the check is
  on the bulk: a different batch, mask or seed moves nearly every element by about the lr."""
  assert got.keys() == want.keys()
  gap = np.concatenate([np.abs(got[k] - want[k]).ravel() for k in want])
  moved = np.concatenate([np.abs(want[k] - start[k]).ravel() for k in want])
  typical = float(np.median(moved))
  assert typical > 1e-4, typical
  assert float(gap.mean()) < 1e-4 * typical, (float(gap.mean()), typical)
  assert float((gap > 0.01 * typical).mean()) < 1e-3, float((gap > 0.01 * typical).mean())


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  """One process (this one, one device), same global batch and seed."""
  root = tmp_path_factory.mktemp("mp")
  synthetic_dir = str(root / "synthetic")
  c = test_pretrain.get_config()
  c.data.synthetic_dir = synthetic_dir
  for k, v in OVERRIDES.items():
    *path, leaf = k.split(".")
    node = c
    for p in path:
      node = node[p]
    node[leaf] = v
  train.run(c, str(root / "single"))
  return {"root": root, "synthetic_dir": synthetic_dir,
          "params": _params(root / "single", STEPS)[1],
          "start": _params(root / "single", 2)[1]}


def test_two_processes_preempted_and_resumed_match_one_process(reference):
  root, workdir, logs = reference["root"], reference["root"] / "mp2", reference["root"] / "logs2"
  proc = _launch(workdir, logs, processes=2, devices=2,
                 synthetic_dir=reference["synthetic_dir"])
  _wait_for(logs, f"step 2/{STEPS}", proc)
  os.kill(_pid_of(1, workdir), signal.SIGTERM)  # the notice reaches one process only
  rc, out = _finish(proc)
  assert rc == 0, out[-4000:]
  assert "is shared by the 2 processes" in _log(logs, 0)
  stopped = [int(line.rsplit("preempted at step ", 1)[1].split(":")[0])
             for p in range(2) for line in _log(logs, p).splitlines()
             if "preempted at step" in line]
  assert len(stopped) == 2 and stopped[0] == stopped[1] < STEPS, stopped  # agreed step
  # Started again, the job resumes from that step and finishes.
  # (and draws the reconstruction figure once, which needs every process)
  rc, out = _finish(_launch(workdir, root / "logs2b", processes=2, devices=2,
                            synthetic_dir=reference["synthetic_dir"],
                            overrides=dict(OVERRIDES, recon_every_steps=STEPS)))
  assert rc == 0, out[-4000:]
  assert f"step {stopped[0]} (workdir)" in _log(root / "logs2b", 0)
  step, params = _params(workdir)
  assert step == STEPS
  _assert_same_params(params, reference["params"], reference["start"])


def test_four_processes_with_fsdp_match_one_process(reference):
  root = reference["root"]
  # data 2 x fsdp 2: parameters and optimizer state are sharded across processes too
  rc, out = _finish(_launch(root / "mp4", root / "logs4", processes=4, devices=1,
                            synthetic_dir=reference["synthetic_dir"],
                            overrides=dict(OVERRIDES, **{"mesh.fsdp": 2})))
  assert rc == 0, out[-4000:]
  log0 = _log(root / "logs4", 0)
  assert "processes: 4" in log0 and "global batch 4, per-process batch 1" in log0
  assert "'data': 2, 'fsdp': 2" in log0
  step, params = _params(root / "mp4")
  assert step == STEPS
  _assert_same_params(params, reference["params"], reference["start"])


def test_per_process_local_workdirs_stop_the_job(tmp_path):
  """Two hosts given a local path each: started by hand with different --workdir values."""
  port, synthetic_dir = _free_port(), tmp_path / "synthetic"
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1",
             XLA_FLAGS="--xla_force_host_platform_device_count=1")
  procs = [subprocess.Popen(
      [sys.executable, "-m", "hicmae_jax.main", f"--coordinator_address=127.0.0.1:{port}",
       "--num_processes=2", f"--process_id={i}",
       f"--config={REPO / 'configs' / 'test_pretrain.py'}", f"--workdir={tmp_path / f'host{i}'}",
       f"--config.data.synthetic_dir={synthetic_dir}", f"--heartbeat_timeout_s={HEARTBEAT_S}"],
      cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
      start_new_session=True) for i in range(2)]
  outs = _outputs(procs, timeout=180, what="the job with unshared workdirs")
  for i, (proc, out) in enumerate(zip(procs, outs)):
    assert proc.returncode == 2, out[-4000:]
    assert f"--workdir={tmp_path / f'host{i}'} is not shared by the job's 2 processes" in out
    assert "gs://bucket/run" in out and "Traceback" not in out, out[-4000:]
    assert not (tmp_path / f"host{i}" / "checkpoints").exists()


def test_killing_one_process_stops_the_others(reference):
  root = reference["root"]
  workdir, logs = root / "killed", root / "logs_killed"
  proc = _launch(workdir, logs, processes=2, devices=2, synthetic_dir=reference["synthetic_dir"],
                 heartbeat_s=HEARTBEAT_S)
  _wait_for(logs, f"step 3/{STEPS}", proc)  # the step-2 checkpoint is written
  # Freeze process 0 so the job cannot finish before process 1 is gone.
  survivor, victim = _pid_of(0, workdir), _pid_of(1, workdir)
  os.kill(survivor, signal.SIGSTOP)
  os.kill(victim, signal.SIGKILL)
  killed_at = time.time()
  os.kill(survivor, signal.SIGCONT)
  rc, out = _finish(proc, timeout=120)
  elapsed = time.time() - killed_at
  assert rc != 0, out[-4000:]
  assert elapsed < 4 * HEARTBEAT_S + 30, elapsed  # bounded by the heartbeat timeout, no hang
  log0 = _log(logs, 0)
  assert "Another process most likely died" in log0 or "another task died" in log0, log0[-4000:]
  # The last complete checkpoint restores (a half-written one is not listed).
  step, params = _params(workdir)
  assert 2 <= step < STEPS and step % 2 == 0
  assert all(np.isfinite(v).all() for v in params.values())


# Loaded at start-up by every process of the job (PYTHONPATH): process 1 raises in its third step.
_FAIL_PROCESS_1 = """
import sys
if "--process_id=1" in sys.argv:
  from hicmae_jax import sharding
  _global_batch, _calls = sharding.global_batch, []

  def _failing(*args, **kwargs):
    _calls.append(1)
    if len(_calls) == 3:
      raise RuntimeError("injected failure in process 1, step 3")
    return _global_batch(*args, **kwargs)
  sharding.global_batch = _failing
"""


def test_an_error_in_one_process_stops_the_job(reference, tmp_path):
  root = reference["root"]
  (tmp_path / "sitecustomize.py").write_text(_FAIL_PROCESS_1)
  workdir, logs = root / "failed", root / "logs_failed"
  pythonpath = os.pathsep.join([str(tmp_path), str(REPO), os.environ.get("PYTHONPATH", "")])
  proc = _launch(workdir, logs, processes=2, devices=2, synthetic_dir=reference["synthetic_dir"],
                 heartbeat_s=HEARTBEAT_S, extra_env={"PYTHONPATH": pythonpath})
  _wait_for(logs, f"step 2/{STEPS}", proc)
  seen_step_2 = time.time()
  rc, out = _finish(proc, timeout=120)
  elapsed = time.time() - seen_step_2
  assert rc != 0, out[-4000:]
  # Without the immediate exit, the failed process waits up to 300 s at the shutdown barrier.
  assert elapsed < 4 * HEARTBEAT_S + 30, elapsed
  log1 = _log(logs, 1)
  assert "process 1 exits on RuntimeError" in log1 and "injected failure" in log1, log1[-4000:]
  log0 = _log(logs, 0)
  assert "Another process most likely died" in log0 or "another task died" in log0, log0[-4000:]


# Two processes make a checkpoint manager, process 1 this much later than process 0: past the
# 30 s XLA:CPU's gloo gives the others to join the communicator of a job's first collective.
LATE_S = 36
_LATE_MANAGER = """
import sys, time
import jax
from hicmae_jax import checkpointing, runtime
port, process, directory, late_s = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
runtime.initialize_distributed(f"127.0.0.1:{port}", 2, process)
jax.devices()  # the backend is up: from here on nothing waits for the other process
if process == 1:
  time.sleep(late_s)  # e.g. compiling the model while process 0 loaded it from the cache
checkpointing.manager(directory).close()
print(f"process {process}: manager made", flush=True)
"""


def test_a_late_process_still_makes_the_checkpoint_manager(tmp_path):
  port = _free_port()
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1",
             XLA_FLAGS="--xla_force_host_platform_device_count=1")
  procs = [subprocess.Popen(
      [sys.executable, "-c", _LATE_MANAGER, str(port), str(i), str(tmp_path / "ckpt"),
       str(LATE_S)], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
      text=True, start_new_session=True) for i in range(2)]
  outs = _outputs(procs, timeout=LATE_S + 120, what="the late-process job")
  for i, (proc, out) in enumerate(zip(procs, outs)):
    assert proc.returncode == 0, out[-4000:]  # without the barrier: "Gloo context ... failed"
    assert f"process {i}: manager made" in out
