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
import time

import absl.logging
import jax
import jax.numpy as jnp
import numpy as np
from absl import flags

from hicmae_jax import cli, host_info, sharding
from hicmae_jax.tools import benchmark

_INSTRUCTION = re.compile(r"^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*(\S+)\s+([\w\-]+)\((.*)$")
_SHAPE = re.compile(r"[a-z]+\d*\[([\d,]*)\]")


def _dims(shape: str) -> list[int]:
  m = _SHAPE.search(shape)
  return [int(d) for d in m.group(1).split(",") if d] if m else []


# Ops a fusion may hold beside its dots and still count as a plain matmul.
_PLAIN = {"parameter", "dot", "bitcast", "constant"}


def _parse(hlo_text: str) -> dict[str, list[dict]]:
  """{computation name: its instructions} of a compiled module's text."""
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
                                  "dots": [], "specs": [], "epilogue": set()})
  return computations


def _index_list(rest: str, key: str) -> tuple[int, ...]:
  m = re.search(key + r"=\{([\d,]*)\}", rest)
  return tuple(int(i) for i in m.group(1).split(",") if i) if m else ()


def _describe_dot(e: dict, shapes: dict[str, str]) -> None:
  """Sets a dot's flops (2 x output elements x contracted size), its text and its spec
  (lhs dims, rhs dims, contracting and batch dims of each) from its operands' shapes."""
  operands = re.findall(r"%([\w.\-]+)", e["rest"].split(")")[0])
  if len(operands) < 2 or operands[0] not in shapes or operands[1] not in shapes:
    return
  lhs, rhs = _dims(shapes[operands[0]]), _dims(shapes[operands[1]])
  lc, rc = _index_list(e["rest"], "lhs_contracting_dims"), _index_list(e["rest"],
                                                                         "rhs_contracting_dims")
  e["flops"] = 2.0 * math.prod(_dims(e["shape"])) * math.prod(lhs[i] for i in lc)
  e["specs"] = [(tuple(lhs), tuple(rhs), lc, rc, _index_list(e["rest"], "lhs_batch_dims"),
                 _index_list(e["rest"], "rhs_batch_dims"))]
  e["dots"] = [f"{shapes[operands[0]].split('{')[0]} x {shapes[operands[1]].split('{')[0]} -> "
               f"{e['shape'].split('{')[0]} (contract {','.join(map(str, lc))}|"
               f"{','.join(map(str, rc))})"]


def hlo_ops(hlo_text: str) -> dict[str, dict]:
  """{instruction name: {opcode, shape, calls, flops, dots, specs, epilogue}} from a compiled
  module's text.

  A dot's FLOPs are 2 x output elements x contracted size; a fusion's are its computation's
  dots (recursively through `calls=`), and its `epilogue` the other ops fused with them (a
  softmax, a bias): a matmul fusion with none is a plain matmul."""
  computations = _parse(hlo_text)
  for entries in computations.values():
    shapes = {e["name"]: e["shape"] for e in entries}
    for e in entries:
      if e["opcode"] == "dot":
        _describe_dot(e, shapes)

  def fused(comp: str | None, depth: int = 0) -> tuple[float, list[str], list, set]:
    if comp is None or comp not in computations or depth > 4:
      return 0.0, [], [], set()
    flops, dots, specs, other = 0.0, [], [], set()
    for e in computations[comp]:
      flops, dots, specs = flops + e["flops"], dots + e["dots"], specs + e["specs"]
      if e["opcode"] == "fusion":
        f, d, sp, o = fused(e["calls"], depth + 1)
        flops, dots, specs, other = flops + f, dots + d, specs + sp, other | o
      elif e["opcode"] not in _PLAIN:
        other.add(e["opcode"])
    return flops, dots, specs, other

  ops = {}
  for entries in computations.values():
    for e in entries:
      if e["opcode"] == "fusion":
        e["flops"], e["dots"], e["specs"], e["epilogue"] = fused(e["calls"])
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
            options: dict[str, str], top: int, hlo_out: str = "",
            standalone_reps: int = 0) -> dict:
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
  alone = (standalone_comparison(events, ops, kind_of, trace_steps, standalone_reps)
           if standalone_reps else None)
  return {"host": host_info.describe(), "batch": batch, "xla_options": options,
          "standalone": alone, "compile_s": round(compile_s, 1),
          "step_s_median": round(statistics.median(times), 4),
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


def time_dot(spec, reps: int) -> float:
  """Median wall seconds of one dot of `spec` (lhs dims, rhs dims, contracting and batch
  dims) alone, jitted, on random float32 operands, after 2 untimed runs."""
  lhs, rhs, lc, rc, lb, rb = spec
  rng = np.random.default_rng(0)
  a = jnp.asarray(rng.random(lhs, dtype=np.float32))
  b = jnp.asarray(rng.random(rhs, dtype=np.float32))
  f = jax.jit(lambda x, y: jax.lax.dot_general(x, y, ((lc, rc), (lb, rb))))
  for _ in range(2):
    f(a, b).block_until_ready()
  times = []
  for _ in range(reps):
    start = time.perf_counter()
    f(a, b).block_until_ready()
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def standalone_comparison(events, ops: dict, kind_of: dict[str, str], trace_steps: int,
                          reps: int) -> dict:
  """The traced matmul ops against the same dots (shapes, contracting and batch dims) timed
  alone right after, split into plain matmul fusions and those with fused elementwise work
  (softmax, its backward): ms per step in the step vs alone, and GFLOP/s of each."""
  seconds: dict = {}
  groups = {"plain": [0.0, 0.0, 0.0], "with fused elementwise": [0.0, 0.0, 0.0]}
  for name, _, start, end in events:
    op = ops.get(name)
    if kind_of[name] != "matmul" or not op["specs"]:
      continue
    alone = 0.0
    for spec in op["specs"]:
      if spec not in seconds:
        seconds[spec] = time_dot(spec, reps)
      alone += seconds[spec]
    group = groups["with fused elementwise" if op["epilogue"] else "plain"]
    group[0] += op["flops"]
    group[1] += (end - start) / 1e9
    group[2] += alone
  return {k: {"in_step_ms": round(1e3 * t / trace_steps, 3),
              "alone_ms": round(1e3 * t_alone / trace_steps, 3),
              "in_step_gflops_per_s": round(f / t / 1e9, 1) if t else None,
              "alone_gflops_per_s": round(f / t_alone / 1e9, 1) if t_alone else None,
              "distinct_dots": len(seconds)}
          for k, (f, t, t_alone) in groups.items()}


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
  for group, fig in (result.get("standalone") or {}).items():
    print(f"matmuls {group}: in the step {fig['in_step_ms']} ms at "
          f"{fig['in_step_gflops_per_s']} GFLOP/s; the same dots alone {fig['alone_ms']} ms at "
          f"{fig['alone_gflops_per_s']} GFLOP/s")
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
  flags.DEFINE_integer("standalone_reps", 0, "time every traced dot alone too (median of this "
                       "many runs) and compare", flag_values=values)
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
                   args.top, args.hlo_out, args.standalone_reps)
  _print(result)
  if args.out:
    with open(args.out, "w") as f:
      json.dump(result, f, indent=2)


if __name__ == "__main__":
  sys.exit(main())
