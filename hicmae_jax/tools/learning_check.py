r"""Runs the learning check (pre-trained vs randomly initialised features, same linear probe).

  python -m hicmae_jax.tools.learning_check --config=configs/learning_check.py \
      --workdir=workdirs/learning_check

See hicmae_jax/representations/pretrain_vs_random.py. Prints the summary (test UAR/WAR of both
probes, the margin, reconstruction errors); exit code 1 when the pre-trained probe does not win
by config.check.min_margin UAR points. A SIGTERM or Ctrl-C during the pre-training saves it and
exits 0; the same command resumes it.
"""
from __future__ import annotations

import json

from absl import flags
from ml_collections import config_flags

from hicmae_jax import cli, config_validation, runtime
from hicmae_jax.representations import pretrain_vs_random

_CONFIG = config_flags.DEFINE_config_file("config", None, "configs/learning_check.py or a "
                                          "variant.", lock_config=False)
_WORKDIR = flags.DEFINE_string("workdir", None, "Where the run, features and pictures go.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  del argv
  config_validation.validate_config(_CONFIG.value)  # before the workdir and its log exist
  cli.check_output_dir(_WORKDIR.value, "--workdir")
  runtime.setup_logging(_WORKDIR.value)
  runtime.banner()
  results = pretrain_vs_random.run(_CONFIG.value, _WORKDIR.value)
  if "preempted_at_step" in results:  # saved; the same command resumes it
    print(json.dumps(results))
    return 0
  print(json.dumps(results["summary"], indent=2))
  return 0 if results["summary"]["passed"] else 1


if __name__ == "__main__":
  cli.run(main)
