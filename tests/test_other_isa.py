"""The float32 parity checks under a narrower vector ISA than this CPU's own, in a subprocess
(XLA reads --xla_cpu_max_isa when the backend starts). Reductions are summed in another order
on another ISA, so this guards, from one CI machine, the users whose CPUs differ from it. The
cap reaches XLA's own generated code (elementwise fusions, reductions), not the matmul kernels:
XLA:CPU hands dots to YNNPACK, which picks its kernels from the CPU itself (measured:
`tools.matmul_throughput` under an SSE4_2 cap runs at the uncapped speed), so another CPU's
matmul rounding is covered by the relative tolerances, not by this test."""
import os
import pathlib
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # trains a model or starts processes

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _cpu_flags() -> set[str]:
  try:
    text = pathlib.Path("/proc/cpuinfo").read_text()
  except OSError:
    return set()
  for line in text.splitlines():
    if line.startswith("flags"):
      return set(line.split(":", 1)[1].split())
  return set()


def other_isa() -> str | None:
  """An ISA below this CPU's best: AVX2 on an AVX-512 machine (the common laptop and cloud VM
  case), else SSE4_2; None off x86-64."""
  if platform.machine().lower() not in ("x86_64", "amd64"):
    return None
  return "AVX2" if "avx512f" in _cpu_flags() else "SSE4_2"


def test_float32_parity_under_another_isa(tmp_path):
  isa = other_isa()
  if isa is None:
    pytest.skip(f"--xla_cpu_max_isa is an x86-64 flag; this machine is {platform.machine()}")
  env = dict(os.environ)
  env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + f" --xla_cpu_max_isa={isa}").strip()
  env["JAX_PLATFORMS"] = "cpu"
  env["HICMAE_TEST_JAX_CACHE"] = str(tmp_path / "jax_cache")  # programs of this ISA only
  proc = subprocess.run(
      [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
       "tests/test_parity.py", "-k", "parity_float32"],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, f"under --xla_cpu_max_isa={isa}:\n{proc.stdout[-4000:]}"
  assert "2 passed" in proc.stdout, proc.stdout[-2000:]
