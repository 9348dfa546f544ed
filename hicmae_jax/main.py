"""Train binary: python -m hicmae_jax.main --config=configs/<name>.py --workdir=DIR.

Bad input (flags, config values, the batch for these devices, the workdir) is refused with one
`error:` line and exit code 2 before any file is created.
"""
from absl import flags
from ml_collections import config_flags

from hicmae_jax import cli, config_validation, demo, runtime, train

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


def training_parts(config) -> list[tuple[str, object]]:
  """(name in messages, config) of each run a config describes: the demo's two, else itself."""
  if "demo" not in config:
    return [("config", config)]
  if not config.demo:
    raise cli.BadInput("--config.demo=False: the demo config is the demo; for one of its runs "
                       "alone use --config=configs/demo.py:pretrain (or :finetune)")
  return [("config.pretrain", config.pretrain), ("config.finetune", config.finetune)]


def check_start(config, workdir: str) -> None:
  """Everything that can be refused before the first file is written."""
  for name, part in training_parts(config):
    config_validation.validate_config(part, name)
  cli.check_output_dir(workdir, "--workdir")


def main(argv):
  if len(argv) > 1:
    raise cli.BadInput(f"unexpected argument {argv[1]!r}: every input is a flag, e.g. "
                       f"--config=configs/demo.py --workdir=workdirs/demo")
  runtime.initialize_distributed(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value,
                                 _HEARTBEAT.value)
  config, workdir = _CONFIG.value, _WORKDIR.value
  try:
    check_start(config, workdir)
    runtime.setup_logging(workdir)
    runtime.banner()
    if config.get("demo", False):
      demo.run(config, workdir)
    else:
      train.run(config, workdir)
  except Exception as e:
    runtime.explain_multiprocess_failure(e, workdir)
    runtime.exit_now_if_multiprocess(e)
    raise


if __name__ == "__main__":
  cli.run(main)
