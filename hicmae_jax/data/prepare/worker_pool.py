"""Processes for writing shards (prepare) or raw clips (synthetic): the start method, how many
are worth starting, the pool that runs shard_writer.write_shard per shard, and its progress
line on stderr.
"""
from __future__ import annotations

import concurrent.futures
import multiprocessing
import sys
import threading
import time

import numpy as np

from hicmae_jax.data.prepare import shard_writer
from hicmae_jax.data.prepare.shard_writer import ShardResult, ShardTask

_WORKER_COUNTER = None


def _init_worker(counter) -> None:
  global _WORKER_COUNTER
  _WORKER_COUNTER = counter


def _worker_tick() -> None:
  with _WORKER_COUNTER.get_lock():
    _WORKER_COUNTER.value += 1


def _pool_write_shard(task: ShardTask) -> ShardResult:
  return shard_writer.write_shard(task, tick=_worker_tick)


class ProgressLine:
  """`[prepare train] 1200/5000 clips  85.3 clips/s  ETA 0:00:44` on stderr, rate-limited."""

  def __init__(self, label: str, total: int, enabled: bool, already_done: int = 0):
    self.label, self.total, self.enabled = label, total, enabled
    self.already_done = already_done  # kept from an earlier run: not part of the rate
    self.start = time.time()
    self.last_print = 0.0
    self.tty = sys.stderr.isatty()

  def update(self, done: int, force: bool = False) -> None:
    now = time.time()
    if not self.enabled or (not force and (done <= self.already_done or now - self.last_print
                                           < (0.5 if self.tty else 10.0))):
      return
    self.last_print = now
    elapsed = max(now - self.start, 1e-9)
    rate = (done - self.already_done) / elapsed
    eta = (self.total - done) / rate if rate > 0 else float("inf")
    eta_text = time.strftime("%H:%M:%S", time.gmtime(eta)) if np.isfinite(eta) else "?"
    line = (f"[prepare {self.label}] {done}/{self.total} clips  {rate:.1f} clips/s  "
            f"ETA {eta_text}")
    sys.stderr.write(("\r" + line + "\033[K") if self.tty else line + "\n")
    sys.stderr.flush()

  def finish(self, done: int) -> None:
    self.update(done, force=True)
    if self.enabled and self.tty:
      sys.stderr.write("\n")


def mp_context():
  """fork when it is safe (one thread, no JAX in the process): workers start at once with
  the modules already imported (scipy, PIL and av take seconds to import). Otherwise spawn,
  because fork would copy other threads' locks mid-state (JAX, grain, a caller's pool)."""
  if ("fork" in multiprocessing.get_all_start_methods() and threading.active_count() == 1
      and "jax" not in sys.modules):
    # Imported here, only when forking: once in the parent, inherited by every worker.
    from PIL import Image  # noqa: F401

    from hicmae_jax.data.prepare import audio_io  # noqa: F401
    return multiprocessing.get_context("fork")
  return multiprocessing.get_context("spawn")


# A spawned worker re-imports numpy, scipy, PIL and av (seconds on a small machine);
# below this many clips one process finishes sooner.
_SPAWN_MIN_CLIPS = 200


def worker_count(num_workers: int, num_tasks: int, num_clips: int) -> int:
  """Processes worth starting for num_tasks tasks holding num_clips clips in all."""
  workers = max(1, min(num_workers, num_tasks))
  if (workers > 1 and num_clips < _SPAWN_MIN_CLIPS
      and mp_context().get_start_method() == "spawn"):
    return 1
  return workers


def run_tasks(tasks: list[ShardTask], num_workers: int, progress: ProgressLine,
              done_before: int) -> list[ShardResult]:
  """Writes every task's shard, in this process (num_workers <= 1) or in a pool of
  num_workers processes; -> their results in shard order. done_before: clips of shards kept
  from an earlier run (where the progress count starts)."""
  if num_workers <= 1:
    done = [done_before]

    def tick():
      done[0] += 1
      progress.update(done[0])
    return [shard_writer.write_shard(t, tick=tick) for t in tasks]
  ctx = mp_context()
  counter = ctx.Value("q", 0)
  results = []
  with concurrent.futures.ProcessPoolExecutor(
      max_workers=num_workers, mp_context=ctx,
      initializer=_init_worker, initargs=(counter,)) as pool:
    pending = {pool.submit(_pool_write_shard, t) for t in tasks}
    try:
      while pending:
        finished, pending = concurrent.futures.wait(
            pending, timeout=0.5, return_when=concurrent.futures.FIRST_COMPLETED)
        for future in finished:
          results.append(future.result())  # re-raises a worker's unexpected error
        progress.update(done_before + counter.value)
    except BaseException:
      for future in pending:
        future.cancel()
      raise
  return sorted(results, key=lambda r: r.index)
