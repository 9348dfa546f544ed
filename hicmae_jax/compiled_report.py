"""What a compiled XLA program costs per chip: memory (against the chip's HBM), FLOPs, the
collectives in its HLO (kind, count, bytes, where each comes from) and a roofline.

Pure functions of `jax.stages.Compiled` and its HLO text; used by `tools/aot_compile` on
compile-only TPU devices and usable on any backend.
"""
from __future__ import annotations

import collections
import re
from typing import Any, Callable

from hicmae_jax import accelerators

COLLECTIVES = ("all-gather", "all-reduce", "reduce-scatter", "all-to-all", "collective-permute",
               "ragged-all-to-all")
BYTES_PER_ELEMENT = {"pred": 1, "s8": 1, "u8": 1, "s16": 2, "u16": 2, "f16": 2, "bf16": 2,
                     "s32": 4, "u32": 4, "f32": 4, "s64": 8, "u64": 8, "f64": 8, "c64": 8,
                     "c128": 16, "f8e4m3fn": 1, "f8e5m2": 1}
# `%name = <result type> <opcode>(` ; async collectives are counted at their -start.
_INSTRUCTION = re.compile(
    r"^\s*(?:ROOT\s+)?%?(?P<name>[\w.\-]+)\s*=\s*(?P<type>.+?)\s+"
    r"(?P<op>" + "|".join(re.escape(c) for c in COLLECTIVES) + r")(?P<start>-start)?\(")
_ARRAY = re.compile(r"\b(?P<dtype>[a-z]+\d*(?:e\dm\d(?:fn)?)?)\[(?P<dims>[\d,]*)\]")
_OP_NAME = re.compile(r'op_name="(?P<op_name>[^"]*)"')
_SOURCE = re.compile(r'source_file="(?P<file>[^"]*)"\s+source_line=(?P<line>\d+)')
_GROUPS_LIST = re.compile(r"replica_groups=\{(?P<groups>\{[\d,]*\}(?:,\{[\d,]*\})*)\}")
_CHANNEL = re.compile(r"channel_id=(?P<id>\d+)")
# The TPU compiler's form: replica_groups=mesh['axis_0'=1,'axis_1'=16] {'axis_1'}
_GROUPS_MESH = re.compile(r"replica_groups=mesh\[(?P<axes>[^\]]*)\]\s*\{(?P<used>[^}]*)\}")
_GROUPS_IOTA = re.compile(r"replica_groups=\[(?P<n>\d+),(?P<size>\d+)\]<=")


def memory(compiled) -> dict[str, int] | None:
  """Bytes per device of a compiled program: arguments, outputs, aliased (donated) bytes,
  temporaries, generated code, and their peak = arguments + outputs - aliased + temporaries
  + code (what must fit in one chip's HBM). None where the backend gives no analysis."""
  try:
    ma = compiled.memory_analysis()
  except Exception:  # noqa: BLE001  not every backend implements it
    return None
  if ma is None:
    return None
  out = {"argument_bytes": int(ma.argument_size_in_bytes),
         "output_bytes": int(ma.output_size_in_bytes),
         "alias_bytes": int(ma.alias_size_in_bytes),
         "temp_bytes": int(ma.temp_size_in_bytes),
         "code_bytes": int(ma.generated_code_size_in_bytes)}
  out["peak_bytes"] = (out["argument_bytes"] + out["output_bytes"] - out["alias_bytes"]
                       + out["temp_bytes"] + out["code_bytes"])
  return out


def cost(compiled) -> dict[str, float]:
  """XLA's cost analysis per device: flops, bytes accessed (HBM traffic), and the TPU
  compiler's own optimal_seconds where it gives one."""
  try:
    c = compiled.cost_analysis()
  except Exception:  # noqa: BLE001
    return {}
  if isinstance(c, (list, tuple)):
    c = c[0] if c else {}
  c = c or {}
  return {k: float(c[k]) for k in ("flops", "bytes accessed", "optimal_seconds") if k in c}


def _array_bytes(type_text: str) -> list[int]:
  """Bytes of every array in an HLO result type ('bf16[8,512]{1,0}' or a tuple of them)."""
  sizes = []
  for m in _ARRAY.finditer(type_text):
    dtype = m.group("dtype")
    if dtype not in BYTES_PER_ELEMENT:
      continue
    n = 1
    for d in filter(None, m.group("dims").split(",")):
      n *= int(d)
    sizes.append(n * BYTES_PER_ELEMENT[dtype])
  return sizes


def _top_level(type_text: str) -> list[str]:
  """The elements of a tuple type '(a, (b, c), u32[])' at depth one; [type_text] if none."""
  text = type_text.strip()
  if not text.startswith("("):
    return [text]
  parts, depth, start = [], 0, 1
  for i, ch in enumerate(text):
    if ch in "({[":
      depth += 1
    elif ch in ")}]":
      depth -= 1
      if depth == 0:
        parts.append(text[start:i])
        break
    elif ch == "," and depth == 1:
      parts.append(text[start:i])
      start = i + 1
  return [p.strip() for p in parts if p.strip()]


