"""Compile the real train (and eval) step for a TPU slice or GPU nodes from a CPU host, before
renting them: memory per chip against its HBM, FLOPs, the collectives of the compiled HLO, a
roofline.

  python -m hicmae_jax.tools.aot_compile --config=configs/pretrain_base.py --topology=v5e-16 \
      [--num_slices=2] [--find_max_batch] [--output=aot_v5e-16.json] [--config.model.dtype=...]

Needs libtpu (the TPU compiler) but no TPU: install it beside, not into, the CPU environment
(BUILD.md, "Compile for a TPU before renting one"):
  pip install --no-deps --upgrade --target ~/.cache/hicmae_jax/libtpu -r requirements-tpu-aot.txt
GPU targets (--topology=h100-8, h200-16: 8 GPUs a node) need the jax CUDA plugin the same way
(requirements-gpu-aot.txt into ~/.cache/hicmae_jax/cuda) and ptxas on PATH, no GPU.
The mesh is the trainer's (`sharding.make_mesh` over the topology's compile-only devices,
config.mesh.dcn_data = --num_slices), the state is the trainer's (`train_state.describe`:
abstract, sharded, nothing allocated), the step is the trainer's (`train.make_train_step`), and
the batch has the layout the config's input pipeline sends on an accelerator (one batch of the
real pipeline over a small synthetic split with frames of --frame_size, enlarged to the global
batch).
"""
from __future__ import annotations

import dataclasses
import os
import sys
import tempfile
import time
from typing import Any

from absl import flags
from ml_collections import config_flags

from hicmae_jax import accelerators, cli, experiments, losses
from hicmae_jax.models import hicmae

# The all-gathers a data-parallel step needs, by name scope: the contrastive loss's negatives
# (a group of contrastive_group_size clips spans devices), exchanged as the pooled features.
# Everything else a pure data-parallel step exchanges is the gradients' all-reduce.
ALLOWED_GATHERS = (losses.NEGATIVES_SCOPE, hicmae.CONTRASTIVE_FEATURES_SCOPE)
DEFAULT_LIBTPU_DIR = os.path.join("~", ".cache", "hicmae_jax", "libtpu")
INSTALL_HINT = ("pip install --target ~/.cache/hicmae_jax/libtpu -r requirements-tpu-aot.txt "
                "(BUILD.md: 'Compile for a TPU before renting one')")


# ----------------------------------------------------------------------------- the compiler --

def find_libtpu(folder: str = "") -> str:
  """Path of libtpu.so: $TPU_LIBRARY_PATH, an importable libtpu, `folder`, $HICMAE_LIBTPU_DIR,
  ~/.cache/hicmae_jax/libtpu. One-line error naming the install command otherwise."""
  if os.environ.get("TPU_LIBRARY_PATH") and os.path.isfile(os.environ["TPU_LIBRARY_PATH"]):
    return os.environ["TPU_LIBRARY_PATH"]
  candidates = [folder, os.environ.get("HICMAE_LIBTPU_DIR", ""), DEFAULT_LIBTPU_DIR]
  for base in filter(None, candidates):
    path = os.path.join(os.path.expanduser(base), "libtpu", "libtpu.so")
    if os.path.isfile(path):
      return path
  try:
    import libtpu  # noqa: F401  installed into the environment itself (jax[tpu])
    return libtpu.get_library_path()
  except ImportError:
    pass
  looked = ", ".join(os.path.expanduser(c) for c in filter(None, candidates))
  raise cli.BadInput(f"libtpu (the TPU compiler) is not installed (looked in {looked}): "
                     f"{INSTALL_HINT}")


CUDA_DIR = os.path.join("~", ".cache", "hicmae_jax", "cuda")
CUDA_HINT = ("pip install --no-deps --upgrade --target ~/.cache/hicmae_jax/cuda "
             "-r requirements-gpu-aot.txt (BUILD.md: 'Compile for a TPU before renting one')")


