"""Profiles the compiled training step: time per XLA op, grouped by kind, with each matmul's
shape and achieved GFLOP/s.

  python -m hicmae_jax.tools.profile_step --config=configs/pretrain_base.py --batch_size=2
  XLA_FLAGS=--xla_cpu_max_isa=AVX2 python -m hicmae_jax.tools.profile_step ...   # another ISA
  python -m hicmae_jax.tools.profile_step ... --xla_option=xla_cpu_use_onednn=true  # an option

It compiles the step as `tools.benchmark --what=step` does (same synthetic batch, same compiler
options, plus any --xla_option), times --steps steps after --warmup, traces --trace_steps more
with jax.profiler, and reads the trace back (jax.profiler.ProfileData): every op's time summed
over the traced steps and divided by their count. Ops of one step can run concurrently on the
CPU's threads, so the summed op time can exceed the step's wall time. Kinds: matmul (dots, in
YNNPACK/oneDNN/XNNPACK fusions or XLA's own), convolution, copy/transpose, control flow (a
`cond`'s time includes the ops inside it, listed again on their own), and the elementwise and
reduction fusions. The host (CPU model, ISA) is recorded with the figures.
"""
from __future__ import annotations

import bisect
import collections
import glob
import json
import math
import re
import statistics
import sys
import tempfile

import absl.logging
import jax
from absl import flags

from hicmae_jax import cli, host_info, sharding
from hicmae_jax.tools import benchmark

_INSTRUCTION = re.compile(r"^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*(\S+)\s+([\w\-]+)\((.*)$")
_SHAPE = re.compile(r"[a-z]+\d*\[([\d,]*)\]")


def _dims(shape: str) -> list[int]:
  m = _SHAPE.search(shape)
  return [int(d) for d in m.group(1).split(",") if d] if m else []


def hlo_ops(hlo_text: str) -> dict[str, dict]:
  """{instruction name: {opcode, shape, calls, flops, dots}} from a compiled module's text.

  A dot's FLOPs are 2 x output elements x contracted size; a fusion's are its computation's
  dots (recursively through `calls=`)."""
  computations: dict[str, list[dict]] = {}
  current = None
  for line in hlo_text.splitlines():
    if line and not line[0].isspace() and line.rstrip().endswith("{"):
      current = line.split()[1 if line.startswith("ENTRY") else 0].lstrip("%")
      computations[current] = []
      continue
    inst = _INSTRUCTION.match(line)
    if not inst or current is None:
      continue
    name, shape, opcode, rest = inst.groups()
    calls = re.search(r"(?:calls|to_apply|branch_computations|body)=\{?%?([\w.\-]+)", rest)
    computations[current].append({"name": name, "opcode": opcode, "shape": shape, "rest": rest,
                                  "calls": calls.group(1) if calls else None, "flops": 0.0,
                                  "dots": []})
  for entries in computations.values():
    shapes = {e["name"]: e["shape"] for e in entries}
    for e in entries:
      if e["opcode"] != "dot":
        continue
      operands = re.findall(r"%([\w.\-]+)", e["rest"].split(")")[0])
      contracting = re.search(r"lhs_contracting_dims=\{([\d,]*)\}", e["rest"])
      if len(operands) < 2 or not contracting or operands[0] not in shapes:
        continue
      lhs = _dims(shapes[operands[0]])
      k = math.prod(lhs[int(i)] for i in contracting.group(1).split(",") if i)
      e["flops"] = 2.0 * math.prod(_dims(e["shape"])) * k
      rhs_c = re.search(r"rhs_contracting_dims=\{([\d,]*)\}", e["rest"])
      e["dots"] = [f"{shapes[operands[0]].split('{')[0]} x "
                   f"{shapes.get(operands[1], '?').split('{')[0]} -> {e['shape'].split('{')[0]}"
                   f" (contract {contracting.group(1)}|{rhs_c.group(1) if rhs_c else '?'})"]

  def fused(comp: str | None, depth: int = 0) -> tuple[float, list[str]]:
    if comp is None or comp not in computations or depth > 4:
      return 0.0, []
    flops, dots = 0.0, []
    for e in computations[comp]:
      flops += e["flops"]
      dots += e["dots"]
      if e["opcode"] == "fusion":
        f, d = fused(e["calls"], depth + 1)
        flops, dots = flops + f, dots + d
    return flops, dots

  ops = {}
  for entries in computations.values():
    for e in entries:
      if e["opcode"] == "fusion":
        e["flops"], e["dots"] = fused(e["calls"])
      ops[e["name"]] = e
  return ops


def op_kind(name: str, op: dict | None) -> str:
  """The group an op's time is reported under."""
  opcode = op["opcode"] if op else ""
  if op and op["flops"] > 0:
    return "matmul"
  if opcode in ("convolution",) or "convolution" in name:
    return "convolution"
  if opcode in ("conditional", "while", "call") or name.startswith(("cond", "while")):
    return "control flow (includes its ops)"
  if opcode in ("copy", "transpose") or "copy" in name or "transpose" in name:
    return "copy/transpose"
  if "reduce" in name or opcode == "reduce":
    return "reduction fusions"
  return "elementwise and other fusions"


