r"""One batch's loss on the accelerator against the same batch's loss on the CPU.

  python -m hicmae_jax.tools.device_parity [--config=configs/test_pretrain.py[:finetune]] \
      [--batch_size=4] [--tolerance=2e-2] [--accelerator_dtype=bfloat16] [--output=parity.json]

The weights are initialised once, on the CPU, from config.seed (the trainer's state builder,
`train_state.describe(...).create()`), and the loss is the trainer's (`train.make_loss_fn`,
deterministic: no dropout or drop path) on one seeded numpy batch: uint8 frames, audio features
and the host's masks for pre-training (so both devices mask the same tokens), normalised frames,
audio and labels for fine-tuning. The model computes in --accelerator_dtype (bfloat16) on the
default device and in --cpu_dtype (float32) on the CPU; parameters stay float32 on both.
Exit 1, with one line, when |loss_accelerator - loss_cpu| / |loss_cpu| > --tolerance or either
loss is not finite. The default 2e-2 is a bf16 budget: bfloat16 rounds every value to 8
significant bits (2^-9 = 2e-3 relative). Measured on the CPU (Xeon, 2 cores, 2026-12-07),
configs/test_pretrain.py in bfloat16 vs float32 gives losses 2.3e-5 apart (relative), its
contrastive term alone 2.5e-3.

On a machine without an accelerator the default device is the CPU: both losses are computed
there (bfloat16 against float32), which exercises the same code path.
contrastive_group_size is set to 0 (negatives over the whole batch), as tools/benchmark does, so
any batch size works; a config's `cudnn` attention runs as `xla` on the CPU side.
"""
from __future__ import annotations

import math
import sys
import time
from typing import Any, Sequence

import jax
import ml_collections
import numpy as np
from absl import flags

from hicmae_jax import cli, experiments, host_info, sharding, train, train_state
from hicmae_jax.models.options import dtype_from_name, geometry


def _define_flags(values: flags.FlagValues) -> None:
  flags.DEFINE_string("config", "configs/test_pretrain.py", "Experiment config file[:arg] "
                      "(pre-training or fine-tuning; configs/demo.py:pretrain names a run).",
                      flag_values=values)
  flags.DEFINE_integer("batch_size", 4, "Clips in the batch.", flag_values=values)
  flags.DEFINE_integer("seed", 0, "Seed of the batch (numpy) and of the masks.",
                       flag_values=values)
  flags.DEFINE_float("tolerance", 2e-2, "Largest relative difference of the two losses that "
                     "passes (default: a bfloat16 budget).", flag_values=values)
  flags.DEFINE_string("accelerator_dtype", "bfloat16", "model.dtype on the default device.",
                      flag_values=values)
  flags.DEFINE_string("cpu_dtype", "float32", "model.dtype on the CPU.", flag_values=values)
  flags.DEFINE_string("output", "", "JSON report path ('' = none).", flag_values=values)


# The mesh of one device: the loss runs unsharded on each side.
_ONE_DEVICE = ml_collections.ConfigDict({"data": 1, "fsdp": 1, "dcn_data": 1})


def host_batch(config, batch_size: int, seed: int) -> dict[str, np.ndarray]:
  """One deterministic batch as the config's pipeline sends it. Pre-training: video uint8
  [B, T, S, S, 3], audio float32 [B, frames, bins], mask_video bool [B, Nv] (tube),
  mask_audio bool [B, Na]; fine-tuning: normalised float32 video, audio and label int32 [B]
  (targets float32 [B, num_targets] for regression)."""
  from hicmae_jax.data.transforms import masks  # only the pre-training batch needs it

  m = config.model
  rng = np.random.default_rng(seed)
  shape = (batch_size, m.num_frames, m.input_size, m.input_size, 3)
  audio = rng.normal(size=(batch_size, m.audio_frames, m.audio_mel_bins)).astype(np.float32)
  if config.kind == "pretrain":
    geo = geometry(m)
    return {"video": rng.integers(0, 256, size=shape, dtype=np.uint8), "audio": audio,
            "mask_video": np.stack([masks.tube_mask(rng, grid=geo.video_grid,
                                                    mask_ratio=m.video_mask_ratio)
                                    for _ in range(batch_size)]),
            "mask_audio": np.stack([masks.random_mask(rng, num_patches=geo.num_audio_tokens,
                                                      mask_ratio=m.audio_mask_ratio)
                                    for _ in range(batch_size)])}
  out = {"video": rng.normal(size=shape).astype(np.float32), "audio": audio}
  if m.task == "regression":
    out["targets"] = rng.normal(size=(batch_size, m.num_targets)).astype(np.float32)
  else:
    out["label"] = rng.integers(0, m.num_classes, size=batch_size).astype(np.int32)
  return out


def variant(config, dtype: str, on_cpu: bool):
  """A copy of `config` computing in `dtype` (the CPU has no cuDNN attention)."""
  dtype_from_name(dtype)  # a one-line error for an unknown name
  cfg = config.copy_and_resolve_references()
  with cfg.unlocked():
    cfg.model.dtype = dtype
    cfg.loss.contrastive_group_size = 0
    if on_cpu and cfg.model.attention_impl == "cudnn":
      cfg.model.attention_impl = "xla"
  return cfg


def initial_params(config) -> dict[str, np.ndarray]:
  """The state's float32 parameters from config.seed, created on the CPU, as numpy."""
  mesh = sharding.make_mesh(_ONE_DEVICE, jax.devices("cpu")[:1])
  state = train_state.describe(config, mesh, 1, 1).create()
  return jax.device_get(state["params"])