def use_cuda_compiler(folder: str = "") -> None:
  """Makes XLA:GPU's compiler loadable with no GPU: the jax CUDA plugin from `folder`,
  $HICMAE_CUDA_DIR or ~/.cache/hicmae_jax/cuda (or installed with jax[cuda13]), and ptxas on
  PATH. Call before JAX starts a backend (plugins are discovered once)."""
  import importlib.util
  import shutil
  for base in filter(None, [folder, os.environ.get("HICMAE_CUDA_DIR", ""), CUDA_DIR]):
    path = os.path.expanduser(base)
    if os.path.isdir(os.path.join(path, "jax_plugins")) and path not in sys.path:
      sys.path.insert(0, path)
      break
  if not any(importlib.util.find_spec(f"jax_plugins.xla_cuda{v}") for v in (13, 12)):
    raise cli.BadInput(f"the jax CUDA plugin (XLA:GPU's compiler) is not installed: {CUDA_HINT}")
  if not shutil.which("ptxas"):
    raise cli.BadInput("ptxas (CUDA's assembler) is not on PATH: install the CUDA toolkit, or "
                       "pip install nvidia-cuda-nvcc-cu13 and put its bin/ on PATH")
  # With no GPU XLA cannot autotune Triton GEMM tiles (Base fails: "Couldn't find output
  # tile sizes"), so GEMMs go to cuBLAS, as on a GPU where autotuning picks it.
  if "xla_gpu_enable_triton_gemm" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                               + " --xla_gpu_enable_triton_gemm=false").strip()
  import jax
  jax.config.update("jax_platforms", "cpu")  # the host's backend; the GPUs are compile-only


def topology_devices(tpu_slice: accelerators.Slice, num_slices: int, libtpu_path: str):
  """The compile-only devices of `num_slices` slices (no TPU needed, only libtpu), or of the
  GPU nodes a GPU target names (XLA:GPU with a target config, no GPU needed)."""
  from jax.experimental import topologies
  if tpu_slice.platform == "cuda":
    topo = topologies.get_topology_desc(
        platform="cuda", topology=tpu_slice.topology,
        target_config=accelerators.cuda_target_config(tpu_slice.chip))
    return list(topo.devices)
  # libtpu reads these at load; on a CPU host they only silence its metadata-server probes.
  os.environ["TPU_LIBRARY_PATH"] = libtpu_path
  os.environ.setdefault("TPU_SKIP_MDS_QUERY", "1")
  os.environ.setdefault("TPU_ACCELERATOR_TYPE", tpu_slice.accelerator_type)
  os.environ.setdefault("TPU_WORKER_HOSTNAMES", "localhost")
  # Compile-only: no chip to guard, so several compiles (tests, a batch search) may share it.
  os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
  topo = topologies.get_topology_desc(
      platform="tpu", topology_name=tpu_slice.topology,
      chip_config_name=tpu_slice.chip.chip_config,
      chips_per_host_bounds=tpu_slice.chips_per_host_bounds, num_slices=num_slices)
  return list(topo.devices)


# ------------------------------------------------------------------------------- the inputs --

def example_batches(config, frame_size: int) -> dict[str, dict[str, Any]]:
  """{'train': batch, 'eval': batch} of 2 clips as the config's pipelines make them (numpy),
  from a small synthetic split written to a temporary folder."""
  from hicmae_jax.data.pipeline import factories as pipeline
  from hicmae_jax.data.prepare import synthetic
  m = config.model
  frames = max(48, m.num_frames * config.data.sampling_rate)
  classes = max(2, int(m.num_classes or 0))
  out = {}
  with tempfile.TemporaryDirectory(prefix="hicmae_aot_") as root:
    synthetic.generate(root, num_train=2, num_val=0, num_test=2, num_classes=classes,
                       frame_size=frame_size, num_frames=frames, seed=0, num_workers=1,
                       verbose=False)
    split = "pretrain" if config.kind == "pretrain" else "train"
    ds = pipeline.train_dataset_from_config(config, os.path.join(root, split), batch_size=2,
                                            seed=0, shard=(0, 1))
    it = iter(ds)
    out["train"] = dict(next(it))
    getattr(it, "close", lambda: None)()
    if config.kind != "pretrain":
      ds = pipeline.eval_dataset_from_config(config, os.path.join(root, "test"), mode="test",
                                             batch_size=2, shard=(0, 1))
      it = iter(ds)
      local = next(it)
      getattr(it, "close", lambda: None)()
      keys = ("video", "audio") + (("video_crop_size",) if "video_crop_size" in local else ())
      out["eval"] = {k: local[k] for k in keys}
  return out


