"""Process start-up shared by the binaries: distributed init, logging, the versions banner."""
from __future__ import annotations

import logging
import os
import sys

import jax

log = logging.getLogger("hicmae_jax")


def initialize_distributed(coordinator: str = "", num_processes: int = 0,
                           process_id: int = -1) -> None:
  """jax.distributed once per process: explicit flags, else the platform's cluster (TPU pods,
  SLURM, Open MPI) when one is detected; a no-op on a single host."""
  if coordinator:
    if os.environ.get("JAX_PLATFORMS", "cpu").startswith("cpu") or not os.environ.get(
        "JAX_PLATFORMS"):
      # CPU processes need a collectives backend for cross-process computations.
      jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                               process_id=process_id)
  elif any(k in os.environ for k in ("SLURM_JOB_ID", "OMPI_COMM_WORLD_SIZE",
                                     "TPU_WORKER_HOSTNAMES", "MEGASCALE_COORDINATOR_ADDRESS")):
    if int(os.environ.get("SLURM_NTASKS", os.environ.get("OMPI_COMM_WORLD_SIZE", "2"))) > 1 \
        or "TPU_WORKER_HOSTNAMES" in os.environ:
      jax.distributed.initialize()


def setup_logging(workdir: str | None = None) -> None:
  """Readable logs on process 0 (stderr and <workdir>/train.log); warnings only elsewhere."""
  level = logging.INFO if jax.process_index() == 0 else logging.WARNING
  fmt = logging.Formatter("%(asctime)s %(levelname).1s %(name)s] %(message)s", "%H:%M:%S")
  root = logging.getLogger()
  root.setLevel(level)
  for h in list(root.handlers):
    root.removeHandler(h)
  stream = logging.StreamHandler(sys.stderr)
  stream.setFormatter(fmt)
  root.addHandler(stream)
  if workdir and jax.process_index() == 0:
    os.makedirs(workdir, exist_ok=True)
    fh = logging.FileHandler(os.path.join(workdir, "train.log"))
    fh.setFormatter(fmt)
    root.addHandler(fh)
  for noisy in ("absl", "jax._src", "orbax", "grain"):
    logging.getLogger(noisy).setLevel(logging.WARNING)


def banner() -> None:
  import flax
  import optax
  import orbax.checkpoint as ocp
  log.info("hicmae_jax | jax %s | flax %s | optax %s | orbax %s | python %s",
           jax.__version__, flax.__version__, optax.__version__,
           getattr(ocp, "__version__", "?"), sys.version.split()[0])
  log.info("process %d/%d, local devices %s", jax.process_index(), jax.process_count(),
           jax.local_devices())
