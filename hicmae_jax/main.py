"""Train binary: python -m hicmae_jax.main --config=configs/<name>.py --workdir=DIR."""
from absl import app, flags
from ml_collections import config_flags

from hicmae_jax import runtime

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Where checkpoints, logs and results go.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", "", "host:port of process 0 "
                                   "(multi-host without a detected cluster).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", 0, "Process count (with the address).")
_PROCESS_ID = flags.DEFINE_integer("process_id", -1, "This process's id (with the address).")
_HEARTBEAT = flags.DEFINE_integer("heartbeat_timeout_s", 100, "Multi-process: seconds without "
                                  "a heartbeat before a lost process stops the whole job.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  del argv
  runtime.initialize_distributed(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value,
                                 _HEARTBEAT.value)
  runtime.setup_logging(_WORKDIR.value)
  runtime.banner()
  from hicmae_jax import train  # after distributed init: importing it touches no backend
  try:
    if _CONFIG.value.get("demo", False):
      from hicmae_jax import demo
      demo.run(_CONFIG.value, _WORKDIR.value)
    else:
      train.run(_CONFIG.value, _WORKDIR.value)
  except Exception as e:
    runtime.explain_multiprocess_failure(e, _WORKDIR.value)
    runtime.exit_now_if_multiprocess(e)
    raise


if __name__ == "__main__":
  app.run(main)
