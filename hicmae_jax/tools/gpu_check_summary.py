r"""The summary of launch/gpu_check.sh: its steps' JSON reports in one file and a few lines.

  python -m hicmae_jax.tools.gpu_check_summary --out=gpu_check_2026-12-07 [--mode=gpu]

Reads, from the --out folder the script wrote: steps.tsv (one line per step run: name, exit
code, seconds, command), env.json (tools.device_env), benchmark_step.json and
benchmark_input.json (tools.benchmark), parity.json (tools.device_parity). Writes
summary.json there with the sections of SECTIONS (a section is null when its step did not
produce its report) and prints the summary. Exit 0 when every step ran and exited 0 and the
parity check passed, else 1 with one line naming what failed.
"""
from __future__ import annotations

import os
import sys
import time
from typing import Any, Sequence

from absl import flags

from hicmae_jax import cli, io_utils


def _define_flags(values: flags.FlagValues) -> None:
  flags.DEFINE_string("out", None, "The folder launch/gpu_check.sh wrote.", flag_values=values,
                      required=True)
  flags.DEFINE_enum("mode", "gpu", ["gpu", "cpu"], "The mode the script ran in.",
                    flag_values=values)


# The script's steps in order, and the report each one writes into the folder.
STEPS = ("environment", "benchmark", "synthetic_split", "input_pipeline", "parity")
REPORTS = {"environment": "env.json", "benchmark": "benchmark_step.json",
           "input_pipeline": "benchmark_input.json", "parity": "parity.json"}
# The fields of each section of summary.json. mfu is null where the device's peak is unknown
# (a CPU, or a GPU missing from tools/benchmark's table without --peak_tflops).
SECTIONS = {
    "environment": ("python", "jax", "jaxlib", "backend", "device_count", "device_kind",
                    "memory_limit_gib", "peak_bf16_tflops", "nvidia_smi", "host"),
    "benchmark": ("config", "kind", "size", "dtype", "batch", "compile_s", "step_s_median",
                  "clips_per_s", "achieved_tflops", "mfu", "peak_source", "peak_memory_gib"),
    "input_pipeline": ("batch", "step_s_fixed_batch", "step_s_with_input", "input_overhead_s",
                       "input_bound", "clips_per_s_by_workers", "stage_ms_per_record",
                       "input_processes_needed_per_device", "eval_clips_per_s"),
    "parity": ("accelerator_device", "accelerator_dtype", "accelerator_loss", "cpu_device",
               "cpu_dtype", "cpu_loss", "relative_difference", "tolerance", "passed"),
}


def read_steps(folder: str) -> dict[str, dict[str, Any]]:
  """steps.tsv -> {step: {exit_code, seconds, command}} (steps not run are absent)."""
  path = os.path.join(folder, "steps.tsv")
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{path} not found: give --out=<the folder launch/gpu_check.sh "
                            f"wrote>")
  steps = {}
  with open(path) as f:
    for line in f:
      if line.strip():
        name, code, seconds, command = line.rstrip("\n").split("\t", 3)
        steps[name] = {"exit_code": int(code), "seconds": float(seconds), "command": command}
  return steps


def _report(folder: str, step: str) -> dict[str, Any] | None:
  path = os.path.join(folder, REPORTS[step])
  return io_utils.read_json(path) if os.path.isfile(path) else None


def _environment(r: dict[str, Any]) -> dict[str, Any]:
  first = r["devices"][0]
  limit = first["memory_limit_bytes"]
  return {"python": r["python"], "jax": r["jax"], "jaxlib": r["jaxlib"], "backend": r["backend"],
          "device_count": r["device_count"], "device_kind": first["device_kind"],
          "memory_limit_gib": round(limit / 2**30, 2) if limit else None,
          "peak_bf16_tflops": first["peak_bf16_tflops"], "nvidia_smi": r["nvidia_smi"],
          "host": r["host"]}


def _benchmark(r: dict[str, Any]) -> dict[str, Any]:
  step = r["train_step"]
  return {"config": r["config"], "kind": r["kind"], "size": r["size"], "dtype": r["dtype"],
          **{k: step[k] for k in SECTIONS["benchmark"][4:]}}


def _input_pipeline(r: dict[str, Any]) -> dict[str, Any]:
  fed, pipe = r["step_with_input"], r["pipeline"]
  return {**{k: fed[k] for k in SECTIONS["input_pipeline"][:5]},
          "clips_per_s_by_workers": pipe["clips_per_s_by_workers"],
          "stage_ms_per_record": pipe["stage_ms_per_record"],
          "input_processes_needed_per_device":
              r["balance"].get("input_processes_needed_per_device"),
          "eval_clips_per_s": r["eval_forward"]["clips_per_s"]}


