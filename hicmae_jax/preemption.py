"""Stopping a training run cleanly: SIGTERM (preemption) and Ctrl-C (SIGINT) both make the run
save a checkpoint at the end of the current step and exit 0; a second Ctrl-C stops the process
at once, without saving (killed by SIGINT: shell status 130).

One process: Python handlers set a flag that the loop reads after each step. Python's default
SIGINT handler is not kept for the loop: it raises KeyboardInterrupt wherever Python happens to
be, and inside a garbage-collection callback (jax's `_xla_gc_callback`) the exception is
printed as "Exception ignored" and training goes on.

Several processes: they must agree on the step to save at (an Orbax save is collective), so
JAX's preemption service (started by jax.distributed, which owns SIGTERM then) propagates a
notice received by any process and `reached(step)` turns True on every process at the same
step. A SIGINT is handed to that service as a SIGTERM to the process itself.
"""
from __future__ import annotations

import logging
import os
import signal
import time

import jax
from jax.experimental import multihost_utils

log = logging.getLogger(__name__)


class Preemption:
  """Context manager around the training loop; set `step` to the step being computed."""

  def __init__(self):
    self.requested = False
    self.step = 0
    self._notice_time: float | None = None
    self._sigint = False
    self._previous: dict[int, object] = {}
    self._multihost = jax.process_count() > 1

  def __enter__(self):
    # With several processes JAX's preemption service owns SIGTERM.
    signals = (signal.SIGINT,) if self._multihost else (signal.SIGTERM, signal.SIGINT)
    for sig in signals:
      try:
        self._previous[sig] = signal.signal(sig, self._handle)
      except ValueError:  # not the main thread (e.g. some test runners): no handlers
        break
    return self

  def _handle(self, signum, frame):
    del frame
    name = signal.Signals(signum).name
    if signum == signal.SIGINT:
      # The next Ctrl-C gets the default action: the process ends at once, even inside a
      # long XLA call where no Python handler could run.
      signal.signal(signal.SIGINT, signal.SIG_DFL)
      self._sigint = True
    again = " (Ctrl-C again to stop at once without saving)" if signum == signal.SIGINT else ""
    if self._notice_time is None:
      self._notice_time = time.monotonic()
    if self._multihost:
      log.warning("%s received during step %d: asking every process to save at one agreed "
                  "step%s", name, self.step, again)
      os.kill(os.getpid(), signal.SIGTERM)  # to JAX's preemption service, which propagates it
      return
    log.warning("%s received during step %d: finishing that step, then saving a checkpoint "
                "and stopping%s", name, self.step, again)
    self.requested = True

  def reached(self, step: int) -> bool:
    """Call once per step on every process: whether to save and stop after this step."""
    if self._multihost and not self.requested:
      if multihost_utils.reached_preemption_sync_point(step):
        log.warning("preemption notice: every process saves at step %d and stops", step)
        self.requested = True
    return self.requested

  def seconds_since_notice(self) -> float | None:
    """Since this process got the signal (None when the notice came from another process)."""
    return None if self._notice_time is None else time.monotonic() - self._notice_time

  def __exit__(self, *exc):
    for sig, previous in self._previous.items():
      if sig == signal.SIGINT and self._sigint:
        continue  # stays SIG_DFL: a second Ctrl-C while the process winds down ends it at once
      signal.signal(sig, previous)
