"""Run in its own process (the device count is fixed when the backend starts):
8 fake CPU devices; one training step on 1 device, data-parallel over 8, and data x fsdp (2 x 4)
must give the same parameters. Prints one JSON line with the max differences."""
import json
import os
import sys

# Appended, so that a caller's other XLA flags (e.g. --xla_cpu_max_isa) still apply.
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                           " --xla_force_host_platform_device_count=8").strip()
os.environ["JAX_PLATFORMS"] = "cpu"
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import Mesh  # noqa: E402

from configs import test_pretrain  # noqa: E402
from hicmae_jax import sharding, train  # noqa: E402


def mesh_of(data, fsdp):
  devices = np.array(jax.devices()[:data * fsdp]).reshape(data, fsdp)
  return Mesh(devices, sharding.BATCH_AXES, axis_types=(jax.sharding.AxisType.Auto,) * 2)


def one_step(kind, data, fsdp, batch):
  cfg = test_pretrain.get_config(kind)
  cfg.global_batch_size = 8
  cfg.loss.contrastive_group_size = 4
  mesh = mesh_of(data, fsdp)
  view, tx, state, state_sh, _ = train.init_state(cfg, mesh, 10, 5)
  sharded = [k for k, s in state_sh["params"].items() if s.spec != jax.sharding.PartitionSpec()]
  step = train.make_train_step(cfg, view, tx, state_sh, mesh)
  for _ in range(2):
    state, metrics = step(state, sharding.global_batch(batch, mesh))
  return ({k: np.asarray(v) for k, v in state["params"].items()}, float(metrics["loss"]),
          sharded)


def main():
  assert jax.device_count() == 8, jax.devices()
  rng = np.random.default_rng(0)
  out = {}
  # Fine-tuning shares the step, mesh and sharding rules; pre-training alone keeps this short.
  for kind in ("pretrain",):
    batch = {"video": rng.normal(size=(8, 8, 32, 32, 3)).astype(np.float32),
             "audio": rng.normal(size=(8, 64, 128)).astype(np.float32)}
    if kind == "finetune":
      batch["label"] = rng.integers(0, 3, size=8).astype(np.int32)
    ref, ref_loss, _ = one_step(kind, 1, 1, batch)
    meshes = {"dp8": (8, 1), "dp2_fsdp4": (2, 4)} if kind == "pretrain" else {"dp2_fsdp4": (2, 4)}
    for name, (d, f) in meshes.items():
      params, loss, sharded = one_step(kind, d, f, batch)
      diff = max(float(np.max(np.abs(params[k] - ref[k]))) for k in ref)
      # |d| / (1 + |reference|): an absolute bound near 0, a relative one on large values
      scaled = max(float(np.max(np.abs(params[k] - ref[k]) / (1 + np.abs(ref[k])))) for k in ref)
      out[f"{kind}/{name}"] = {"max_param_diff": diff, "max_param_diff_scaled": scaled,
                               "loss_diff_scaled": abs(loss - ref_loss) / (1 + abs(ref_loss)),
                               "num_sharded_params": len(sharded)}
  print(json.dumps(out))


if __name__ == "__main__":
  main()