def _async_result(type_text: str, kind: str) -> str:
  """The result part of an async start's type: all-gather / collective-permute / all-to-all
  starts give (operands, results[, context]); all-reduce starts give the results alone."""
  parts = _top_level(type_text)
  if kind == "all-reduce" or len(parts) < 2:
    return type_text
  return parts[1]


def _group_size(line: str) -> int | None:
  m = _GROUPS_MESH.search(line)
  if m:
    sizes = dict(re.findall(r"'([^']+)'=(\d+)", m.group("axes")))
    size = 1
    for axis in re.findall(r"'([^']+)'", m.group("used")):
      size *= int(sizes.get(axis, 1))
    return size
  m = _GROUPS_IOTA.search(line)
  if m:
    return int(m.group("size"))
  m = _GROUPS_LIST.search(line)
  if m:
    return len(m.group("groups").split("},{")[0].strip("{}").split(","))
  return None


def _source_op(line: str) -> str:
  """The JAX operation a collective was made for: its op_name without the jit/transform
  wrappers (e.g. 'jvp(PretrainModel)/dot_general'), plus file:line when recorded."""
  m = _OP_NAME.search(line)
  name = m.group("op_name") if m else "(no metadata)"
  parts = [p for p in name.split("/") if not p.startswith(("jit(", "pjit(")) and p != "main"]
  name = "/".join(parts) or name
  s = _SOURCE.search(line)
  if s:
    name += f" @ {s.group('file').rsplit('/', 1)[-1]}:{s.group('line')}"
  return name


def parse_collectives(hlo_text: str) -> list[dict[str, Any]]:
  """Every collective instruction of an HLO module (async ones once, at -start): kind,
  name, result bytes, group size, estimated bytes each device sends (ring algorithms:
  all-gather and all-to-all (g-1)/g of the result, reduce-scatter (g-1) x the result,
  all-reduce 2(g-1)/g, collective-permute the whole), and the source op."""
  found = []
  for line in hlo_text.splitlines():
    if "-done(" in line or "-update(" in line:
      continue
    m = _INSTRUCTION.match(line)
    if not m:
      continue
    kind = m.group("op")
    result = sum(_array_bytes(_async_result(m.group("type"), kind) if m.group("start")
                              else m.group("type")))
    g = _group_size(line) or 1
    factor = {"all-gather": (g - 1) / g, "all-to-all": (g - 1) / g, "ragged-all-to-all":
              (g - 1) / g, "reduce-scatter": float(g - 1), "all-reduce": 2 * (g - 1) / g,
              "collective-permute": 1.0}[kind]
    channel = _CHANNEL.search(line)
    found.append({"kind": kind, "name": m.group("name"), "result_bytes": int(result),
                  "group_size": g, "sent_bytes": int(result * factor),
                  "channel": int(channel.group("id")) if channel else None,
                  "source": _source_op(line)})
  return found


