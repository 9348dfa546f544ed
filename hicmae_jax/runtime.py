"""Process start-up and multi-process plumbing shared by the binaries: distributed init,
barriers, fail-fast exit, logging (and the known-benign start-up noise it drops), the versions
banner, the persistent compilation cache, the shared-workdir check. Command-line parsing is
cli.py; what counts as bad input and how it is printed, errors.py."""
from __future__ import annotations

import atexit
import functools
import logging
import os
import socket
import sys
import tempfile
import time
import traceback
from typing import Callable

import jax

from hicmae_jax import errors
from hicmae_jax.barriers import barrier
from hicmae_jax.log_noise import quiet_known_noise

log = logging.getLogger("hicmae_jax")


def initialize_distributed(coordinator: str = "", num_processes: int = 0,
                           process_id: int = -1, heartbeat_timeout_s: int = 100) -> None:
  """jax.distributed once per process: explicit flags, else the platform's cluster (TPU pods,
  SLURM, Open MPI) when one is detected; a no-op on a single host.

  heartbeat_timeout_s bounds how long the others keep running when a process dies: the
  coordination service then stops every process with an error naming the lost task."""
  timeouts = dict(heartbeat_timeout_seconds=heartbeat_timeout_s)
  if coordinator:
    if num_processes < 1 or not 0 <= process_id < num_processes:
      raise ValueError(f"--coordinator_address needs --num_processes >= 1 and --process_id in "
                       f"[0, num_processes); got {num_processes} and {process_id}")
    if os.environ.get("JAX_PLATFORMS", "cpu").startswith("cpu") or not os.environ.get(
        "JAX_PLATFORMS"):
      # CPU processes need a collectives backend for cross-process computations.
      jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                               process_id=process_id, **timeouts)
  elif any(k in os.environ for k in ("SLURM_JOB_ID", "OMPI_COMM_WORLD_SIZE",
                                     "TPU_WORKER_HOSTNAMES", "MEGASCALE_COORDINATOR_ADDRESS")):
    if int(os.environ.get("SLURM_NTASKS", os.environ.get("OMPI_COMM_WORLD_SIZE", "2"))) > 1 \
        or "TPU_WORKER_HOSTNAMES" in os.environ:
      jax.distributed.initialize(**timeouts)


def compile_then_meet(jitted: Callable, name: str) -> Callable:
  """Across processes: the first call compiles `jitted` for its arguments, waits at a barrier
  for every process, then runs. Later calls go straight to `jitted`; on one process it is
  returned as is.

  Why: XLA:CPU's gloo collectives create a communicator on the first run of a program that
  needs one and give the other processes only 30 s to join it. Processes compile at their own
  pace (one loads the program from the compilation cache while another compiles it on a busy
  host), so without the barrier the first step can fail with "Gloo context initialization
  failed". Elsewhere the barrier costs one round trip, once."""
  if jax.process_count() == 1:
    return jitted
  met = []

  @functools.wraps(jitted)
  def call(*args):
    if not met:
      jitted.lower(*args).compile()  # fills jit's in-memory cache: the call below reuses it
      barrier(f"{name}_compiled")
      met.append(True)
    return jitted(*args)
  return call


def exit_now_if_multiprocess(error: BaseException) -> None:
  """A process that fails in a multi-process job exits at once: with the traceback (exit 1),
  or on bad input with the one `error:` line of errors.error_line (exit 2).

  A normal exit would wait up to 5 minutes at jax.distributed's shutdown barrier, heartbeats
  still beating, while the other processes hang in a collective this one never joins. Exiting
  stops the heartbeats, and the coordination service then stops the others within
  --heartbeat_timeout_s, naming this process."""
  if jax.process_count() <= 1:
    return
  if errors.is_bad_input(error):  # the same one line a single process prints
    print(errors.error_line(error), file=sys.stderr)
    code = errors.EXIT_BAD_INPUT
  else:
    log.error("process %d exits on %s:\n%s", jax.process_index(), type(error).__name__,
              "".join(traceback.format_exception(error)))
    code = 1
  for handler in logging.getLogger().handlers:  # os._exit skips the usual flush (and close)
    getattr(handler, "upload", handler.flush)()
  sys.stdout.flush()
  sys.stderr.flush()
  os._exit(code)


