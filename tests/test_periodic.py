"""periodic.py: the task table's job factories are plain functions, built in order, and the
config turns each one off."""
import ml_collections
import pytest

from hicmae_jax import evaluate, periodic, reconstruction, train


class _Every(periodic.Job):
  def __init__(self, every_steps):
    self.every_steps, self.ran = every_steps, []

  def run(self, step, state, batch):
    self.ran.append(step)


def test_tasks_name_their_job_factories():
  assert train.TASKS["pretrain"].jobs == (reconstruction.reconstruction_job,)
  assert train.TASKS["finetune"].jobs == (evaluate.evaluation_job,)
  assert train.TASKS["linear_probe"].jobs == (evaluate.evaluation_job,)
  assert not hasattr(periodic, "REGISTRY")


def test_build_keeps_the_jobs_the_config_turns_on_in_order():
  made = []
  on = lambda config, ctx: made.append(ctx) or _Every(config.n)
  off = lambda config, ctx: None
  config = ml_collections.ConfigDict({"n": 3})
  jobs = periodic.build((off, on, on), config, "ctx")
  assert [j.every_steps for j in jobs] == [3, 3] and made == ["ctx", "ctx"]
  periodic.run_due(jobs, 6, {}, {})
  periodic.run_due(jobs, 7, {}, {})
  assert jobs[0].ran == [6]


@pytest.mark.parametrize("factory, config", [
    (reconstruction.reconstruction_job, {"recon_every_steps": 0}),
    (evaluate.evaluation_job, {"data": {"val_dir": "", "test_dir": ""}}),
])
def test_a_job_the_config_turns_off_is_not_built(factory, config):
  # ctx is not looked at when the job is off.
  assert factory(ml_collections.ConfigDict(config), None) is None