def logical(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
  """One entry per collective the program performs: instructions sharing a channel_id are
  pieces of one (the TPU compiler copies a collective into each fusion that consumes it, all
  with its channel id: 113 instructions, one exchange, for the contrastive loss of Base)."""
  seen, out = set(), []
  for c in found:
    key = (c["kind"], c["channel"]) if c["channel"] is not None else id(c)
    if key not in seen:
      seen.add(key)
      out.append(c)
  return out


def summarise_collectives(found: list[dict[str, Any]], top: int = 12) -> dict[str, Any]:
  """Per kind: how many collectives the program performs (`count`, by channel id), how many
  HLO instructions hold them (`instructions`), result bytes and bytes sent per device (of
  the collectives performed); and the sources that account for the most bytes."""
  by_kind: dict[str, dict[str, Any]] = {}
  for kind in COLLECTIVES:
    pieces = [c for c in found if c["kind"] == kind]
    if not pieces:
      continue
    items = logical(pieces)
    sources = collections.defaultdict(lambda: [0, 0])
    for c in items:
      sources[c["source"]][0] += 1
      sources[c["source"]][1] += c["result_bytes"]
    ranked = sorted(sources.items(), key=lambda kv: (-kv[1][1], -kv[1][0]))
    by_kind[kind] = {
        "count": len(items), "instructions": len(pieces),
        "result_bytes": sum(c["result_bytes"] for c in items),
        "sent_bytes_per_device": sum(c["sent_bytes"] for c in items),
        "sources": [{"source": s, "count": n, "result_bytes": b} for s, (n, b) in ranked[:top]],
        "other_sources": max(0, len(ranked) - top)}
  return by_kind


def hbm_traffic_estimate(mem: dict[str, int]) -> int:
  """Bytes a step moves through HBM at the least, from its buffers: arguments read once,
  outputs written once, temporaries written once and read once. (XLA's TPU cost analysis
  'bytes accessed' counts operand bytes of every op, on-chip traffic included: 2.2 TB per
  chip per step for Base pre-training on v5e-16, far above what its 5.5 GiB of buffers can
  move, so it is reported but not used here.)"""
  return mem["argument_bytes"] + mem["output_bytes"] + 2 * mem["temp_bytes"]


def roofline(chip: accelerators.Chip, flops_per_chip: float, bytes_per_chip: float,
             model_flops_per_chip: float | None, clips_per_chip: float) -> dict[str, Any]:
  """The ideal step time on one chip: the larger of compute (XLA's FLOPs / peak bf16) and
  memory (HBM bytes / HBM bandwidth), communication and overheads left out. Hence the MFU
  ceiling (the model's analytic FLOPs in that time against the peak) and clips/s."""
  t_compute = flops_per_chip / chip.peak_bf16_flops
  t_memory = bytes_per_chip / chip.hbm_bandwidth
  ideal = max(t_compute, t_memory)
  out = {"chip": chip.name, "peak_bf16_tflops": chip.peak_bf16_flops / 1e12,
         "hbm_gbps": chip.hbm_bandwidth / 1e9, "compute_seconds": t_compute,
         "memory_seconds": t_memory, "ideal_step_seconds": ideal,
         "bound": "compute" if t_compute >= t_memory else "memory",
         "clips_per_second_per_chip": clips_per_chip / ideal if ideal else None,
         "source": chip.source}
  if model_flops_per_chip is not None and ideal:
    out["mfu_ceiling"] = model_flops_per_chip / (ideal * chip.peak_bf16_flops)
  return out


def fits(peak_bytes: int, chip: accelerators.Chip) -> dict[str, Any]:
  """Whether a program's peak bytes fit the chip's HBM, and by how much it is over or under."""
  return {"hbm_bytes": chip.hbm_bytes, "fits": peak_bytes <= chip.hbm_bytes,
          "headroom_bytes": chip.hbm_bytes - peak_bytes,
          "used_fraction": peak_bytes / chip.hbm_bytes}


def search_max_batch(peak: Callable[[int], int], limit: int, step: int, start: int,
                     cap: int = 1 << 20, known: dict[int, int] | None = None) -> int | None:
  """The largest multiple of `step` whose `peak(batch)` (bytes, increasing in the batch) is at
  most `limit`, or None if not even `step` fits. `peak` is a compile (minutes for a Base step),
  so each batch is asked once and as few as possible; `known` holds peaks already compiled
  ({batch: bytes}, e.g. the reported batch's), asked never.

  Growing from `start`: while a batch fits, the next is where the line through the last two
  fits crosses the limit (the first multiple past it), else twice the batch. Then, between the
  last fit and the first miss: where the line through their peaks crosses the limit (peak
  memory is close to linear in the batch, so this usually settles it in one or two compiles),
  with the Illinois rule (an end kept twice has its distance to the limit halved) so that a
  curved or stepped memory profile still closes in a few compiles, not one step at a time.
  """
  peaks: dict[int, int] = dict(known or {})

  def fits(batch: int) -> bool:
    if batch not in peaks:
      peaks[batch] = peak(batch)
    return peaks[batch] <= limit

  def multiple_below(b0: int, b1: int, over0: float, over1: float) -> int:
    """The multiple of `step` at or below where the line through (b0, over0), (b1, over1)
    (peak minus limit) is zero."""
    return int(b0 - over0 * (b1 - b0) / (over1 - over0)) // step * step

  lo, hi = 0, max(step, start // step * step)
  while fits(hi):
    if hi >= cap:
      return hi
    prev, lo = lo, hi
    if prev and peaks[lo] > peaks[prev]:
      guess = multiple_below(prev, lo, peaks[prev] - limit, peaks[lo] - limit)
      hi = min(cap, max(lo + step, guess + step))
    else:
      hi = min(cap, 2 * lo)
  if lo == 0:  # even `start` does not fit
    if hi == step or not fits(step):
      return None
    lo = step
  over_lo, over_hi, kept = peaks[lo] - limit, peaks[hi] - limit, None
  while hi - lo > step:
    probe = multiple_below(lo, hi, over_lo, over_hi) if over_hi > over_lo else lo
    probe = min(hi - step, max(lo + step, probe))
    if fits(probe):
      lo, over_lo = probe, peaks[probe] - limit
      if kept == "hi":
        over_hi /= 2
      kept = "hi"
    else:
      hi, over_hi = probe, peaks[probe] - limit
      if kept == "lo":
        over_lo /= 2
      kept = "lo"
  return lo
