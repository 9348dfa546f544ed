"""Accelerator chips in one place: peak bf16 FLOP/s, HBM size and bandwidth per chip (with
sources), and TPU slice names (MaxText/xpk style, `v5e-256`) -> topology strings.

Used by `tools/aot_compile` (memory fit, roofline; GPU target configs for deviceless XLA:GPU
compiles) and `tools/benchmark` (MFU). Figures are the vendors' published per-chip peaks (dense
bf16; no sparsity), read 2026-12-07.
"""
from __future__ import annotations

import dataclasses
import re

GIB = 2 ** 30


@dataclasses.dataclass(frozen=True)
class Chip:
  """One chip. hbm_bytes: memory per chip; hbm_bandwidth: bytes/s; cores_per_name: how many
  TensorCores the slice name counts per chip (v4-32 is 16 chips: names count cores)."""
  name: str
  device_kind: str          # substring of jax's device_kind for this chip
  peak_bf16_flops: float
  hbm_bytes: int
  hbm_bandwidth: float
  topology_prefix: str      # the prefix of libtpu's topology names ('v5' for v5p)
  dims: int                 # 2 (2D torus) or 3 (3D torus)
  chip_config: str          # libtpu chip_config_name
  cores_per_name: int
  source: str


CHIPS = {
    "v4": Chip("v4", "TPU v4", 275e12, 32 * GIB, 1200e9, "v4", 3, "megacore", 2,
               "cloud.google.com/tpu/docs/v4: 275 TFLOPs bf16, 32 GiB HBM2, 1200 GBps"),
    "v5e": Chip("v5e", "TPU v5 lite", 197e12, 16 * GIB, 819e9, "v5e", 2, "default", 1,
                "cloud.google.com/tpu/docs/v5e: 197 TFLOPs bf16, 16 GB HBM2, 819 GBps"),
    "v5p": Chip("v5p", "TPU v5", 459e12, 95 * GIB, 2765e9, "v5", 3, "megacore", 2,
                "cloud.google.com/tpu/docs/v5p: 459 TFLOPs bf16, 95 GB HBM2e, 2765 GBps"),
    "v6e": Chip("v6e", "TPU v6", 918e12, 32 * GIB, 1638e9, "v6e", 2, "default", 1,
                "cloud.google.com/tpu/docs/v6e: 918 TFLOPs bf16, 32 GB HBM, 1638 GBps"),
    "h100": Chip("h100", "H100", 989e12, 80 * 10 ** 9, 3.35e12, "", 0, "", 1,
                 "NVIDIA H100 SXM datasheet: 989 TFLOPS dense bf16, 80 GB HBM3, 3.35 TB/s"),
    "h200": Chip("h200", "H200", 989e12, 141 * 10 ** 9, 4.8e12, "", 0, "", 1,
                 "NVIDIA H200 SXM datasheet: 989 TFLOPS dense bf16, 141 GB HBM3e, 4.8 TB/s"),
}
TPU_CHIPS = ("v4", "v5e", "v5p", "v6e")

# Slice shapes by chip count: 2D tori (v5e, v6e) and 3D tori (v4, v5p), as Cloud TPU offers them.
SHAPES_2D = {1: (1, 1), 4: (2, 2), 8: (2, 4), 16: (4, 4), 32: (4, 8), 64: (8, 8), 128: (8, 16),
             256: (16, 16)}
SHAPES_3D = {4: (2, 2, 1), 8: (2, 2, 2), 16: (2, 2, 4), 32: (2, 4, 4), 64: (4, 4, 4),
             128: (4, 4, 8), 256: (4, 8, 8), 512: (8, 8, 8), 1024: (8, 8, 16),
             2048: (8, 16, 16), 4096: (16, 16, 16)}


# XLA:GPU's description of each GPU for a compile with no GPU present (its target config:
# xla.GpuTargetConfigProto in text form). SM counts, caches and clocks from NVIDIA's datasheets.
GPU_TARGETS = {
    "h100": dict(core_count=132, l2_cache_size=50 * 2**20, clock_rate_ghz=1.98,
                 device_memory_size=80 * 10 ** 9, description="NVIDIA H100 80GB HBM3"),
    "h200": dict(core_count=132, l2_cache_size=50 * 2**20, clock_rate_ghz=1.98,
                 device_memory_size=141 * 10 ** 9, description="NVIDIA H200"),
}
GPUS_PER_NODE = 8


@dataclasses.dataclass(frozen=True)
class Slice:
  """A TPU slice or GPU nodes: the chip, the topology string its compiler takes (libtpu's
  'v5e:16x16'; XLA:GPU's '<slices>x<hosts>x<devices per host>'), chip count, per-host bounds."""
  chip: Chip
  topology: str
  num_chips: int
  chips_per_host_bounds: tuple[int, int, int]
  name: str               # what the user asked for

  @property
  def platform(self) -> str:
    return "tpu" if self.chip.name in TPU_CHIPS else "cuda"

  @property
  def accelerator_type(self) -> str:
    """Cloud TPU's accelerator type ('v5litepod-16', 'v4-32'), as TPU VMs report it."""
    prefix = "v5litepod" if self.chip.name == "v5e" else self.chip.name
    return f"{prefix}-{self.num_chips * self.chip.cores_per_name}"