def loss_on(config, device, params: dict[str, np.ndarray], batch: dict[str, np.ndarray],
            seed: int) -> dict[str, float]:
  """The scalar metrics of the trainer's loss (deterministic) of `config` on `device`."""
  mesh = sharding.make_mesh(_ONE_DEVICE, [device])
  spec = train_state.describe(config, mesh, 1, 1)
  expected = {k: tuple(v.shape) for k, v in spec.abstract["params"].items()}
  if expected != {k: tuple(v.shape) for k, v in params.items()}:
    raise ValueError("the parameters do not fit the model of the other dtype: the config "
                     "builds a different model per dtype")
  on_device = jax.device_put(params, spec.shardings["params"])
  data = jax.device_put(batch, sharding.replicated(mesh))
  loss_fn = train.make_loss_fn(config, spec.view)

  def metrics(p, b):
    with jax.sharding.use_abstract_mesh(mesh.abstract_mesh):  # as in the train step
      return loss_fn(p, b, jax.random.key(seed), True)[1]

  return {k: float(v) for k, v in jax.device_get(jax.jit(metrics)(on_device, data)).items()}


def compare(config, batch_size: int, seed: int, acc_dtype: str = "bfloat16",
            cpu_dtype: str = "float32") -> dict[str, Any]:
  """Both losses of one batch and their relative difference (no verdict: see `check`)."""
  if config.kind not in train.TASKS:
    raise cli.BadInput(f"config kind {config.kind!r} has no loss here; allowed: "
                       f"{sorted(train.TASKS)}")
  if batch_size < 2:
    raise cli.BadInput(f"--batch_size={batch_size}: give 2 or more (the contrastive loss "
                       f"needs negatives)")
  cpu, acc = jax.devices("cpu")[0], jax.devices()[0]
  sides = {"accelerator": (acc, variant(config, acc_dtype, acc.platform == "cpu")),
           "cpu": (cpu, variant(config, cpu_dtype, True))}
  params = initial_params(sides["cpu"][1])
  batch = host_batch(config, batch_size, seed)
  report: dict[str, Any] = {"config_kind": config.kind, "size": config.model.size,
                            "batch_size": batch_size, "seed": seed,
                            "same_device": acc == cpu}
  for name, (device, cfg) in sides.items():
    report[name] = {"device": str(device), "platform": device.platform,
                    "device_kind": device.device_kind, "dtype": cfg.model.dtype,
                    "attention_impl": cfg.model.attention_impl,
                    "metrics": loss_on(cfg, device, params, batch, seed)}
  a, c = report["accelerator"]["metrics"]["loss"], report["cpu"]["metrics"]["loss"]
  report["relative_difference"] = abs(a - c) / max(abs(c), 1e-12)
  report["host"] = host_info.describe()
  report["date"] = time.strftime("%Y-%m-%d")
  return report


def check(report: dict[str, Any], tolerance: float) -> str | None:
  """None when the losses agree within `tolerance` (relative), else the one-line reason."""
  acc, cpu = report["accelerator"], report["cpu"]
  a, c = acc["metrics"]["loss"], cpu["metrics"]["loss"]
  what = (f"loss on {acc['device']} ({acc['dtype']}) {a:.6g} vs {cpu['device']} "
          f"({cpu['dtype']}) {c:.6g}")
  if not (math.isfinite(a) and math.isfinite(c)):
    return f"{what}: not finite"
  if report["relative_difference"] > tolerance:
    return (f"{what}: relative difference {report['relative_difference']:.3g} > "
            f"--tolerance={tolerance:g}")
  return None


def summary_lines(report: dict[str, Any]) -> list[str]:
  lines = []
  for name in ("accelerator", "cpu"):
    side = report[name]
    lines.append(f"{name:<11}  {side['device']} [{side['device_kind']}] {side['dtype']}: loss "
                 f"{side['metrics']['loss']:.6f}")
  lines.append(f"relative difference {report['relative_difference']:.3g} (tolerance "
               f"{report['tolerance']:g}): {'PASS' if report['passed'] else 'FAIL'}")
  if report["same_device"]:
    lines.append("no accelerator: both losses were computed on the CPU")
  return lines


def run(config, batch_size: int, seed: int, tolerance: float, output: str = "",
        acc_dtype: str = "bfloat16", cpu_dtype: str = "float32") -> int:
  """compare + check; prints the summary, writes `output` (JSON) when given. Returns the exit
  code: 0 within tolerance, 1 (one line on stderr) beyond it."""
  if not tolerance > 0:
    raise cli.BadInput(f"--tolerance={tolerance}: give a positive relative difference, e.g. "
                       f"2e-2")
  if output:
    cli.check_output_file(output, "--output")
  report = compare(config, batch_size, seed, acc_dtype, cpu_dtype)
  failure = check(report, tolerance)
  report.update(tolerance=tolerance, passed=failure is None)
  print("\n".join(summary_lines(report)), flush=True)
  if output:
    from hicmae_jax import io_utils
    io_utils.write_json(output, report)
    print(f"report: {output}", file=sys.stderr)
  if failure:
    print(f"error: {failure}", file=sys.stderr)
    return 1
  return 0


def main(argv: Sequence[str] | None = None) -> int:
  """The command line (argv without the program name; None: sys.argv[1:]) -> the exit code."""
  return cli.run_own(_define_flags, _main, argv, doc=__doc__)


def _main(args: flags.FlagValues) -> int:
  config = experiments.load_config_file(args.config)
  if experiments.nested_experiments(config):  # the demo's: its pre-training run unless named
    config = experiments.experiment_for_kind(config, args.config.partition(":")[2] or "pretrain")
  return run(config, args.batch_size, args.seed, args.tolerance, args.output,
             args.accelerator_dtype, args.cpu_dtype)


if __name__ == "__main__":
  sys.exit(main())
