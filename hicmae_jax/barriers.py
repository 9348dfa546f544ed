"""The processes of a job meeting at a named point: the coordination service's barrier (no
device collective, no communicator), a no-op on one process. Used by the trainer's start-up and
by checkpointing before Orbax's first collective."""
from __future__ import annotations

import jax

# How long a process waits at a barrier for the others. It must cover the slowest process
# compiling a Base step from scratch while a faster one loaded it from the compilation cache.
BARRIER_TIMEOUT_S = 1800
_barriers_passed = 0


def barrier(name: str, timeout_s: int = BARRIER_TIMEOUT_S) -> None:
  """Every process waits here until all have arrived. Every process must pass the same
  barriers in the same order (the ids are counted)."""
  if jax.process_count() == 1:
    return
  import orbax.checkpoint as ocp  # local: heavy, and only needed across processes
  global _barriers_passed
  _barriers_passed += 1  # a barrier id is single-use; every process counts the same way
  ocp.multihost.get_barrier_sync_fn()(key=f"hicmae_{name}_{_barriers_passed}",
                                      timeout_ms=timeout_s * 1000)