class UploadedLogHandler(logging.FileHandler):
  """train.log of a workdir in a bucket, where a file cannot be appended to: the log is written
  to a local file (continuing the bucket's copy of an earlier attempt) and uploaded whole at
  most every `every_s` seconds, at close (the normal exit) and on a fail-fast exit."""

  def __init__(self, remote: str, every_s: float):
    from hicmae_jax import paths
    self._paths = paths
    self.remote, self.every_s = remote, every_s
    local = os.path.join(tempfile.mkdtemp(prefix="hicmae_log_"), "train.log")
    if paths.exists(remote):
      with open(local, "wb") as f:
        f.write(paths.read_bytes(remote))
    super().__init__(local)
    self._last_upload = time.monotonic()
    self._closed = False
    # Before the interpreter's own exit hooks (atexit runs the latest first): logging's shutdown
    # comes after gcsfs has closed its HTTP session.
    atexit.register(self.close)

  def flush(self) -> None:
    super().flush()
    if not self._closed and time.monotonic() - self._last_upload >= self.every_s:
      self.upload()

  def upload(self) -> None:
    """Flushes and copies the whole local log to the bucket."""
    if self.stream is not None:
      self.stream.flush()
    self._last_upload = time.monotonic()
    try:
      self._paths.copy_file(self.baseFilename, self.remote)
    except Exception as e:  # noqa: BLE001 - a failed upload must not stop training; next one
      print(f"train.log could not be uploaded to {self.remote}: {e}", file=sys.stderr)

  def close(self) -> None:
    if self._closed:
      return
    super().close()
    self.upload()
    self._closed = True


# Seconds between uploads of train.log to a bucket (it is also uploaded at exit).
LOG_UPLOAD_EVERY_S = 60.0


def setup_logging(workdir: str | None = None) -> None:
  """Readable logs on process 0 (stderr and <workdir>/train.log); warnings only elsewhere.

  Creates `workdir`: check it (cli.check_output_dir) and the config before calling this. In a
  bucket, train.log is written locally and uploaded (UploadedLogHandler)."""
  quiet_known_noise()
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
    from hicmae_jax import paths
    paths.makedirs(workdir)
    log_path = os.path.join(workdir, "train.log")
    fh = (UploadedLogHandler(log_path, LOG_UPLOAD_EVERY_S) if paths.is_remote(workdir)
          else logging.FileHandler(log_path))
    fh.setFormatter(fmt)
    root.addHandler(fh)
  for noisy in ("absl", "jax._src", "orbax", "grain", "fsspec", "gcsfs"):
    logging.getLogger(noisy).setLevel(logging.WARNING)


def use_compilation_cache(directory: str) -> None:
  """JAX's persistent compilation cache in `directory` (local or gs://): a restarted job, or
  an eval of the same model, loads its compiled programs instead of compiling them again.
  '' leaves JAX's setting as it is (e.g. JAX_COMPILATION_CACHE_DIR, or the tests' cache)."""
  if not directory or jax.config.jax_compilation_cache_dir == directory:
    return
  from jax.experimental.compilation_cache import compilation_cache
  jax.config.update("jax_compilation_cache_dir", directory)
  compilation_cache.reset_cache()  # the cache opens once per process: reopen it here
  log.info("persistent compilation cache: %s", directory)


# Shared-workdir check: where the markers go, and how long a process waits for the others'
# markers to show up (a network file system may show another host's new file a little late).
SHARED_CHECK_FOLDER = ".shared_workdir_check"
SHARED_CHECK_WAIT_S = 15.0


class WorkdirNotShared(ValueError):
  """The processes of a multi-process job do not see one workdir."""


