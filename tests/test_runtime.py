"""The multi-process start-up helpers, driven on one process with the process count faked:
the real multi-process runs are in test_multiprocess.py."""
import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hicmae_jax import barriers, runtime


def test_one_process_gets_the_jitted_function_itself():
  f = jax.jit(lambda x: x + 1)
  assert runtime.compile_then_meet(f, "f") is f
  barriers.barrier("nothing_to_wait_for")  # no distributed client: must not touch one


def test_first_call_compiles_then_meets_once(monkeypatch):
  monkeypatch.setattr(jax, "process_count", lambda: 2)
  events = []
  monkeypatch.setattr(runtime, "barrier", lambda name, **kw: events.append(("barrier", name)))
  traced = []

  @jax.jit
  def f(x):
    traced.append(x.shape)
    return x * 2
  call = runtime.compile_then_meet(f, "double")
  x = jnp.arange(3.0)
  np.testing.assert_array_equal(call(x), x * 2)
  np.testing.assert_array_equal(call(x), x * 2)
  assert events == [("barrier", "double_compiled")]
  assert traced == [(3,)]  # the run reused what the barrier's compile produced


@pytest.fixture
def two_process_exit_codes(monkeypatch):
  """Fakes a 2-process job; os._exit records its code and raises SystemExit instead."""
  monkeypatch.setattr(jax, "process_count", lambda: 2)
  codes = []

  def fake_exit(code):
    codes.append(code)
    raise SystemExit(code)
  monkeypatch.setattr(runtime.os, "_exit", fake_exit)
  return codes


def test_a_failing_process_logs_the_traceback_and_exits_at_once(two_process_exit_codes, caplog):
  codes = two_process_exit_codes
  try:
    raise ValueError("bad record on this process")
  except ValueError as e:
    with caplog.at_level(logging.ERROR, logger="hicmae_jax"), pytest.raises(SystemExit):
      runtime.exit_now_if_multiprocess(e)
  assert codes == [1]
  assert "ValueError: bad record on this process" in caplog.text
  assert "Traceback" in caplog.text


def test_one_process_failure_is_left_to_python(monkeypatch):
  monkeypatch.setattr(runtime.os, "_exit", lambda code: pytest.fail("must not exit"))
  runtime.exit_now_if_multiprocess(ValueError("x"))


def test_a_process_with_bad_input_prints_one_line_and_exits_2(two_process_exit_codes, capsys):
  from hicmae_jax import cli
  with pytest.raises(SystemExit):
    runtime.exit_now_if_multiprocess(cli.BadInput("--workdir=/x is a file"))
  assert two_process_exit_codes == [2]
  assert capsys.readouterr().err == "error: --workdir=/x is a file\n"


def test_known_benign_orbax_warnings_are_dropped_real_ones_kept(caplog):
  runtime.quiet_known_noise()
  runtime.quiet_known_noise()  # idempotent: one filter
  orbax_log = logging.getLogger("absl")  # Orbax logs through absl.logging
  assert len(orbax_log.filters) == 1
  with caplog.at_level(logging.INFO):
    orbax_log.warning("Given directory is read only=%s", "/ckpt/checkpoints")
    orbax_log.warning("Metadata file does not exist: %s", "/ckpt/1/_CHECKPOINT_METADATA")
    orbax_log.warning("CheckpointManagerOptions.read_only=True, setting save_interval_steps=0.")
    orbax_log.warning("Checkpoint step 4 is incomplete")
    logging.getLogger("jax._src.xla_bridge").info("Unable to initialize backend 'tpu'")
  assert [r.getMessage() for r in caplog.records] == ["Checkpoint step 4 is incomplete"]


def test_host_info_names_the_cpu_and_follows_an_isa_cap(monkeypatch):
  from hicmae_jax import host_info
  info = host_info.describe()
  assert info["cpu"] and info["cores"] >= 1
  monkeypatch.setenv("XLA_FLAGS", "")  # the suite itself may run under a cap
  best = host_info.cpu_isa()            # the CPU's own best
  if best in ("AVX512", "AVX2"):  # an x86-64 machine with AVX2 or more
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=1 "
                                    "--xla_cpu_max_isa=SSE4_2")
    assert host_info.cpu_isa() == "SSE4_2"
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_max_isa=AVX512")  # a cap above the CPU's best
    assert host_info.cpu_isa() == best
