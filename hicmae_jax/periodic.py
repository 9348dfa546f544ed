"""Periodic jobs of a training run (evaluation, pictures), looked up by name.

The trainer runs, after step s, every job with `every_steps` dividing s; when the run ends it
merges each job's `finish` into results.json. A job is built from the config by a factory
named in REGISTRY ("module:function"), which returns None when the config turns it off, as
big_vision builds its evaluators. Which jobs a kind of run has is the `jobs` entry of its
task (train.TASKS).

The registry names modules instead of importing them: a job may live above the trainer (the
reconstruction figure is in hicmae_jax.representations, which itself imports the trainer), and
importing it here would make the trainer depend on it. It is imported when a run asks for it.
"""
from __future__ import annotations

import abc
import dataclasses
import importlib
import logging
from typing import Any

log = logging.getLogger(__name__)

# name -> "module:factory"; factory(config, ctx: Context) -> Job | None.
REGISTRY = {
    "evaluation": "hicmae_jax.evaluate:evaluation_job",
    "reconstruction": "hicmae_jax.representations.reconstruction:make_training_hook",
}


@dataclasses.dataclass(frozen=True)
class Context:
  """What the trainer hands its jobs.

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


def build(names, config, ctx: Context) -> list[Job]:
  """The jobs `names` (REGISTRY keys) that the config turns on."""
  jobs = []
  for name in names:
    if name not in REGISTRY:
      raise ValueError(f"unknown periodic job {name!r}; registered: {sorted(REGISTRY)}")
    module, factory = REGISTRY[name].split(":")
    job = getattr(importlib.import_module(module), factory)(config, ctx)
    if job is not None:
      log.info("periodic job %s: every %s steps", name, job.every_steps or "-")
      jobs.append(job)
  return jobs


def run_due(jobs: list[Job], step: int, state: dict, batch: dict) -> None:
  for job in jobs:
    if job.every_steps and step % job.every_steps == 0:
      job.run(step, state, batch)