def check_shared_workdir(workdir: str) -> None:
  """Every process of a multi-process job sees the same workdir, or the job stops here.

  Each process writes a marker under the workdir; after a barrier every process (process 0
  first of all) looks for all of them. A local path on each host (each process writing its own
  copy of checkpoints and logs, a restarted job on new machines finding nothing) shows only its
  own marker and stops with WorkdirNotShared, one line naming the fix. Process 0 clears markers
  of earlier attempts first, so its view is never stale. A no-op on one process."""
  n = jax.process_count()
  if n == 1:
    return
  from hicmae_jax import paths
  me = jax.process_index()
  folder = os.path.join(workdir, SHARED_CHECK_FOLDER)
  if me == 0:
    paths.rmtree(folder)
  barrier("workdir_check_cleared")
  paths.write_bytes(os.path.join(folder, f"process_{me}"),
                    f"{socket.gethostname()} pid {os.getpid()}\n".encode())
  barrier("workdir_check_written")
  expected = {f"process_{i}" for i in range(n)}
  deadline = time.monotonic() + SHARED_CHECK_WAIT_S
  while True:
    seen = set(paths.listdir(folder)) if paths.isdir(folder) else set()
    if expected <= seen or time.monotonic() > deadline:
      break
    time.sleep(0.5)
  missing = sorted(int(m.split("_")[1]) for m in expected - seen)
  if missing:
    raise WorkdirNotShared(
        f"--workdir={workdir} is not shared by the job's {n} processes: process {me} (host "
        f"{socket.gethostname()}) does not see the markers written by process(es) "
        f"{', '.join(map(str, missing))} in {folder}, "
        f"so each process would write its own copy of the checkpoints and logs. Give every "
        f"process the same folder: a bucket (--workdir=gs://bucket/run) or a path on a file "
        f"system all hosts mount")
  barrier("workdir_check_seen")
  if me == 0:
    paths.rmtree(folder)
  log.info("workdir %s is shared by the %d processes", workdir, n)


def banner() -> None:
  import flax
  import optax
  import orbax.checkpoint as ocp
  log.info("hicmae_jax | jax %s | flax %s | optax %s | orbax %s | python %s",
           jax.__version__, flax.__version__, optax.__version__,
           getattr(ocp, "__version__", "?"), sys.version.split()[0])
  log.info("process %d/%d, local devices %s", jax.process_index(), jax.process_count(),
           jax.local_devices())


def explain_multiprocess_failure(error: BaseException, workdir: str) -> None:
  """A collective that fails in a multi-process job almost always means another process died:
  say so, and where the last complete checkpoint is, before the traceback."""
  if jax.process_count() <= 1 or not isinstance(error, jax.errors.JaxRuntimeError):
    return
  from hicmae_jax import checkpointing
  ckpt_dir = checkpointing.checkpoint_dir(workdir)
  try:
    steps = checkpointing.finished_steps(ckpt_dir)
    last = f"step {max(steps)} in {ckpt_dir}" if steps else "none yet"
  except Exception:  # noqa: BLE001 - the message must not fail on a half-written folder
    last = f"see {ckpt_dir}"
  log.error("process %d of %d: a cross-process operation failed (%s). Another process most "
            "likely died or lost its network: check its log. Last complete checkpoint: %s; "
            "start the job again to resume from it.", jax.process_index(),
            jax.process_count(), str(error).splitlines()[0][:200], last)


def json_command(body, bad_input: tuple[type[BaseException], ...] = (FileNotFoundError,
                                                                   ValueError)) -> int:
  """Runs a command's body (a no-argument callable returning a JSON-able summary): prints the
  summary and returns 0, or prints one line `error: <message>` to stderr and returns 2 on bad
  input (`bad_input`)."""
  import json

  try:
    summary = body()
  except bad_input as e:
    print(errors.error_line(e), file=sys.stderr)
    return errors.EXIT_BAD_INPUT
  print(json.dumps(summary, indent=2))
  return 0