def _parity(r: dict[str, Any]) -> dict[str, Any]:
  acc, cpu = r["accelerator"], r["cpu"]
  return {"accelerator_device": f"{acc['device']} [{acc['device_kind']}]",
          "accelerator_dtype": acc["dtype"], "accelerator_loss": acc["metrics"]["loss"],
          "cpu_device": cpu["device"], "cpu_dtype": cpu["dtype"],
          "cpu_loss": cpu["metrics"]["loss"], "relative_difference": r["relative_difference"],
          "tolerance": r["tolerance"], "passed": r["passed"]}


_SECTION_OF = {"environment": _environment, "benchmark": _benchmark,
               "input_pipeline": _input_pipeline, "parity": _parity}


def summarise(folder: str, mode: str) -> dict[str, Any]:
  """summary.json's content (see the module docstring); `failed` names what did not pass."""
  steps = read_steps(folder)
  summary: dict[str, Any] = {"date": time.strftime("%Y-%m-%d"), "mode": mode,
                             "out_dir": os.path.abspath(folder), "steps": steps}
  for name, build in _SECTION_OF.items():
    report = _report(folder, name)
    summary[name] = build(report) if report is not None else None
  failed = [f"{s} (not run)" if s not in steps else f"{s} (exit {steps[s]['exit_code']})"
            for s in STEPS if s not in steps or steps[s]["exit_code"] != 0]
  parity = summary["parity"]
  if parity is not None and not parity["passed"] and not any(f.startswith("parity")
                                                             for f in failed):
    failed.append("parity (beyond tolerance)")
  summary["failed"] = failed
  summary["passed"] = not failed
  return summary


def _fmt(value, spec: str = "") -> str:
  return "n/a" if value is None else format(value, spec)


def summary_lines(s: dict[str, Any]) -> list[str]:
  lines = [f"gpu_check ({s['mode']} mode), {s['date']}: {s['out_dir']}"]
  if (e := s["environment"]) is not None:
    host = e["host"]
    lines.append(f"environment  jax {e['jax']} / jaxlib {e['jaxlib']}, python {e['python']}, "
                 f"backend {e['backend']}: {e['device_count']} x {e['device_kind']}"
                 + (f" ({e['memory_limit_gib']} GiB for XLA)" if e["memory_limit_gib"] else "")
                 + f"; host {host['cpu']}, {host['cores']} cores")
  if (b := s["benchmark"]) is not None:
    lines.append(f"benchmark    {b['kind']}/{b['size']} {b['dtype']}, batch {b['batch']}: "
                 f"step {b['step_s_median']} s, {b['clips_per_s']} clips/s, "
                 f"{b['achieved_tflops']} TFLOP/s, MFU {_fmt(b['mfu'])} ({b['peak_source']}), "
                 f"compiled peak memory {_fmt(b['peak_memory_gib'])} GiB")
  if (i := s["input_pipeline"]) is not None:
    lines.append(f"input        step fed by its pipeline {i['step_s_with_input']} s vs "
                 f"{i['step_s_fixed_batch']} s on a fixed batch: "
                 f"{'INPUT-BOUND' if i['input_bound'] else 'not input-bound'}; pipeline "
                 f"clips/s by workers {i['clips_per_s_by_workers']}")
  if (p := s["parity"]) is not None:
    lines.append(f"parity       loss {p['accelerator_loss']:.6f} ({p['accelerator_device']}, "
                 f"{p['accelerator_dtype']}) vs {p['cpu_loss']:.6f} ({p['cpu_device']}, "
                 f"{p['cpu_dtype']}): relative {p['relative_difference']:.2e}, tolerance "
                 f"{p['tolerance']:g}: {'PASS' if p['passed'] else 'FAIL'}")
  lines.append("steps        " + ", ".join(
      f"{n} exit {v['exit_code']} ({v['seconds']:.0f} s)" for n, v in s["steps"].items()))
  lines.append("PASSED" if s["passed"] else "FAILED: " + ", ".join(s["failed"]))
  return lines


def main(argv: Sequence[str] | None = None) -> int:
  """The command line (argv without the program name; None: sys.argv[1:]) -> the exit code."""
  return cli.run_own(_define_flags, _main, argv, doc=__doc__)


def _main(args: flags.FlagValues) -> int:
  summary = summarise(args.out, args.mode)
  path = os.path.join(args.out, "summary.json")
  io_utils.write_json(path, summary)
  print("\n".join(summary_lines(summary)), flush=True)
  print(f"summary: {path}")
  if not summary["passed"]:
    print(f"error: gpu_check failed: {', '.join(summary['failed'])} (logs in {args.out})",
          file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