def abstract_batch(example: dict[str, Any], batch: int, mesh) -> dict[str, Any]:
  """The example's arrays as ShapeDtypeStructs of `batch` rows, split over the mesh."""
  import jax
  import numpy as np

  from hicmae_jax import sharding
  sh = sharding.batch_sharding(mesh)
  return {k: jax.ShapeDtypeStruct((batch,) + np.shape(v)[1:], np.asarray(v).dtype, sharding=sh)
          for k, v in example.items()}


# ---------------------------------------------------------------------------- the compiles --

def _per_clip_flops(config) -> float:
  from hicmae_jax.tools import benchmark
  return (benchmark.pretrain_flops_per_clip(config.model) if config.kind == "pretrain"
          else benchmark.finetune_flops_per_clip(config.model))


def compile_train(config, mesh, example: dict[str, Any], batch: int):
  """(compiled train step, StateSpec, seconds) at a global batch."""
  from hicmae_jax import train, train_state
  with config.unlocked():
    config.global_batch_size = batch
  spec = train_state.describe(config, mesh, 1000, 100)
  step = train.make_train_step(config, spec.view, spec.tx, spec.shardings, mesh)
  t0 = time.perf_counter()
  compiled = step.lower(spec.abstract, abstract_batch(example, batch, mesh)).compile()
  return compiled, spec, time.perf_counter() - t0


def compile_eval(spec, mesh, example: dict[str, Any], batch: int):
  from hicmae_jax import evaluate
  program = evaluate.predict_program(spec.view, mesh)
  args = abstract_batch(example, batch, mesh)
  t0 = time.perf_counter()
  compiled = program.lower(spec.abstract["params"], *args.values()).compile()
  return compiled, time.perf_counter() - t0


def report_of(compiled, chip, *, batch: int, num_chips: int, model_flops_per_clip: float,
              seconds: float, name: str = "", dump_hlo: str = "") -> dict[str, Any]:
  """Memory, FLOPs, collectives and roofline of one compiled program, per chip."""
  from hicmae_jax import compiled_report as cr
  if dump_hlo and name:
    os.makedirs(dump_hlo, exist_ok=True)
    with open(os.path.join(dump_hlo, f"{name}.hlo.txt"), "w") as f:
      f.write(compiled.as_text())
  mem = cr.memory(compiled) or {}
  cost = cr.cost(compiled)
  per_chip_batch = batch / num_chips
  model_flops = model_flops_per_clip * per_chip_batch
  out = {"global_batch": batch, "per_chip_batch": per_chip_batch,
         "compile_seconds": round(seconds, 1), "memory": mem,
         "fit": cr.fits(mem["peak_bytes"], chip) if mem else None,
         "flops_per_chip": {"xla": cost.get("flops"), "analytic": model_flops},
         "bytes_accessed_per_chip": cost.get("bytes accessed"),
         "tpu_optimal_seconds": cost.get("optimal_seconds"),
         "collectives": cr.summarise_collectives(cr.parse_collectives(compiled.as_text()))}
  if mem:
    # XLA:GPU gives no cost analysis: the compute term then uses the analytic count.
    out["hbm_bytes_estimate"] = cr.hbm_traffic_estimate(mem)
    out["roofline"] = cr.roofline(chip, cost.get("flops") or model_flops,
                                  out["hbm_bytes_estimate"], model_flops, per_chip_batch)
    out["roofline"]["flops_from"] = "xla" if cost.get("flops") else "analytic"
  return out