def peak_for_device_kind(device_kind: str) -> Chip | None:
  """The chip whose device_kind substring is in jax's device_kind (longest match first)."""
  for chip in sorted(CHIPS.values(), key=lambda c: -len(c.device_kind)):
    if chip.device_kind.lower() in device_kind.lower():
      return chip
  return None


def _shape_string(shape: tuple[int, ...]) -> str:
  return "x".join(str(s) for s in shape)


def cuda_target_config(chip: Chip) -> str:
  """The XLA:GPU target config (text proto) of an H100 / H200, for deviceless compiles."""
  t = GPU_TARGETS[chip.name]
  return f"""gpu_device_info {{
  threads_per_block_limit: 1024
  threads_per_warp: 32
  shared_memory_per_block: 49152
  shared_memory_per_core: 233472
  threads_per_core_limit: 2048
  core_count: {t['core_count']}
  fpus_per_core: 128
  block_dim_limit_x: 2147483647
  block_dim_limit_y: 65535
  block_dim_limit_z: 65535
  memory_bandwidth: {int(chip.hbm_bandwidth)}
  l2_cache_size: {t['l2_cache_size']}
  clock_rate_ghz: {t['clock_rate_ghz']}
  device_memory_size: {t['device_memory_size']}
  shared_memory_per_block_optin: 232448
  cuda_compute_capability {{ major: 9 }}
  registers_per_core_limit: 65536
  registers_per_block_limit: 65536
}}
platform_name: "CUDA"
dnn_version_info {{ major: 9 minor: 8 }}
runtime_version {{ major: 13 minor: 0 }}
device_description_str: "{t['description']}"
"""


def parse_gpus(name: str) -> Slice | None:
  """'h100-8' / 'h200-16' (GPUs, 8 a node) -> Slice; None when `name` names no GPU."""
  m = re.fullmatch(r"(h100|h200)-(\d+)", name)
  if not m:
    return None
  n = int(m.group(2))
  if n < 1 or (n > GPUS_PER_NODE and n % GPUS_PER_NODE):
    raise ValueError(f"--topology={name}: give up to {GPUS_PER_NODE} GPUs or whole nodes of "
                     f"{GPUS_PER_NODE} (e.g. {m.group(1)}-{GPUS_PER_NODE * 2})")
  nodes, per_node = max(1, n // GPUS_PER_NODE), min(n, GPUS_PER_NODE)
  return Slice(CHIPS[m.group(1)], f"1x{nodes}x{per_node}", n, (per_node, 1, 1), name)


def parse_slice(name: str) -> Slice:
  """'v5e-256' / 'v4-32' (names count TensorCores for v4 and v5p, chips for v5e and v6e) or a
  raw topology 'v5e:4x4' / 'v4:2x2x2' / 'v5p:2x2x4' -> Slice. One-line ValueError otherwise."""
  gpus = parse_gpus(name)
  if gpus is not None:
    return gpus
  known = ", ".join(f"{c}-N" for c in TPU_CHIPS) + ", h100-N, h200-N"
  m = re.fullmatch(r"(v4|v5e|v5p|v6e)-(\d+)", name)
  if m:
    chip = CHIPS[m.group(1)]
    cores = int(m.group(2))
    if cores % chip.cores_per_name:
      raise ValueError(f"--topology={name}: {chip.name} slice names count TensorCores "
                       f"({chip.cores_per_name} per chip); use an even number, e.g. "
                       f"{chip.name}-{2 * cores}")
    chips = cores // chip.cores_per_name
    shapes = SHAPES_3D if chip.dims == 3 else SHAPES_2D
    if chips not in shapes:
      sizes = ", ".join(f"{chip.name}-{n * chip.cores_per_name}" for n in shapes)
      raise ValueError(f"--topology={name}: no {chip.name} slice of {chips} chips; one of "
                       f"{sizes}, or a raw topology such as {chip.name}:"
                       f"{_shape_string(next(iter(shapes.values())))}")
    shape = shapes[chips]
  else:
    m = re.fullmatch(r"(v4|v5e|v5p|v6e|v5):(\d+(?:x\d+){1,2})", name)
    if not m:
      raise ValueError(f"unknown --topology={name!r}: give a slice name ({known}, e.g. "
                       f"v5e-256, v4-32) or a topology (v5e:4x4, v4:2x2x2, v5p:2x2x4)")
    chip = CHIPS["v5p" if m.group(1) == "v5" else m.group(1)]
    shape = tuple(int(s) for s in m.group(2).split("x"))
    if len(shape) != chip.dims:
      raise ValueError(f"--topology={name}: {chip.name} slices are {chip.dims}D "
                       f"(e.g. {chip.name}:{'2x2x2' if chip.dims == 3 else '4x4'})")
  num_chips = 1
  for s in shape:
    num_chips *= s
  # Training VMs hold 2x2 chips (MaxText's and xpk's bounds); a one-chip slice, one.
  bounds = (2, 2, 1)
  if chip.dims == 2 and num_chips <= 4:
    bounds = (shape[0], shape[1], 1)
  topology = f"{chip.topology_prefix}:{_shape_string(shape)}"
  return Slice(chip, topology, num_chips, bounds, name)
