r"""What this machine gives JAX: versions, backend, devices, their kind and memory.

  python -m hicmae_jax.tools.device_env [--expect=gpu] [--output=env.json]

Prints and writes (JSON): python / jax / jaxlib / flax versions, jax's default backend, every
local device with its kind and the memory XLA may use on it (memory_stats' bytes_limit; none on
the CPU), the chip's published peak bf16 FLOP/s and HBM from `accelerators.CHIPS` when the kind
is known, `nvidia-smi`'s name / memory / driver per GPU when the tool is on PATH, the host CPU
(`host_info`) and `jax.print_environment_info()`.
--expect=gpu exits 1 with one line when jax's backend is not the GPU (the CPU build of jaxlib
on a GPU host: install jax[cuda12], BUILD.md "NVIDIA GPU").
"""
from __future__ import annotations

import platform
import shutil
import subprocess
import sys
import time
from typing import Any, Sequence

import jax
from absl import flags

from hicmae_jax import accelerators, cli, host_info


def _define_flags(values: flags.FlagValues) -> None:
  flags.DEFINE_enum("expect", "any", ["any", "gpu", "cpu"], "Backend this machine must have "
                    "(exit 1 otherwise).", flag_values=values)
  flags.DEFINE_string("output", "", "JSON report path ('' = none).", flag_values=values)


CUDA_HINT = ('pip install "jax[cuda12]==0.10.2" (or jax[cuda13]; BUILD.md, "NVIDIA GPU"), then '
             'python -c "import jax; print(jax.devices())"')


def _device(d) -> dict[str, Any]:
  stats = d.memory_stats() or {}
  chip = accelerators.peak_for_device_kind(d.device_kind) if d.platform != "cpu" else None
  return {"id": d.id, "platform": d.platform, "device_kind": d.device_kind,
          "memory_limit_bytes": stats.get("bytes_limit"),
          "peak_bf16_tflops": chip.peak_bf16_flops / 1e12 if chip else None,
          "hbm_bytes": chip.hbm_bytes if chip else None,
          "chip_source": chip.source if chip else None}


def nvidia_smi() -> list[dict[str, str]] | None:
  """[{name, memory_total, driver_version}] per GPU from nvidia-smi; None without the tool."""
  exe = shutil.which("nvidia-smi")
  if not exe:
    return None
  fields = ("name", "memory.total", "driver_version")
  try:
    out = subprocess.run([exe, f"--query-gpu={','.join(fields)}", "--format=csv,noheader"],
                         capture_output=True, text=True, timeout=60, check=True).stdout
  except (OSError, subprocess.SubprocessError) as e:
    return [{"error": cli.one_line(str(e))}]
  return [dict(zip((f.replace(".", "_") for f in fields), (v.strip() for v in line.split(","))))
          for line in out.splitlines() if line.strip()]


def describe() -> dict[str, Any]:
  """The environment report (see the module docstring)."""
  import flax
  import jaxlib

  return {"date": time.strftime("%Y-%m-%d"), "python": platform.python_version(),
          "jax": jax.__version__, "jaxlib": jaxlib.__version__, "flax": flax.__version__,
          "backend": jax.default_backend(), "device_count": jax.device_count(),
          "devices": [_device(d) for d in jax.local_devices()],
          "nvidia_smi": nvidia_smi(), "host": host_info.describe(),
          "environment_info": jax.print_environment_info(return_string=True)}


def check(report: dict[str, Any], expect: str) -> str | None:
  """None when the backend is what `expect` asks for, else the one-line reason."""
  if expect == "any" or report["backend"] == expect:
    return None
  if expect == "gpu":
    gpus = report["nvidia_smi"]
    seen = (f"nvidia-smi lists {len(gpus)} GPU(s) but " if gpus else "")
    return f"{seen}jax's backend is {report['backend']}, not gpu: {CUDA_HINT}"
  return f"jax's backend is {report['backend']}, not {expect}: run with JAX_PLATFORMS={expect}"


def summary_lines(report: dict[str, Any]) -> list[str]:
  lines = [f"python {report['python']}, jax {report['jax']}, jaxlib {report['jaxlib']}, "
           f"flax {report['flax']}; backend {report['backend']}, "
           f"{report['device_count']} device(s)"]
  for d in report["devices"]:
    mem = d["memory_limit_bytes"]
    lines.append(f"  {d['platform']}:{d['id']} {d['device_kind']}"
                 + (f", {mem / 2**30:.1f} GiB for XLA" if mem else "")
                 + (f", peak {d['peak_bf16_tflops']:g} TFLOP/s bf16" if d["peak_bf16_tflops"]
                    else ""))
  for gpu in report["nvidia_smi"] or []:
    lines.append("  nvidia-smi: " + ", ".join(gpu.values()))
  host = report["host"]
  lines.append(f"  host: {host['cpu']}, {host['isa'] or 'no x86 ISA'}, {host['cores']} cores")
  return lines


def main(argv: Sequence[str] | None = None) -> int:
  """The command line (argv without the program name; None: sys.argv[1:]) -> the exit code."""
  return cli.run_own(_define_flags, _main, argv, doc=__doc__)


def _main(args: flags.FlagValues) -> int:
  if args.output:
    cli.check_output_file(args.output, "--output")
  report = describe()
  failure = check(report, args.expect)
  report["expect"], report["passed"] = args.expect, failure is None
  print("\n".join(summary_lines(report)), flush=True)
  if args.output:
    from hicmae_jax import io_utils
    io_utils.write_json(args.output, report)
    print(f"report: {args.output}", file=sys.stderr)
  if failure:
    print(f"error: {failure}", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