SEARCHED: dict[int, int] = {}  # the last search's {global batch: peak bytes per chip}


def find_max_batch(config, mesh, example, chip, num_chips: int, start: int,
                   known: dict[int, int] | None = None) -> int | None:
  """The largest global batch (a multiple of the chip count) whose train step fits the chip's
  HBM (`compiled_report.search_max_batch` from `start`; `known`: {batch: peak bytes per chip}
  already compiled; every batch's peak in SEARCHED)."""
  from hicmae_jax import compiled_report as cr
  SEARCHED.clear()
  SEARCHED.update(known or {})

  def peak(batch: int) -> int:
    compiled, _, _ = compile_train(config.copy_and_resolve_references(), mesh, example, batch)
    SEARCHED[batch] = (cr.memory(compiled) or {}).get("peak_bytes", 1 << 62)
    print(f"  batch {batch}: peak {SEARCHED[batch] / 2**30:.2f} GiB per chip "
          f"({'fits' if SEARCHED[batch] <= chip.hbm_bytes else 'over'})", flush=True)
    return SEARCHED[batch]

  return cr.search_max_batch(peak, chip.hbm_bytes, num_chips, start, known=known)


# ------------------------------------------------------------------------------------ main --

def check_batch(batch: int, num_chips: int, flag: str = "--config.global_batch_size") -> None:
  if batch < num_chips or batch % num_chips:
    good = max(num_chips, (batch + num_chips - 1) // num_chips * num_chips)
    raise cli.BadInput(f"{flag}={batch} does not split over the {num_chips} chips: use a "
                       f"multiple of {num_chips} (e.g. {flag}={good})")


def run(config, tpu_slice: accelerators.Slice, num_slices: int, steps: list[str],
        frame_size: int, max_batch: bool, libtpu_path: str, hbm_gib: float = 0.0,
        dump_hlo: str = "") -> dict[str, Any]:
  import jax

  from hicmae_jax import sharding
  devices = topology_devices(tpu_slice, num_slices, libtpu_path)
  num_chips = len(devices)
  with config.unlocked():
    config.mesh.dcn_data = num_slices
    if config.data.get("finetune_float_augment") == "auto":
      config.data.finetune_float_augment = "device"  # what 'auto' picks on a TPU or GPU
  try:
    mesh = sharding.make_mesh(config.mesh, devices)
  except ValueError as e:
    raise cli.BadInput(f"{e} (--topology={tpu_slice.name}, --num_slices={num_slices})") from e
  check_batch(config.global_batch_size, num_chips)
  chip = tpu_slice.chip
  if hbm_gib > 0:
    chip = dataclasses.replace(chip, hbm_bytes=int(hbm_gib * 2**30))
  report: dict[str, Any] = {
      "topology": tpu_slice.name, "libtpu_topology": tpu_slice.topology,
      "num_slices": num_slices, "num_chips": num_chips, "chip": chip.name,
      "device_kind": devices[0].device_kind, "mesh": dict(mesh.shape), "kind": config.kind,
      "model": {"size": config.model.size, "dtype": config.model.dtype,
                "remat": bool(config.model.remat)}}
  print(f"{tpu_slice.name} ({tpu_slice.topology} x {num_slices} slice(s)): {num_chips} chips "
        f"of {devices[0].device_kind}, mesh {dict(mesh.shape)}", flush=True)
  report["platform"] = tpu_slice.platform
  examples = example_batches(config, frame_size)
  batch = int(config.global_batch_size)
  compiled, spec, seconds = compile_train(config.copy_and_resolve_references(), mesh,
                                          examples["train"], batch)
  report["parameters"] = spec.param_count()
  params = jax.tree.leaves(spec.abstract["params"])
  report["param_bytes_per_chip"] = sum(_shard_bytes(x) for x in params)
  report["param_bytes_total"] = sum(int(x.size) * x.dtype.itemsize for x in params)
  if "train" in steps:
    report["train"] = report_of(compiled, chip, batch=batch, num_chips=num_chips,
                                model_flops_per_clip=3 * _per_clip_flops(config),
                                seconds=seconds, name="train",
                                dump_hlo=dump_hlo)
  if "eval" in steps and "eval" in examples:
    eval_batch = int(config.eval_batch_size)
    check_batch(eval_batch, num_chips, "--config.eval_batch_size")
    compiled_eval, seconds = compile_eval(spec, mesh, examples["eval"], eval_batch)
    report["eval"] = report_of(compiled_eval, chip, batch=eval_batch, num_chips=num_chips,
                               model_flops_per_clip=_per_clip_flops(config), seconds=seconds,
                               name="eval", dump_hlo=dump_hlo)
  if max_batch:
    print("searching the largest global batch that fits ...", flush=True)
    peak = (report.get("train", {}).get("memory") or {}).get("peak_bytes")
    report["max_global_batch"] = find_max_batch(config, mesh, examples["train"], chip,
                                                num_chips, batch,
                                                known={batch: peak} if peak else None)
    report["max_batch_search"] = {str(b): p for b, p in sorted(SEARCHED.items())}
  return report


def _shard_bytes(x) -> int:
  """Bytes of one device's shard of an abstract array (its sharding's shard shape)."""
  shape = x.sharding.shard_shape(x.shape)
  n = 1
  for s in shape:
    n *= s
  return n * x.dtype.itemsize


def _gib(n) -> str:
  return "-" if n is None else f"{n / 2**30:.2f} GiB"


def summary_lines(report: dict[str, Any]) -> list[str]:
  lines = [f"parameters: {report['parameters']:,} ({_gib(report['param_bytes_total'])}; "
           f"{_gib(report['param_bytes_per_chip'])} per chip)"]
  for what in ("train", "eval"):
    r = report.get(what)
    if not r:
      continue
    mem, fit = r["memory"], r["fit"] or {}
    lines.append(f"{what} step, global batch {r['global_batch']} "
                 f"({r['per_chip_batch']:g} per chip), compiled in {r['compile_seconds']} s:")
    if mem:
      verdict = ("fits" if fit.get("fits") else
                 f"DOES NOT FIT: over by {_gib(-fit.get('headroom_bytes', 0))}")
      lines.append(f"  memory per chip: arguments {_gib(mem['argument_bytes'])}, outputs "
                   f"{_gib(mem['output_bytes'])} (aliased {_gib(mem['alias_bytes'])}), "
                   f"temporaries {_gib(mem['temp_bytes'])}, code {_gib(mem['code_bytes'])}; "
                   f"peak {_gib(mem['peak_bytes'])} of {_gib(fit.get('hbm_bytes'))} HBM: "
                   f"{verdict}")
    fl = r["flops_per_chip"]
    xla = "-" if fl["xla"] is None else f"{fl['xla'] / 1e12:.3f}"
    lines.append(f"  TFLOP per chip per step: XLA {xla}, analytic {fl['analytic'] / 1e12:.3f}")
    roof = r.get("roofline")
    if roof:
      mfu = roof.get("mfu_ceiling")
      lines.append(f"  roofline ({roof['bound']}-bound): ideal step "
                   f"{roof['ideal_step_seconds'] * 1e3:.1f} ms, "
                   f"{roof['clips_per_second_per_chip']:.1f} clips/s per chip"
                   + (f", MFU ceiling {mfu:.0%}" if mfu is not None else ""))
    for kind, c in r["collectives"].items():
      lines.append(f"  {kind}: {c['count']} ({c['instructions']} HLO instructions), "
                   f"{c['result_bytes'] / 2**20:.2f} MiB, {c['sent_bytes_per_device'] / 2**20:.2f} "
                   f"MiB sent per chip")
  if "max_global_batch" in report:
    lines.append(f"largest global batch that fits: {report['max_global_batch']}")
  return lines


def _define_flags(values: flags.FlagValues) -> None:
  config_flags.DEFINE_config_file("config", None, "Experiment config file.", lock_config=True,
                                  flag_values=values)
  flags.DEFINE_string("topology", None, "TPU slice: v4-32, v5e-256, v5p-128, v6e-64 (MaxText "
                      "names) or a topology such as v5e:4x4, v4:2x2x2; or GPUs: h100-8, h200-16 "
                      "(8 a node).", flag_values=values, required=True)
  flags.DEFINE_integer("num_slices", 1, "Slices joined over DCN (multi-slice): data parallel "
                       "across them (config.mesh.dcn_data).", flag_values=values)
  flags.DEFINE_list("steps", ["train", "eval"], "What to compile: train (the config's kind), "
                    "eval (fine-tuning kinds: the evaluation forward).", flag_values=values)
  flags.DEFINE_string("output", "", "JSON report path ('' = none).", flag_values=values)
  flags.DEFINE_bool("find_max_batch", False, "Search the largest global batch (a multiple of "
                    "the chip count) whose train step fits.", flag_values=values)
  flags.DEFINE_float("hbm_gib", 0.0, "Memory per chip to plan for, in GiB (default: the "
                     "chip's HBM; less leaves headroom).", flag_values=values)
  flags.DEFINE_integer("frame_size", 224, "Side of the stored frames the pipeline reads "
                       "(prepare's frames: 224, or --frame_size=160).", flag_values=values)
  flags.DEFINE_string("dump_hlo", "", "Folder for the compiled programs' HLO text "
                      "(<step>.hlo.txt), to read what the collectives come from.",
                      flag_values=values)
  flags.DEFINE_string("libtpu_dir", "", "Folder where libtpu was installed with pip --target "
                      "(default: $HICMAE_LIBTPU_DIR, then ~/.cache/hicmae_jax/libtpu).",
                      flag_values=values)


def main(argv=None) -> int:
  """The command line (argv without the program name; None: sys.argv[1:]) -> exit code."""
  return cli.run_own(_define_flags, _main, argv, doc=__doc__)


def _main(values: flags.FlagValues) -> int:
  try:
    tpu_slice = accelerators.parse_slice(values.topology)
  except ValueError as e:
    raise cli.BadInput(str(e)) from e
  if values.num_slices < 1:
    raise cli.BadInput(f"--num_slices={values.num_slices}: give 1 or more slices")
  unknown = sorted(set(values.steps) - {"train", "eval"})
  if unknown:
    raise cli.BadInput(f"--steps: unknown {unknown}; allowed: train, eval")
  config = values.config
  if config is None:
    raise cli.BadInput("--config is required, e.g. --config=configs/pretrain_base.py")
  if experiments.nested_experiments(config):
    raise cli.BadInput("the config nests several runs: name one, e.g. "
                       "--config=configs/demo.py:pretrain")
  if tpu_slice.platform == "cuda":
    if values.num_slices != 1:
      raise cli.BadInput("--num_slices is for TPU slices; give GPUs as whole nodes: h100-16")
    use_cuda_compiler()
    libtpu_path = ""
  else:
    libtpu_path = find_libtpu(values.libtpu_dir)
  report = run(config, tpu_slice, values.num_slices, list(values.steps), values.frame_size,
               values.find_max_batch, libtpu_path, values.hbm_gib, values.dump_hlo)
  print("\n".join(summary_lines(report)), flush=True)
  if values.output:
    from hicmae_jax import io_utils
    io_utils.write_json(values.output, report)
    print(f"report: {values.output}", file=sys.stderr)
  fit = (report.get("train") or {}).get("fit") or {}
  if fit and not fit["fits"]:  # the report is written first: it says where the bytes go
    over = -fit["headroom_bytes"] / 2**30
    raise cli.BadInput(
        f"the train step does not fit {tpu_slice.name}: {over:.2f} GiB per chip over its "
        f"{fit['hbm_bytes'] / 2**30:.1f} GiB; use --config.model.remat=True, "
        f"--config.mesh.fsdp=<chips> --config.mesh.data=1, --config.model.dtype=bfloat16 or "
        f"a smaller --config.global_batch_size (--find_max_batch finds the largest)")
  return 0


if __name__ == "__main__":
  sys.exit(main())
