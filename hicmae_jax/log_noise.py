"""Start-up and restore messages that say nothing wrong, and the filter that drops them.

Every binary calls `quiet_known_noise` before a backend starts (cli.run, runtime.setup_logging):
no JAX or Orbax import is needed for it, so it sits at the bottom.
"""
from __future__ import annotations

import logging

# Orbax warnings that every read-only restore or converted checkpoint prints and that ask
# nothing of the user (message prefixes); other Orbax warnings stay.
BENIGN_WARNINGS = (
    "Given directory is read only",
    "CheckpointManagerOptions.read_only=True, setting save_interval_steps=0",
    "Metadata file does not exist",
)


class _DropBenign(logging.Filter):
  def filter(self, record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith(BENIGN_WARNINGS)


def drop_orbax_read_only_notes() -> None:
  """Installs the BENIGN_WARNINGS filter on the "absl" logger (Orbax logs through absl.logging);
  idempotent. `checkpointing.manager` calls it on every read-only open, so library calls
  (predict, evaluation, feature export from Python) are quiet too, not only the binaries."""
  absl_logger = logging.getLogger("absl")
  if not any(isinstance(f, _DropBenign) for f in absl_logger.filters):
    absl_logger.addFilter(_DropBenign())


def quiet_known_noise() -> None:
  """Start-up and restore messages that say nothing wrong: JAX's INFO line about each platform
  it probes and does not find (`Unable to initialize backend 'tpu'` on every machine without
  one; a platform that is present starts silently as before) and BENIGN_WARNINGS. Call before
  the backend starts; idempotent."""
  logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)
  drop_orbax_read_only_notes()
