"""The multi-process start-up helpers, driven on one process with the process count faked:
the real multi-process runs are in test_multiprocess.py."""
import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hicmae_jax import runtime


def test_one_process_gets_the_jitted_function_itself():
  f = jax.jit(lambda x: x + 1)
  assert runtime.compile_then_meet(f, "f") is f
  runtime.barrier("nothing_to_wait_for")  # no distributed client: must not touch one


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


def test_a_failing_process_logs_the_traceback_and_exits_at_once(monkeypatch, caplog):
  monkeypatch.setattr(jax, "process_count", lambda: 2)
  codes = []

  def fake_exit(code):
    codes.append(code)
    raise SystemExit(code)
  monkeypatch.setattr(runtime.os, "_exit", fake_exit)
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