# A matmul that shared more than this fraction of its time with another op counts as "shared".
SHARED_FRACTION = 0.1
_SKIPPED_EVENTS = ("ThreadpoolListener", "ThunkExecutor", "SlinkyThreadPool")


def trace_op_events(trace_dir: str) -> list[tuple[str, str, int, int]]:
  """[(op name, thread line, start ns, end ns)] of the XLA:CPU op events of the newest trace
  under `trace_dir`."""
  files = sorted(glob.glob(f"{trace_dir}/**/*.xplane.pb", recursive=True))
  if not files:
    raise RuntimeError(f"no profiler trace was written under {trace_dir}")
  data = jax.profiler.ProfileData.from_file(files[-1])
  events = []
  for plane in data.planes:
    if plane.name != "/host:CPU":
      continue
    for i, line in enumerate(plane.lines):
      if line.name == "python":
        continue
      for event in line.events:
        if not event.name.startswith(_SKIPPED_EVENTS):
          events.append((event.name, f"{i}:{line.name}", int(event.start_ns),
                         int(event.end_ns)))
  return events


def trace_op_times(trace_dir: str) -> dict[str, float]:
  """{op name: summed ns} over the XLA:CPU events of the newest trace under `trace_dir`."""
  times: dict[str, float] = collections.Counter()
  for name, _, start, end in trace_op_events(trace_dir):
    times[name] += end - start
  return times


def _merged(intervals: list[tuple[int, int]]) -> list[tuple[int, int]]:
  out: list[list[int]] = []
  for start, end in sorted(intervals):
    if out and start <= out[-1][1]:
      out[-1][1] = max(out[-1][1], end)
    else:
      out.append([start, end])
  return [(a, b) for a, b in out]


def concurrent_ns(events: list[tuple[str, str, int, int]],
                  is_container=lambda name: False) -> list[int]:
  """For each event, the ns during which an op ran on another thread: the time it shared the
  CPU's threads with another op (XLA:CPU runs independent ops concurrently, and a matmul then
  gets fewer threads for its own work). Container events (a `cond` or `while`, whose ops are
  traced on their own) do not count as the other op."""
  by_line: dict[str, list[tuple[int, int]]] = collections.defaultdict(list)
  for name, line, start, end in events:
    if not is_container(name):
      by_line[line].append((start, end))
  merged = {line: _merged(iv) for line, iv in by_line.items()}
  starts = {line: [a for a, _ in iv] for line, iv in merged.items()}
  out = []
  for _, line, start, end in events:
    shared = _merged([iv for other in merged if other != line
                      for iv in _clip(merged[other], starts[other], start, end)])
    out.append(sum(b - a for a, b in shared))
  return out


def _clip(merged, starts, start: int, end: int) -> list[tuple[int, int]]:
  i = max(bisect.bisect_right(starts, start) - 1, 0)
  out = []
  while i < len(merged) and merged[i][0] < end:
    a, b = max(start, merged[i][0]), min(end, merged[i][1])
    if b > a:
      out.append((a, b))
    i += 1
  return out


def profile(config, batch: int, steps: int, warmup: int, trace_steps: int,
            options: dict[str, str], top: int, hlo_out: str = "") -> dict:
  """Compile, time and trace the step; the per-op table grouped by kind."""
  with config.unlocked():
    config.global_batch_size = batch
  base = sharding.compiler_options(sharding.make_mesh(config.mesh)) or {}
  compiled, state, data, compile_s = benchmark.compiled_step(config, batch,
                                                             {**base, **options})
  times, state = benchmark.time_steps(compiled, state, data, steps, warmup)
  ops = hlo_ops(compiled.as_text())
  if hlo_out:
    with open(hlo_out, "w") as f:
      f.write(compiled.as_text())
  with tempfile.TemporaryDirectory() as trace_dir:
    jax.profiler.start_trace(trace_dir)
    for _ in range(trace_steps):
      state, metrics = compiled(state, data)
      jax.block_until_ready(metrics["loss"])
    jax.profiler.stop_trace()
    events = trace_op_events(trace_dir)
  kind_of = {name: op_kind(name, ops.get(name)) for name in {e[0] for e in events}}
  shared = concurrent_ns(events, lambda n: kind_of[n].startswith("control flow"))
  return {"host": host_info.describe(), "batch": batch, "xla_options": options,
          "compile_s": round(compile_s, 1), "step_s_median": round(statistics.median(times), 4),
          "step_s_min": round(min(times), 4), "steps": steps,
          **summarize(events, shared, ops, kind_of, trace_steps, top)}


