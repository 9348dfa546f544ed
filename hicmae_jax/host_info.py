"""What machine a figure was measured on: CPU model, the vector ISA XLA:CPU may use, cores.

Every benchmark figure carries this (a CPU step time means little without it: the same step is
1.8x faster than the original on an AVX-512 EPYC and about as fast on an AVX2 one)."""
from __future__ import annotations

import os
import platform

# XLA:CPU's --xla_cpu_max_isa names, widest first, with the /proc/cpuinfo flag that enables each.
_ISA_FLAGS = (("AVX512", "avx512f"), ("AVX2", "avx2"), ("AVX", "avx"), ("SSE4_2", "sse4_2"))
_ISA_ORDER = [name for name, _ in reversed(_ISA_FLAGS)]


def _cpuinfo() -> dict[str, str]:
  """The first processor's fields of /proc/cpuinfo ({} where there is none)."""
  try:
    with open("/proc/cpuinfo") as f:
      text = f.read()
  except OSError:
    return {}
  fields = {}
  for line in text.split("\n\n")[0].splitlines():
    key, _, value = line.partition(":")
    fields[key.strip()] = value.strip()
  return fields


def cpu_model() -> str:
  """e.g. 'AMD EPYC (family 26, model 2)': virtual machines often report only the brand, so
  the family and model numbers are kept (family 26 is AMD Zen 5)."""
  info = _cpuinfo()
  name = info.get("model name") or platform.processor() or platform.machine()
  if "cpu family" in info and "model" in info:
    name += f" (family {info['cpu family']}, model {info['model']})"
  return name


def cpu_isa() -> str:
  """The widest vector ISA of this CPU that XLA:CPU knows, lowered by an --xla_cpu_max_isa cap
  in XLA_FLAGS ('' off x86-64)."""
  flags = set(_cpuinfo().get("flags", "").split())
  best = next((name for name, flag in _ISA_FLAGS if flag in flags), "")
  for flag in os.environ.get("XLA_FLAGS", "").split():
    if flag.startswith("--xla_cpu_max_isa="):
      cap = flag.split("=", 1)[1].upper()
      if best and cap in _ISA_ORDER and _ISA_ORDER.index(cap) < _ISA_ORDER.index(best):
        best = cap
  return best


def describe() -> dict[str, object]:
  """{'cpu', 'isa', 'cores'}: what a published figure names its machine by."""
  return {"cpu": cpu_model(), "isa": cpu_isa(), "cores": len(os.sched_getaffinity(0))}
