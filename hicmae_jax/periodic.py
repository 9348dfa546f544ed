"""Periodic jobs of a training run (evaluation, pictures): what one is and when it runs.

The trainer runs, after step s, every job with `every_steps` dividing s; when the run ends it
merges each job's `finish` into results.json. A job is built by a plain factory,
factory(config, ctx) -> Job | None (None when the config turns it off, as big_vision builds
its evaluators); which factories a kind of run has is the `jobs` entry of its task
(train.TASKS: evaluate.evaluation_job, reconstruction.reconstruction_job). Each factory hands
its job only the Context fields the job uses.
"""
from __future__ import annotations

import abc
import dataclasses
import logging
from typing import Any

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Context:
  """What the trainer hands the job factories; each passes its job only the fields it uses.

  meta: the run's checkpoint meta (kind, model and full config), for checkpoints a job writes.
  resumed: True when the run continues from its own workdir's checkpoint (not a fresh start).
  """
  workdir: str
  view: Any                 # models.params.ParamsView of the model
  mesh: Any                 # jax.sharding.Mesh
  writer: Any               # clu MetricWriter
  param_shardings: dict     # {name: NamedSharding} of the flat parameters
  class_names: tuple
  steps_per_epoch: int
  meta: dict
  resumed: bool


class Job(abc.ABC):
  """A periodic job: `run` after every `every_steps`-th step (0: never periodically)."""
  every_steps: int = 0

  @abc.abstractmethod
  def run(self, step: int, state: dict, batch: dict) -> None:
    """state: the train state after `step` ({"params", "opt_state", "step", ...}); batch: this
    process's part of the step's batch (host arrays)."""

  def finish(self, step: int, state: dict) -> dict[str, Any]:
    """Called once when training ends (not when preempted); returns entries for results.json."""
    del step, state
    return {}

  def close(self) -> None:
    """Releases what the job holds (e.g. a checkpoint manager); called after the loop."""


def build(factories, config, ctx: Context) -> list[Job]:
  """The jobs of `factories` (factory(config, ctx) -> Job | None) that the config turns on."""
  jobs = []
  for factory in factories:
    job = factory(config, ctx)
    if job is not None:
      log.info("periodic job %s: every %s steps", type(job).__name__, job.every_steps or "-")
      jobs.append(job)
  return jobs


def run_due(jobs: list[Job], step: int, state: dict, batch: dict) -> None:
  for job in jobs:
    if job.every_steps and step % job.every_steps == 0:
      job.run(step, state, batch)
