"""Library log messages that say nothing wrong, and the filter that drops them.

Orbax logs these through absl.logging (the "absl" logger) every time a checkpoint is opened
read-only (evaluation, predict, feature export, the end of fine-tuning): several lines per
run that ask nothing of the user. The filter is installed by `checkpointing.manager` on every
read-only open, so library calls are quiet too, and by `runtime.quiet_known_noise` at a
binary's start. Any other Orbax warning (an incomplete step, a missing item) still shows.
"""
from __future__ import annotations

import logging

# Message prefixes.
ORBAX_READ_ONLY = (
    "Given directory is read only",
    "CheckpointManagerOptions.read_only=True, setting save_interval_steps=0",
    "Metadata file does not exist",
)


class DropBenign(logging.Filter):
  """Drops records whose message starts with one of ORBAX_READ_ONLY."""

  def filter(self, record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith(ORBAX_READ_ONLY)


def drop_orbax_read_only_notes() -> None:
  """Installs DropBenign on the "absl" logger (Orbax logs through absl.logging); idempotent."""
  absl_logger = logging.getLogger("absl")
  if not any(isinstance(f, DropBenign) for f in absl_logger.filters):
    absl_logger.addFilter(DropBenign())
