"""tools/profile_step: matmul FLOPs read from compiled HLO, op times read from a real trace."""
from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hicmae_jax.tools import matmul_throughput, profile_step


def _compiled_mlp():
  def f(x, w1, w2):
    return jnp.tanh(jnp.tanh(x @ w1) @ w2).sum()
  args = (jnp.ones((64, 96)), jnp.ones((96, 128)), jnp.ones((128, 32)))
  return jax.jit(f).lower(*args).compile(), args


def test_hlo_ops_counts_matmul_flops():
  compiled, _ = _compiled_mlp()
  ops = profile_step.hlo_ops(compiled.as_text())
  # every dot of the module, wherever XLA put it, with 2 x out x contracted FLOPs
  dots = sorted(o["flops"] for o in ops.values() if o["opcode"] == "dot")
  assert dots == [2.0 * 64 * 32 * 128, 2.0 * 64 * 128 * 96]
  assert all("x" in d for o in ops.values() for d in o["dots"])


def test_trace_op_times_reads_a_real_trace(tmp_path):
  compiled, args = _compiled_mlp()
  jax.block_until_ready(compiled(*args))
  jax.profiler.start_trace(str(tmp_path))
  for _ in range(3):
    jax.block_until_ready(compiled(*args))
  jax.profiler.stop_trace()
  times = profile_step.trace_op_times(str(tmp_path))
  ops = profile_step.hlo_ops(compiled.as_text())
  traced = [name for name in times if name in ops]
  assert traced, sorted(times)[:20]
  assert all(times[name] > 0 for name in traced)
  # the matmuls are found in the trace and grouped as such
  kinds = {profile_step.op_kind(name, ops[name]) for name in traced}
  assert "matmul" in kinds, {n: ops[n]["opcode"] for n in traced}
  assert np.isfinite(sum(times.values()))


def test_matmul_throughput_measures_every_shape():
  assert matmul_throughput.flops(((2, 6), 800, 64, 800)) == 2.0 * 12 * 800 * 64 * 800
  figures = matmul_throughput.measure("jax", reps=1)
  assert set(figures) == set(matmul_throughput.SHAPES)
  assert all(np.isfinite(v) and v > 0 for v in figures.values())


@pytest.mark.slow
def test_profile_step_command_on_the_test_config(tmp_path, capsys):
  """The command end to end: the step compiled, timed and traced; matmuls found in the trace."""
  out = tmp_path / "profile.json"
  profile_step.main(["--config=configs/test_pretrain.py", "--steps=1", "--warmup=1",
                     "--trace_steps=1", "--top=5", f"--out={out}"])
  r = json.loads(out.read_text())
  assert r["step_s_median"] > 0 and r["host"]["cpu"]
  assert r["ms_by_kind"].get("matmul", 0) > 0 and r["matmul_gflops_per_s"] > 0
  assert len(r["top_ops"]) == 5
  assert "summed op time per step by kind" in capsys.readouterr().out


def test_concurrent_ns_counts_only_other_threads():
  """Time an op shared with ops on other threads; containers (cond) do not count."""
  events = [("dot.1", "t0", 0, 100), ("add.1", "t1", 50, 80), ("add.2", "t1", 70, 120),
            ("mul.1", "t0", 100, 130), ("cond.1", "t1", 0, 200), ("exp.1", "t0", 140, 150)]
  shared = profile_step.concurrent_ns(events, lambda name: name.startswith("cond"))
  # dot.1 overlaps add.1 and add.2 on t1 from 50 to 100 (the union, not the sum)
  assert shared == [50, 30, 50, 20, 140, 0]  # cond.1: t0 busy 0-130 and 140-150


@pytest.mark.parametrize("layout", sorted(matmul_throughput.LAYOUTS))
def test_matmul_layouts_compute_the_same_product(layout):
  """Each operand layout is the same out[M, N]: a's and b's stored forms transposed back."""
  import jax
  rng = np.random.default_rng(1)
  shape = ((2,), 5, 7, 3)
  a, b = matmul_throughput.operands(shape, layout, rng)
  dims = matmul_throughput.dimension_numbers(a.ndim, layout)
  got = np.asarray(jax.lax.dot_general(a, b, dims))
  a_mk = np.swapaxes(a, -1, -2) if layout == "tn" else a
  b_kn = np.swapaxes(b, -1, -2) if layout == "nt" else b
  np.testing.assert_allclose(got, a_mk @ b_kn, rtol=1e-5)
  assert got.shape == (2, 5, 3)


def test_matmul_throughput_refuses_an_unknown_layout(capsys):
  assert matmul_throughput.main(["--layouts=nn,xy", "--reps=1"]) == 2
  assert "'xy' is not one of nn, nt, tn" in capsys.readouterr().err


def test_standalone_comparison_times_the_traced_dots(tmp_path):
  """A real trace of a dot followed by tanh (XLA may fuse it) and a plain dot: both found,
  timed alone with their own shapes and dimension numbers, and grouped by fused work."""
  compiled, args = _compiled_mlp()
  jax.block_until_ready(compiled(*args))
  jax.profiler.start_trace(str(tmp_path))
  jax.block_until_ready(compiled(*args))
  jax.profiler.stop_trace()
  events = profile_step.trace_op_events(str(tmp_path))
  ops = profile_step.hlo_ops(compiled.as_text())
  events = [e for e in events if e[0] in ops]
  kind_of = {e[0]: profile_step.op_kind(e[0], ops[e[0]]) for e in events}
  matmuls = [e[0] for e in events if kind_of[e[0]] == "matmul"]
  assert matmuls
  specs = {s for name in matmuls for s in ops[name]["specs"]}
  assert {(s[0], s[1]) for s in specs} <= {((64, 96), (96, 128)), ((64, 128), (128, 32))}
  result = profile_step.standalone_comparison(events, ops, kind_of, 1, reps=2)
  total = sum(g["in_step_ms"] for g in result.values())
  assert total > 0
  for group in result.values():
    if group["in_step_ms"]:
      assert group["alone_ms"] > 0 and group["alone_gflops_per_s"] > 0