def summarize(events, shared: list[int], ops: dict, kind_of: dict[str, str], trace_steps: int,
              top: int) -> dict:
  """The per-kind and per-op tables of traced events (ms per step), and the matmuls' GFLOP/s
  split by whether another op ran beside them (more than SHARED_FRACTION of their time)."""
  op_ns: dict[str, float] = collections.Counter()
  op_shared: dict[str, float] = collections.Counter()
  split = {"alone": [0.0, 0.0], "shared": [0.0, 0.0]}  # [flops, ns]
  for (name, _, start, end), sh in zip(events, shared):
    op_ns[name] += end - start
    op_shared[name] += sh
    op = ops.get(name)
    if kind_of[name] == "matmul" and end > start:
      group = split["shared" if sh > SHARED_FRACTION * (end - start) else "alone"]
      group[0] += op["flops"]
      group[1] += end - start
  kinds: dict[str, float] = collections.Counter()
  rows = []
  for name, ns in op_ns.items():
    op = ops.get(name)
    ms = ns / 1e6 / trace_steps
    kinds[kind_of[name]] += ms
    flops = op["flops"] * trace_steps if op else 0.0
    rows.append({"op": name, "kind": kind_of[name], "ms": round(ms, 3),
                 "shared": round(op_shared[name] / ns, 2) if ns else 0.0,
                 "gflops_per_s": round(flops / (ns / 1e9) / 1e9, 1) if flops and ns else None,
                 "dots": op["dots"][:3] if op else []})
  rows.sort(key=lambda r: -r["ms"])
  matmul_ms = kinds.get("matmul", 0.0)
  matmul_flops = sum(ops[r["op"]]["flops"] for r in rows if r["kind"] == "matmul")  # per step
  busy = sum(b - a for a, b in _merged([(e[2], e[3]) for e in events
                                        if not kind_of[e[0]].startswith("control flow")]))
  return {
      "ms_by_kind": {k: round(v, 1) for k, v in sorted(kinds.items(), key=lambda kv: -kv[1])},
      "busy_ms": round(busy / 1e6 / trace_steps, 1),
      "matmul_gflops_per_s": round(matmul_flops / (matmul_ms / 1e3) / 1e9, 1)
                             if matmul_ms else None,
      "matmul_split": {k: {"ms": round(ns / 1e6 / trace_steps, 1),
                           "gflops_per_s": round(f / ns, 1) if ns else None}
                       for k, (f, ns) in split.items()},
      "top_ops": rows[:top],
  }


def _print(result: dict) -> None:
  print(f"host: {result['host']}")
  print(f"step: median {result['step_s_median']} s (min {result['step_s_min']} s, "
        f"{result['steps']} steps), compile {result['compile_s']} s, "
        f"options {result['xla_options'] or 'default'}")
  print(f"summed op time per step by kind (ms); matmuls at "
        f"{result['matmul_gflops_per_s']} GFLOP/s overall:")
  for kind, ms in result["ms_by_kind"].items():
    print(f"  {kind:36s} {ms:9.1f}")
  print(f"  time some op ran (wall, ms per step)  {result['busy_ms']:9.1f}")
  for group, fig in result["matmul_split"].items():
    print(f"matmuls {group:6s} (another op beside them > {SHARED_FRACTION:.0%} of their time): "
          f"{fig['ms']} ms at {fig['gflops_per_s']} GFLOP/s")
  print("top ops (ms per step, share of it beside another op, GFLOP/s for matmuls):")
  for r in result["top_ops"]:
    gf = f"{r['gflops_per_s']:8.1f}" if r["gflops_per_s"] else " " * 8
    print(f"  {r['ms']:8.2f} {r['shared']:4.2f} {gf}  {r['op'][:34]:34s} "
          f"{'; '.join(r['dots'])[:100]}")


def _define_flags(values: flags.FlagValues) -> None:
  flags.DEFINE_string("config", None, "config file[:arg]", flag_values=values, required=True)
  for name, default, text in (("batch_size", 2, "clips a step"),
                              ("steps", 10, "timed steps (median reported)"),
                              ("warmup", 2, "untimed steps first"),
                              ("trace_steps", 2, "steps traced for the op times"),
                              ("top", 25, "ops listed")):
    flags.DEFINE_integer(name, default, text, flag_values=values)
  flags.DEFINE_multi_string("xla_option", [], "name=value compiler option for the step "
                            "(repeatable), e.g. xla_cpu_use_onednn=true", flag_values=values)
  flags.DEFINE_string("out", "", "JSON file for the full table", flag_values=values)
  flags.DEFINE_string("hlo_out", "", "text file for the compiled step's HLO (layouts, fusions)",
                      flag_values=values)


def main(argv: list[str] | None = None) -> int:
  """The command line (argv without the program name; None: sys.argv[1:]) -> the exit code."""
  return cli.run_own(_define_flags, _main, argv, doc=__doc__)


def _main(args: flags.FlagValues) -> None:
  absl.logging.set_verbosity(absl.logging.WARNING)
  options = {}
  for item in args.xla_option:
    if "=" not in item:
      raise cli.BadInput(f"--xla_option={item}: expected name=value")
    key, value = item.split("=", 1)
    options[key] = value
  config = benchmark.load_experiment(args.config)
  result = profile(config, args.batch_size, args.steps, args.warmup, args.trace_steps, options,
                   args.top, args.hlo_out)
  _print(result)
  if args.out:
    with open(args.out, "w") as f:
      json.dump(result, f, indent=2)


if __name__ == "__main__":
  sys.exit(main())
